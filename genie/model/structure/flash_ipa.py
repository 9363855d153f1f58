"""FlashIPA: Invariant Point Attention as one softmax attention over augmented vectors.

Notation: b batch, i queries, j keys (n residues), h heads, c scalar channels per head,
p points (P_qk, P_v), r pair-factor rank, c_f factor channels, d head dims. Frames in nm.

IPA's logits (AF2 Alg. 22) with a low-rank pair bias b_hij = Σ_r β_hir β'_hjr are, up to a term
constant along j (which softmax ignores), one inner product Q_i · K_j (DESIGN §4):

    Q_i = q_i ‖ q̃_i (3P_qk)     ‖ 1                               ‖ β_i (r)
    K_j = (w_L/√c) k_j ‖ ω_h k̃_j ‖ −(ω_h/2) Σ_p ‖k̃_jp‖² + m_j     ‖ w_L β'_j
    V_j = v_j ‖ ṽ_j (global frame, 3P_v) ‖ V_j (pair factors, r·c_f)

with w_L = √(1/3), ω_h = softplus(θ_h)·√(2/(9 P_qk))·w_L, softmax scale 1, and m_j = 0 for real
keys, −3·10⁴ for padded ones (masking without an attention mask). β = W_β U, β' = W_β' V are
per-head projections of the pair factors. The outputs are those of IPA: scalar values, value
points brought back to the local frame and their norms, and the pair output
Σ_j a_hij z_ij = Σ_r U_ir ⊙ (Σ_j a_hij V_jr), exact because the factors separate. Everything is
linear in n: the attention itself runs in a fused kernel and never forms the [h, n, n] logits.

Numerics: translations are centred per chain (exact, IPA is translation-invariant); Q/K/V are
built in fp32 and cast to ``qk_dtype`` (fp16 on GPU by default: its 10-bit mantissa keeps the
expanded distance term accurate where bf16 loses 0.1-1 logit units at L = 1,000-3,000).
Head dims are zero-padded to multiples of 8; fused kernels accept at most 256.

Sequence parallelism (:mod:`genie.model.layout`): each process builds Q, K, V of its own residues;
K and V of the whole chain are gathered (``[b, h, n, d]``, autograd-aware: their gradients return
to their owners) and the local queries attend to them. The centre of the translations is that of
the whole chain.
"""

from __future__ import annotations

import importlib.util
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from genie.geometry.rigid import Rigid
from genie.model.layers.primitives import Linear
from genie.model.layout import SequenceLayout, SequenceParallel
from genie.model.representations import PairFactors
from genie.utils.checkpointing import recompute

log = logging.getLogger(__name__)

