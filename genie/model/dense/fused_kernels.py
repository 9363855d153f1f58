"""cuEquivariance's fused triangle kernels: an optional GPU fast path of the dense triangle layers.

NVIDIA's ``cuequivariance-torch`` (with ``cuequivariance-ops-torch-cu13``; ``pip install
'genie-long[cueq]'``) fuses the triangle multiplicative update (AF2 Alg. 11/12) into one call
and the core of triangle attention (Alg. 13/14: softmax over keys with the triangle bias, times
the values) into a flash-style kernel. Our layers (:mod:`.triangle_multiplication`,
:mod:`.triangle_attention`) stay the reference and the CPU path; a layer built with
``kernels=FusedTriangleKernels(...)`` hands a call to the fused kernel when
:meth:`FusedTriangleKernels.takes_multiplication` / :meth:`~FusedTriangleKernels.takes_attention`
say so. The package is imported on first need, never by ``import genie``.

Notation: b batch, i/j/k residues (n), h heads, c channels (per head for attention), c_p pair
channels.

**Multiplicative update.** ``cuequivariance_torch.triangle_multiplicative_update`` computes the
same function as :class:`~.triangle_multiplication.TriangleMultiplication`, mask included
(it multiplies the operands a_ik, b_jk by ``mask[i, k]``, ours too), from our own parameters,
so the state dict does not depend on the kernel:

==========================================  ================================================
their argument                               our parameter
==========================================  ================================================
``norm_in_weight``, ``norm_in_bias``         ``norm_in``
``p_in_weight [2c, c_p]`` (rows ``[a; b]``)  value rows ``[:c]`` of ``proj_a``, then of ``proj_b``
``g_in_weight [2c, c_p]`` (rows ``[a; b]``)  gate rows ``[c:]`` of ``proj_a``, then of ``proj_b``
``p_in_bias``, ``g_in_bias``                 the same rows of the two biases
``norm_out_weight``, ``norm_out_bias``       ``norm_out``
``p_out_weight``, ``p_out_bias``             ``out``
``g_out_weight``, ``g_out_bias``             ``gate`` (reads LN(z), as ours)
``eps``                                      ``norm_in.eps`` (= ``norm_out.eps``)
==========================================  ================================================

It takes the whole pair tensor at once: a row-chunked call (``chunk_size``, the
``triangleChunkSize`` key) stays ours under ``auto``. Precision: fp32 inputs use TF32 products
when ``torch.backends.cuda.matmul.allow_tf32`` is set (``matmulPrecision high``), as our
``matmul`` does; under bf16 autocast the LayerNorms read fp32 and the products run in bf16.

**Attention.** Only the attention core is fused (``cuequivariance_torch.triangle_attention``);
the LayerNorm, projections, gate and output projection stay ours, so the parameters are the same
too. Layouts: q, k, v ``[b, i, h, j, c]`` (row i, query j, key k), bias ``[b, 1, h, j, k]``
in fp32 (the dtype of its generic kernel, also under bf16), the key mask ``[b, i, 1, 1, k]``
boolean, scale 1/√c.
Masking: our layer adds −10⁴ to the logits of padded keys, so a row with no valid key (a
padded residue's row) attends over all of its keys with the plain logits; the fused kernel
drops masked keys exactly. :func:`key_mask` therefore marks every key valid in a row that has
none, which gives such rows the reference's output and leaves no row empty; on every other row
the two masks agree (exp(−10⁴) is 0 in every float format; logits stay far below 10⁴).
Attention without the triangle bias (axial attention) is passed a zero bias ``[b, 1, h, n, n]``
(4·h·n² bytes).

**Factorised pairs** (:mod:`genie.model.factor.triangle`) keep our kernels: the math does not
map. The factor-algebra multiplicative update never forms a pair tensor (it contracts the factors
over k, O(n·t²·c)), while the fused update takes a dense ``[b, n, n, c_p]``; factorised triangle
attention joins the bias b_jk to q·k as extra query/key columns (head dim c + r·c_f + 1 = 225
with the default sizes, above the kernel's 128), and the kernel's bias argument is a dense
``[b, 1, h, n, n]``, an n×n tensor that factorised pairs never allocate.

When ``auto`` uses the fused kernels (``required=False``): CUDA tensors; computation in fp32 or
bf16 (bf16 storage or bf16 autocast; fp16 and fp64 stay ours: the GPU tests cover fp32 and bf16);
multiplicative update: hidden channels a multiple of 32 and no row chunking; attention: channels
per head a multiple of 8 and ≤ 128 in bf16, a multiple of 4 and ≤ 32 in fp32 (the shapes that
have a kernel; others would run cuEquivariance's own PyTorch fallback). With ``required=True``
(``triangleKernel cuequivariance``) every call goes to cuEquivariance (where it has no kernel for
a dtype or shape it runs its own PyTorch formula), and a call on the CPU is an error.
cuEquivariance itself runs its PyTorch formulas, not the kernels, for chains of at most 100
residues outside ``torch.compile`` (its ``CUEQ_TRIATTN_FALLBACK_THRESHOLD`` and
``CUEQ_TRIMUL_FALLBACK_THRESHOLD``, default 100).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from types import ModuleType
from typing import Literal

import torch
from torch import nn

from genie.config import ConfigError

CUEQ_EXTRA_HINT = "pip install 'genie-long[cueq]'"
_FUSED_DTYPES = (torch.float32, torch.bfloat16)  # what auto hands to the fused kernels


@functools.cache
def _import_cuequivariance() -> tuple[ModuleType | None, str | None]:
    """``(cuequivariance_torch, None)``, or ``(None, why it does not import)``."""
    try:
        import cuequivariance_ops_torch  # noqa: F401  # the kernels, imported by the wrappers
        import cuequivariance_torch
    except Exception as error:  # ImportError, or a binary extension that fails to load
        first = str(error).splitlines()[0] if str(error) else ""
        return None, f"{type(error).__name__}: {first}"[:300]
    return cuequivariance_torch, None


def cuequivariance_unavailable() -> str | None:
    """None when the fused kernels can run on this machine, else the reason (for messages): no
    CUDA device, or the packages do not import. The CUDA check comes first, so a CPU-only
    machine never imports the package."""
    if not torch.cuda.is_available():
        return "no CUDA device is available (the fused kernels run on NVIDIA GPUs only)"
    module, why = _import_cuequivariance()
    if module is None:
        return f"cuequivariance-torch does not import ({why})"
    return None


def _cueq() -> ModuleType:
    module, why = _import_cuequivariance()
    if module is None:
        raise ConfigError(f"triangleKernel: cuequivariance-torch does not import ({why})")
    return module


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype in which matrix products on ``x`` run: the autocast dtype of its device type
    when autocast is on there, else ``x.dtype``."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def multiplication_supported(
    device_type: str, dtype: torch.dtype, *, c_hidden: int, chunked: bool
) -> bool:
    """Whether ``auto`` hands a multiplicative update to the fused kernel (module docstring)."""
    return device_type == "cuda" and dtype in _FUSED_DTYPES and c_hidden % 32 == 0 and not chunked


def attention_supported(device_type: str, dtype: torch.dtype, *, head_dim: int) -> bool:
    """Whether ``auto`` hands an attention core to the fused kernel (module docstring)."""
    if device_type != "cuda" or dtype not in _FUSED_DTYPES:
        return False
    if dtype == torch.float32:
        return head_dim % 4 == 0 and head_dim <= 32
    return head_dim % 8 == 0 and head_dim <= 128


def multiplication_arguments(
    *,
    norm_in: nn.LayerNorm,
    proj_a: nn.Linear,
    proj_b: nn.Linear,
    gate: nn.Linear,
    norm_out: nn.LayerNorm,
    out: nn.Linear,
) -> dict[str, torch.Tensor | float]:
    """Our multiplicative update's parameters as the keyword arguments of
    ``triangle_multiplicative_update`` (the table of the module docstring).

    ``proj_a``/``proj_b`` map c_p → 2c as value ‖ gate; their halves are concatenated (a few
    c·c_p elements each call; autograd splits the gradients back onto our parameters).
    """
    c = proj_a.out_features // 2

    def rows(part: slice, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a[part], b[part]], dim=0)  # [2c, ...]: a's rows, then b's

    value, gate_rows = slice(0, c), slice(c, 2 * c)
    return {
        "norm_in_weight": norm_in.weight,
        "norm_in_bias": norm_in.bias,
        "p_in_weight": rows(value, proj_a.weight, proj_b.weight),
        "p_in_bias": rows(value, proj_a.bias, proj_b.bias),
        "g_in_weight": rows(gate_rows, proj_a.weight, proj_b.weight),
        "g_in_bias": rows(gate_rows, proj_a.bias, proj_b.bias),
        "norm_out_weight": norm_out.weight,
        "norm_out_bias": norm_out.bias,
        "p_out_weight": out.weight,
        "p_out_bias": out.bias,
        "g_out_weight": gate.weight,
        "g_out_bias": gate.bias,
        "eps": norm_in.eps,
    }


def key_mask(pair_mask: torch.Tensor) -> torch.Tensor:
    """``pair_mask [b, i, k]`` -> the fused kernel's key mask ``[b, i, 1, 1, k]`` (bool): the
    valid keys of each row, and every key of a row that has none (module docstring)."""
    valid = pair_mask > 0  # [b, i, k]
    valid = valid | ~valid.any(dim=-1, keepdim=True)
    return valid[:, :, None, None, :]


@dataclasses.dataclass(frozen=True)
class FusedTriangleKernels:
    """cuEquivariance's fused triangle kernels, for the dense layers' ``kernels`` argument.

    Holds no parameters and no module: it decides per call (``takes_*``) and runs the call.

    Args:
        required: False (``triangleKernel auto``): a call goes to the fused kernel where the
            module docstring says, else the layer's own code runs. True (``triangleKernel
            cuequivariance``): every call goes to it; a call on the CPU is a
            :class:`~genie.config.ConfigError`.
    """

    required: bool = False

    def _check_device(self, x: torch.Tensor) -> None:
        if x.device.type != "cuda":
            raise ConfigError(
                f"triangleKernel cuequivariance runs on CUDA only, and this forward pass is on "
                f"{x.device.type}: set triangleKernel auto (our kernels off the GPU) or reference"
            )

    def takes_multiplication(
        self, z: torch.Tensor, *, c_hidden: int, chunk_size: int | None
    ) -> bool:
        """Whether :meth:`multiplication` runs the update of ``z [b, n, n, c_p]``."""
        if self.required:
            self._check_device(z)
            return True
        return multiplication_supported(
            z.device.type, compute_dtype(z), c_hidden=c_hidden, chunked=chunk_size is not None
        )

    def multiplication(
        self,
        z: torch.Tensor,
        pair_mask: torch.Tensor,
        *,
        direction: Literal["outgoing", "incoming"],
        weights: Mapping[str, torch.Tensor | float],
    ) -> torch.Tensor:
        """The fused multiplicative update.

        Args:
            z: ``[b, n, n, c_p]`` pair representation.
            pair_mask: ``[b, n, n]`` 1 where both residues are real.
            direction: ``outgoing`` (x_ij = Σ_k a_ik b_jk) or ``incoming`` (Σ_k a_ki b_kj).
            weights: the layer's parameters as :func:`multiplication_arguments` gives them.

        Returns:
            ``[b, n, n, c_p]`` update (add it to z).
        """
        return _cueq().triangle_multiplicative_update(
            z, direction=direction, mask=pair_mask, **weights
        )

    def takes_attention(self, zn: torch.Tensor, *, head_dim: int) -> bool:
        """Whether :meth:`attention` runs the attention core of the layer input ``zn``."""
        if self.required:
            self._check_device(zn)
            return True
        return attention_supported(zn.device.type, compute_dtype(zn), head_dim=head_dim)

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        bias: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """o_ij = Σ_k softmax_k(q_ij·k_ik/√c + bias_jk, valid keys only) v_ik.

        Args:
            q, k, v: ``[b, i, h, n, c]`` (rows i, queries j / keys k, heads, channels).
            bias: ``[b, 1, h, n, n]`` triangle bias in fp32, the kernel's dtype (fp64 for an
                fp64 call, which cuEquivariance runs in PyTorch).
            mask: ``[b, i, 1, 1, n]`` bool, True for valid keys (:func:`key_mask`).

        Returns:
            ``[b, i, h, n, c]``, in q's dtype.
        """
        return _cueq().triangle_attention(
            q, k, v, bias, mask=mask, scale=1.0 / math.sqrt(q.shape[-1])
        )