MASK_VALUE = 3e4  # added (negated) to padded keys' logits
MAX_HEAD_DIM = 256  # cuDNN / flash kernels
BACKENDS = ("auto", "cudnn", "flash", "efficient", "math", "flash_attn")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _round8(d: int) -> int:
    return -(-d // 8) * 8


def flash_ipa_head_dims(*, c_hidden: int, n_qk_points: int, n_v_points: int, rank: int,
                        c_f: int) -> tuple[int, int]:  # fmt: skip
    """(q/k, v) head dims after padding to multiples of 8."""
    return _round8(c_hidden + 3 * n_qk_points + 1 + rank), _round8(
        c_hidden + 3 * n_v_points + rank * c_f
    )


def _pad_last(x: torch.Tensor, d: int) -> torch.Tensor:
    return F.pad(x, (0, d - x.shape[-1])) if x.shape[-1] < d else x


class FlashIPA(SequenceParallel, nn.Module):
    def __init__(
        self,
        *,
        c_s: int,
        c_f: int,
        rank: int,
        c_hidden: int,
        n_heads: int,
        n_qk_points: int,
        n_v_points: int,
        qk_dtype: str = "auto",
        backend: str = "auto",
        use_fa3: bool = False,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        if qk_dtype not in ("auto", *_DTYPES):
            raise ValueError(f"qk_dtype must be auto, fp16, bf16 or fp32, got '{qk_dtype}'")
        d_qk, d_v = flash_ipa_head_dims(c_hidden=c_hidden, n_qk_points=n_qk_points,
                                        n_v_points=n_v_points, rank=rank, c_f=c_f)  # fmt: skip
        for name, d, parts in (
            ("query/key", d_qk, f"ipaHiddenDimension + 3·ipaNumQkPoints + 1 + zFactorRank = "
                                f"{c_hidden} + {3 * n_qk_points} + 1 + {rank}"),
            ("value", d_v, f"ipaHiddenDimension + 3·ipaNumVPoints + zFactorRank·pairFactorDim = "
                           f"{c_hidden} + {3 * n_v_points} + {rank}·{c_f}"),
        ):  # fmt: skip
            if d > MAX_HEAD_DIM:
                raise ValueError(
                    f"FlashIPA {name} head dim {d} exceeds {MAX_HEAD_DIM}, the limit of the fused "
                    f"attention kernels ({parts}, padded to a multiple of 8): lower zFactorRank "
                    f"or pairFactorDim (or the IPA sizes)"
                )
        self.h, self.c, self.p_qk, self.p_v = n_heads, c_hidden, n_qk_points, n_v_points
        self.rank = rank
        self.d_qk, self.d_v = d_qk, d_v
        self.qk_dtype, self.backend, self.use_fa3 = qk_dtype, backend, use_fa3
        self.linear_q = Linear(c_s, n_heads * c_hidden)
        self.linear_kv = Linear(c_s, 2 * n_heads * c_hidden)
        self.linear_q_pts = Linear(c_s, n_heads * n_qk_points * 3)
        self.linear_kv_pts = Linear(c_s, n_heads * (n_qk_points + n_v_points) * 3)
        self.bias_u = Linear(c_f, n_heads, bias=False)  # β_hir = W_β U_ir
        self.bias_v = Linear(c_f, n_heads, bias=False)  # β'_hjr = W_β' V_jr
        self.head_weights = nn.Parameter(torch.full((n_heads,), math.log(math.e - 1.0)))
        self.linear_out = Linear(n_heads * (c_hidden + 4 * n_v_points + c_f), c_s, init="final")
        self._logged_backend: str | None = None

    def augmented(self, s: torch.Tensor, pair: PairFactors, frames: Rigid, mask: torch.Tensor):
        """Q ``[b, h, n, d_qk]``, K ``[b, h, n, d_qk]``, V ``[b, h, n, d_v]`` (fp32, padded) and
        the centred frames (exposed for tests)."""
        frames = _centred(frames, mask, self.sequence_layout)  # [b, n]
        return (*self._augmented(s, pair, frames, mask), frames)

    def _augmented(self, s: torch.Tensor, pair: PairFactors, frames: Rigid, mask: torch.Tensor):
        """:meth:`augmented` of centred frames, without them."""
        b, n, _ = s.shape
        h, c, p_qk, p_v = self.h, self.c, self.p_qk, self.p_v
        local = Rigid(frames.rots[:, :, None], frames.trans[:, :, None])
        f32 = torch.float32 if s.dtype in (torch.float16, torch.bfloat16) else s.dtype
        s = s.to(f32)
        with torch.autocast(s.device.type, enabled=False):
            q = self.linear_q(s).view(b, n, h, c)
            k, v = self.linear_kv(s).view(b, n, h, 2 * c).split(c, dim=-1)
            q_pts = local.apply(self.linear_q_pts(s).view(b, n, h * p_qk, 3)).view(b, n, h, -1)
            kv_pts = local.apply(self.linear_kv_pts(s).view(b, n, h * (p_qk + p_v), 3))
            k_pts, v_pts = kv_pts.view(b, n, h, p_qk + p_v, 3).split([p_qk, p_v], dim=3)
            beta = self.bias_u(pair.u.to(f32)).transpose(2, 3)  # [b, n, h, r]
            beta2 = self.bias_v(pair.v.to(f32)).transpose(2, 3)
            w_l = math.sqrt(1.0 / 3.0)
            omega = F.softplus(self.head_weights) * math.sqrt(2.0 / (9.0 * p_qk)) * w_l  # [h]
            om = omega[:, None]
            key_col = -0.5 * omega * (k_pts**2).sum(dim=(-1, -2))  # [b, n, h]
            key_col = key_col + ((mask - 1.0) * MASK_VALUE)[..., None]  # [b, n, h]
            big_q = torch.cat([q, q_pts, torch.ones_like(q[..., :1]), beta], dim=-1)
            big_k = torch.cat(
                [w_l / math.sqrt(c) * k, om * k_pts.flatten(-2), key_col[..., None], w_l * beta2],
                dim=-1,
            )
            pair_v = (
                pair.v.to(f32).flatten(-2)[:, :, None].expand(-1, -1, h, -1)
            )  # [b, n, h, r·c_f]
            big_v = torch.cat([v, v_pts.flatten(-2), pair_v], dim=-1)
        q_, k_ = (_pad_last(x, self.d_qk).transpose(1, 2) for x in (big_q, big_k))
        return q_, k_, _pad_last(big_v, self.d_v).transpose(1, 2)

    def _attention_dtype(self, s: torch.Tensor) -> torch.dtype:
        """``auto``: fp16 on GPU, the input's own precision (fp32 or fp64) on the CPU."""
        if self.qk_dtype == "auto":
            return torch.float16 if s.is_cuda else torch.promote_types(s.dtype, torch.float32)
        return _DTYPES[self.qk_dtype]

    def _attend(self, q, k, v) -> torch.Tensor:
        """softmax(Q Kᵀ) V with the configured backend; ``[b, h, n, d]`` in and out."""
        backend = self.backend
        if backend in ("auto", "flash_attn") and q.is_cuda:
            out = _flash_attn(q, k, v, use_fa3=self.use_fa3, required=backend == "flash_attn")
            if out is not None:
                self._note_backend("flash_attn (FA3)" if self.use_fa3 else "flash_attn")
                return out
        from torch.nn.attention import SDPBackend as B
        from torch.nn.attention import sdpa_kernel

        if backend == "auto":
            # cuDNN takes q/k dim ≠ v dim; without it, the flash kernel needs V padded to q/k's.
            order = [B.CUDNN_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH]
            pad = not _cudnn_usable(q)
            if pad:
                order = [B.FLASH_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH]
        else:
            order = {"flash_attn": [B.CUDNN_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH],
                     "cudnn": [B.CUDNN_ATTENTION], "flash": [B.FLASH_ATTENTION],
                     "efficient": [B.EFFICIENT_ATTENTION], "math": [B.MATH]}[backend]  # fmt: skip
            pad = backend == "flash" or not q.is_cuda
        v2 = v
        if pad:  # equal q/k and v dims (also lets PyTorch's CPU flash kernel run: linear memory)
            d = max(q.shape[-1], v.shape[-1])
            q, k, v2 = _pad_last(q, d), _pad_last(k, d), _pad_last(v, d)
        with sdpa_kernel(order, set_priority=True):
            out = F.scaled_dot_product_attention(q, k, v2, scale=1.0)
        self._note_backend(f"sdpa {[b.name for b in order]}")
        return out[..., : v.shape[-1]]

    def _note_backend(self, name: str) -> None:
        if torch.compiler.is_compiling():
            return  # logged by the eager calls (a compiled graph has no side effects)
        if name != self._logged_backend:
            log.info("FlashIPA attention backend: %s", name)
            self._logged_backend = name

    def forward(
        self, s: torch.Tensor, pair: PairFactors, frames: Rigid, mask: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]`` single representation.
            pair: factors ``U, V [b, n, r, c_f]``.
            frames: ``[b, n]`` residue frames, translations in nm.
            mask: ``[b, n]`` 1 for real residues.

        Returns:
            ``[b, n, c_s]`` update of s, invariant to global rotations and translations.
        """
        b, n, _ = s.shape
        h, c, p_v = self.h, self.c, self.p_v
        dtype = self._attention_dtype(s)

        def build(s, u, v, rots, trans, mask):  # recomputed in backward: only inputs are stored
            q, k, v = self._augmented(s, PairFactors(u, v), Rigid(rots, trans), mask)
            return q.to(dtype), k.to(dtype), v.to(dtype)

        layout = self.sequence_layout
        centred = _centred(frames, mask, layout)
        q, k, v = recompute(build, s, pair.u, pair.v, centred.rots, centred.trans, mask)
        k, v = layout.gather(k, dim=2), layout.gather(v, dim=2)  # every key residue
        out = self._attend(q, k, v)  # [b, h, n, d_v]
        out = out.to(torch.promote_types(s.dtype, torch.float32)).transpose(1, 2)
        o_scalar = out[..., :c]
        o_pts = out[..., c : c + 3 * p_v].reshape(b, n, h * p_v, 3)
        o_pts = Rigid(centred.rots[:, :, None], centred.trans[:, :, None]).invert_apply(o_pts)
        o_norm = torch.sqrt((o_pts**2).sum(-1) + 1e-8)  # [b, n, h·p_v]
        pooled = out[..., c + 3 * p_v : c + 3 * p_v + self.rank * pair.channels]
        pooled = pooled.unflatten(-1, (self.rank, pair.channels))  # [b, n, h, r, c_f]
        o_pair = (pooled * pair.u.to(pooled.dtype)[:, :, None]).sum(-2)  # [b, n, h, c_f]
        feats = [o_scalar.flatten(-2), o_pts.flatten(-2), o_norm, o_pair.flatten(-2)]
        out = self.linear_out(torch.cat(feats, dim=-1).to(self.linear_out.weight.dtype))
        return out * mask[..., None]


def _cudnn_usable(q: torch.Tensor) -> bool:
    """cuDNN attention: CUDA, fp16/bf16, an Ampere or newer GPU, and not switched off."""
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and _cudnn_on(q.device)


# The two checks below ask the process, not the tensors: under torch.compile they run once, at
# trace time, and their answers are constants of the graph (no graph break around each call).
@torch.compiler.assume_constant_result
def _cudnn_on(device: torch.device) -> bool:
    """cuDNN attention switched on, and the GPU Ampere or newer."""
    return torch.backends.cuda.cudnn_sdp_enabled() and torch.cuda.get_device_capability(device) >= (
        8,
        0,
    )


@torch.compiler.assume_constant_result
def _flash_attn_installed(use_fa3: bool) -> bool:
    """Whether the flash-attn package (FA2, or ``flash_attn_interface`` for FA3) imports."""
    return importlib.util.find_spec("flash_attn_interface" if use_fa3 else "flash_attn") is not None


def _centred(frames: Rigid, mask: torch.Tensor, layout: SequenceLayout) -> Rigid:
    """Frames with the translations of each chain's real residues centred (padding at 0); the
    centre is that of the whole chain (``layout.gather``: three numbers per residue)."""
    m = mask[..., None].to(frames.trans.dtype)
    trans, real = layout.gather(frames.trans), layout.gather(m)  # [b, n, 3], [b, n, 1]
    centre = (trans * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp_min(1.0)
    return Rigid(frames.rots, (frames.trans - centre) * m)


def _flash_attn(q, k, v, *, use_fa3: bool, required: bool) -> torch.Tensor | None:
    """The ``flash-attn`` package's kernel (FA2, or FA3 on Hopper), if installed."""
    if not _flash_attn_installed(use_fa3):
        if required:
            raise ImportError(
                "flashBackend flash_attn needs the flash-attn package "
                "(pip install 'genie-long[flash]'); use flashBackend auto to fall back to SDPA"
            )
        return None
    if use_fa3:
        from flash_attn_interface import flash_attn_func  # FA3
    else:
        from flash_attn import flash_attn_func  # FA2
    if q.dtype not in (torch.float16, torch.bfloat16):
        return None
    d = max(q.shape[-1], v.shape[-1])
    qq, kk, vv = (_pad_last(x, d).transpose(1, 2) for x in (q, k, v))  # [b, n, h, d]
    out = flash_attn_func(qq, kk, vv, softmax_scale=1.0)
    out = out[0] if isinstance(out, tuple) else out
    return out.transpose(1, 2)[..., : v.shape[-1]]
