"""Manifold-constrained hyper-connections (mHC) for the residual stream of the structure trunk.

Xie et al. 2025, "mHC: Manifold-Constrained Hyper-Connections" (arXiv:2512.24880), building on
Zhu et al. 2024, "Hyper-Connections" (arXiv:2409.19606). DESIGN.md §5.

Notation: ``b`` batch, ``n`` residues, ``s`` hyper-connection streams (``expansion_rate``; the
papers and DESIGN.md call it n), ``c`` channels (``c_s`` of the trunk).

The residual stream ``[b, n, c]`` is widened to ``s`` streams ``x: [b, n, s, c]``
(:func:`expand_streams` copies it at the first layer, :func:`contract_streams` or
:class:`StreamContraction` folds it back after the last). Every residual branch F (an IPA layer,
a transition) then updates all streams at once,

    x ← H_res · x + H_postᵀ · F(H_pre · x),

with coefficients computed per residue from the flattened, RMS-normalised streams
``x′ = RMSNorm(flatten(x)): [b, n, s·c]``:

    H_pre  = σ(α_pre · x′φ_pre + b_pre)                         [b, n, s]     reads F's input
    H_post = 2σ(α_post · x′φ_post + b_post)                     [b, n, s]     writes F's output
    H_res  = SinkhornKnopp(exp(α_res · mat(x′φ_res) + b_res))   [b, n, s, s]  doubly stochastic

A doubly-stochastic H_res mixes the streams without growing or shrinking them (its spectral norm
is 1, and so is that of any product of them), which is what makes deep stacks of hyper-connections
stable. With the initialisation below, H_res ≈ I, H_post ≈ 1 and H_pre reads one stream, so a
freshly initialised stack computes (almost) the plain pre-LN residual stack on identical streams.

With ``expansion_rate == 1`` the wrapper is exactly the plain residual ``x + F(x)`` (no
parameters, no coefficients), so a model with one stream equals the plain-residual model bit for
bit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from genie.model.layers.primitives import Linear

RMS_NORM_EPS = 1e-6  # keeps x′ = 0 (not NaN) for all-zero (padding) residues
RES_OFF_DIAGONAL_INIT = -8.0  # b_res off the diagonal: exp(-8) ≈ 3e-4, so H_res ≈ I at start
PRE_READ_WEIGHT_INIT = 0.9  # σ(b_pre) of the stream a branch reads at start; the rest share 0.1


@dataclasses.dataclass(frozen=True)
class HyperConnectionOptions:
    """The mHC settings of a structure stack (``mhcExpansionRate``, ``mhcSinkhornIters``,
    ``mhcAlphaInit``): residual streams, Sinkhorn–Knopp iterations for H_res and the initial gate
    scale α."""

    expansion_rate: int
    sinkhorn_iters: int
    alpha_init: float


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for 16-bit inputs, fp64 stays fp64."""
    return torch.promote_types(dtype, torch.float32)


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """Sinkhorn–Knopp projection of ``exp(logits)`` onto the doubly-stochastic matrices.

    Alternately normalises rows and columns of ``exp(logits)`` ``iters`` times (rows first, so the
    columns of the result sum to 1 to rounding and the rows to within the convergence error).
    Done in log space (``logsumexp``), so logits of ±50 and beyond stay finite, in fp32 (fp64
    stays fp64) with autocast off. Differentiable by backpropagating through the iterations.

    DISCREPANCY: Xie et al. normalise ``exp(logits)`` directly; the log-space form is the same
    maths without the overflow of ``exp`` at large logits.

    Args:
        logits: ``[*, s, s]`` log of the positive matrix to project, any float dtype.
        iters: number of (row, column) normalisation pairs, ≥ 1.

    Returns:
        ``[*, s, s]`` non-negative matrix whose rows and columns sum to 1, fp32 (fp64 for fp64
        input).
    """
    if iters < 1:
        raise ValueError(f"sinkhorn_knopp needs iters >= 1, got {iters}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_p = logits.to(_compute_dtype(logits.dtype))  # [*, s, s]
        for _ in range(iters):
            log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # rows sum to 1
            log_p = log_p - torch.logsumexp(log_p, dim=-2, keepdim=True)  # columns sum to 1
        return torch.exp(log_p)


def expand_streams(s: torch.Tensor, expansion_rate: int) -> torch.Tensor:
    """Copy a single representation into ``expansion_rate`` identical streams.

    Args:
        s: ``[b, n, c]``.
        expansion_rate: number of streams ``s``.

    Returns:
        ``[b, n, s, c]`` (a fresh tensor, not a view, so that in-place updates stay local).
    """
    return s.unsqueeze(-2).repeat_interleave(expansion_rate, dim=-2)


def contract_streams(x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Fold the streams back into one representation: their mean, or a weighted sum.

    DISCREPANCY: Zhu et al. sum the streams; the mean (sum / s) keeps the scale of one stream,
    and with one stream returns it unchanged.

    Args:
        x: ``[b, n, s, c]`` streams.
        weights: optional ``[s]`` weights (e.g. from :class:`StreamContraction`); None: the mean.

    Returns:
        ``[b, n, c]``.
    """
    if weights is None:
        if x.shape[-2] == 1:
            return x.squeeze(-2)
        return x.mean(dim=-2)
    return (weights[:, None] * x).sum(dim=-2)  # [b, n, c]


class StreamContraction(nn.Module):
    """Contraction of the streams after the last layer, ``mode="mean"`` or ``"learned"``.

    ``learned``: a σ-weighted mean ``Σ_s w_s x_s`` with ``w = σ(θ) / Σ σ(θ)``, θ initialised to 0
    (so it starts as the mean). With one stream both modes return that stream (no parameters).
    """

    def __init__(self, *, expansion_rate: int, mode: str = "mean"):
        super().__init__()
        if mode not in ("mean", "learned"):
            raise ValueError(f"unknown contraction mode '{mode}' (mean, learned)")
        self.expansion_rate = expansion_rate
        self.mode = mode
        if mode == "learned" and expansion_rate > 1:
            self.weight_logits = nn.Parameter(torch.zeros(expansion_rate))  # θ: [s]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, n, s, c]`` -> ``[b, n, c]``."""
        if self.mode == "mean" or self.expansion_rate == 1:
            return contract_streams(x)
        gate = torch.sigmoid(self.weight_logits)  # [s]
        return contract_streams(x, (gate / gate.sum()).to(x.dtype))


class StreamCoefficients(NamedTuple):
    """The per-residue coefficients of one hyper-connection (all fp32, or fp64 for fp64 input)."""

    pre: torch.Tensor  # [b, n, s]: H_pre, weights that read F's input from the streams
    post: torch.Tensor  # [b, n, s]: H_post, weights that write F's output to each stream
    res: torch.Tensor  # [b, n, s, s]: H_res, doubly stochastic; new stream i = Σ_j res[i, j] x_j


def _coefficient_math(x, w_pre, w_post, w_res, a_pre, a_post, a_res, b_pre, b_post, b_res, iters):
    """H_pre, H_post, H_res from streams ``x [*, s, c]`` (fp32; autocast off by the caller)."""
    *batch, s, c = x.shape
    flat = x.reshape(*batch, s * c)  # [b, n, s·c]
    x_norm = nn.functional.rms_norm(flat, (s * c,), eps=RMS_NORM_EPS)  # x′
    pre = torch.sigmoid(a_pre * (x_norm @ w_pre.T) + b_pre)  # [b, n, s]
    post = 2.0 * torch.sigmoid(a_post * (x_norm @ w_post.T) + b_post)  # [b, n, s]
    res_logits = a_res * (x_norm @ w_res.T).unflatten(-1, (s, s)) + b_res  # [b, n, s, s]
    return pre, post, sinkhorn_knopp(res_logits, iters)


_compiled_coefficients = None  # torch.compile'd _coefficient_math, built on first CUDA use
_compile_failed = False


def _fused_coefficients(*args):
    """On CUDA, :func:`_coefficient_math` through ``torch.compile`` (one compilation shared by
    every layer): the RMSNorm, three projections, gates and the Sinkhorn loop become a few fused
    kernels instead of ~100 launches per branch. Falls back to eager if compilation fails."""
    global _compiled_coefficients, _compile_failed
    if not _compile_failed:
        try:
            if _compiled_coefficients is None:
                _compiled_coefficients = torch.compile(_coefficient_math, dynamic=True)
            return _compiled_coefficients(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure: run eagerly instead
            _compile_failed = True
            logging.getLogger(__name__).warning("mHC: torch.compile failed (%s); eager", err)
    return _coefficient_math(*args)


class HyperConnection(nn.Module):
    """One manifold-constrained hyper-connection around one residual branch F (Xie et al., mHC).

    ``hc(x, branch)`` computes ``H_res · x + H_postᵀ · branch(H_pre · x)`` per residue, where
    ``branch`` maps ``[b, n, c] -> [b, n, c]`` and applies its own LayerNorm (pre-LN): the
    H_pre-read input is not normalised here.

    Initialisation (DESIGN.md §5; the bias initialisations are our choice, as is ``branch_index``):
    α_pre = α_post = α_res = ``alpha_init``; φ LeCun normal (so x′φ has unit scale and the
    dynamic part of each logit starts at ~α); b_res 0 on the diagonal and
    ``RES_OFF_DIAGONAL_INIT`` off it (H_res ≈ I); b_post = 0 (H_post ≈ 2σ(0) = 1); b_pre such that
    σ(b_pre) is ``PRE_READ_WEIGHT_INIT`` on stream ``branch_index mod s`` and shares the rest
    evenly over the others (Zhu et al.'s static read ``A_m = e_{k mod s}``, softened so that every
    stream gets gradient, and summing to 1 so F's input has the scale of one stream). The uneven
    reads break the symmetry between the streams: with an even b_pre (and φ = 0) copies of one
    representation get identical updates and gradients forever, and s streams collapse to one.

    DISCREPANCY: the RMSNorm of x′ has no learnable gain; a per-channel gain in front of the
    linear maps φ is absorbed by φ.

    DISCREPANCY: with ``expansion_rate == 1`` the coefficients are skipped, H_pre = H_post = H_res
    = 1 exactly, and the module has no parameters: it is the plain residual ``x + F(x)``.

    The coefficients and the stream mixing are computed in fp32 (fp64 stays fp64) with autocast
    off; ``branch`` itself runs under the caller's autocast state.
    """

    def __init__(
        self,
        *,
        c: int,
        expansion_rate: int,
        sinkhorn_iters: int,
        alpha_init: float,
        branch_index: int,
        compile: bool = True,
    ):
        """
        Args:
            c: channels of one stream (``c_s``).
            expansion_rate: number of streams ``s`` (1: plain residual).
            sinkhorn_iters: Sinkhorn–Knopp (row, column) normalisations for H_res.
            alpha_init: initial value of the gates α_pre, α_post, α_res on the dynamic part.
            branch_index: position of this residual branch in the stack (0, 1, 2, ...); at
                initialisation the branch reads mostly stream ``branch_index mod s``.
            compile: on CUDA, fuse the coefficient computation with ``torch.compile``.
        """
        super().__init__()
        if expansion_rate < 1:
            raise ValueError(f"expansion_rate must be >= 1, got {expansion_rate}")
        self.c = c
        self.expansion_rate = expansion_rate
        self.sinkhorn_iters = sinkhorn_iters
        self.compile = compile
        if expansion_rate == 1:
            return
        s = expansion_rate
        self.phi_pre = Linear(s * c, s, init="default", bias=False)
        self.phi_post = Linear(s * c, s, init="default", bias=False)
        self.phi_res = Linear(s * c, s * s, init="default", bias=False)
        self.alpha_pre = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha_post = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha_res = nn.Parameter(torch.tensor(float(alpha_init)))

        read = torch.full((s,), (1.0 - PRE_READ_WEIGHT_INIT) / (s - 1))
        read[branch_index % s] = PRE_READ_WEIGHT_INIT
        self.b_pre = nn.Parameter(torch.logit(read))  # [s]
        self.b_post = nn.Parameter(torch.zeros(s))  # [s]
        b_res = torch.full((s, s), RES_OFF_DIAGONAL_INIT)
        b_res.fill_diagonal_(0.0)
        self.b_res = nn.Parameter(b_res)  # [s, s]

    def coefficients(self, x: torch.Tensor) -> StreamCoefficients:
        """H_pre, H_post and H_res of every residue.

        Args:
            x: ``[b, n, s, c]`` streams.

        Returns:
            :class:`StreamCoefficients` with ``pre, post: [b, n, s]`` and ``res: [b, n, s, s]``;
            with one stream all ones.
        """
        *batch, s, c = x.shape
        if s != self.expansion_rate or c != self.c:
            raise ValueError(
                f"expected streams [..., {self.expansion_rate}, {self.c}], got {x.shape}"
            )
        if s == 1:
            ones = x.new_ones((*batch, 1), dtype=_compute_dtype(x.dtype))
            return StreamCoefficients(ones, ones, ones[..., None])
        dtype = _compute_dtype(self.b_res.dtype)
        args = (
            x.to(dtype), self.phi_pre.weight, self.phi_post.weight, self.phi_res.weight,
            self.alpha_pre, self.alpha_post, self.alpha_res, self.b_pre, self.b_post, self.b_res,
            self.sinkhorn_iters,
        )  # fmt: skip
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.is_cuda and self.compile and not torch.compiler.is_compiling():
                pre, post, res = _fused_coefficients(*args)  # a whole compiled model fuses it
            else:
                pre, post, res = _coefficient_math(*args)
        return StreamCoefficients(pre, post, res)

    def read(self, x: torch.Tensor, coefficients: StreamCoefficients) -> torch.Tensor:
        """F's input ``Σ_s H_pre,s x_s``: ``[b, n, s, c]`` -> ``[b, n, c]`` (mixing dtype)."""
        if self.expansion_rate == 1:
            return x.squeeze(-2)
        dtype = _compute_dtype(x.dtype)
        # Elementwise products, not einsum: a matmul would run in bf16 under autocast or with
        # float32_matmul_precision "medium", and this is the residual stream.
        with torch.autocast(device_type=x.device.type, enabled=False):
            pre = coefficients.pre.to(dtype)[..., None]  # [b, n, s, 1]
            return (pre * x.to(dtype)).sum(dim=-2)  # [b, n, c]

    def write(
        self, x: torch.Tensor, update: torch.Tensor, coefficients: StreamCoefficients
    ) -> torch.Tensor:
        """New streams ``H_res · x + H_postᵀ · update``.

        Args:
            x: ``[b, n, s, c]`` streams before the branch.
            update: ``[b, n, c]`` F's output.
            coefficients: from :meth:`coefficients` of the same ``x``.

        Returns:
            ``[b, n, s, c]`` in the dtype of ``x + update``.
        """
        out_dtype = torch.promote_types(x.dtype, update.dtype)
        if self.expansion_rate == 1:
            return x + update.unsqueeze(-2)
        dtype = _compute_dtype(out_dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            res = coefficients.res.to(dtype)[..., None]  # [b, n, s_out, s_in, 1]
            mixed = (res * x.to(dtype)[..., None, :, :]).sum(dim=-2)  # [b, n, s, c]
            written = coefficients.post.to(dtype)[..., None] * update.to(dtype)[..., None, :]
            return (mixed + written).to(out_dtype)  # [b, n, s, c]

    def forward(
        self, x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``x ← H_res · x + H_postᵀ · branch(H_pre · x)``.

        Args:
            x: ``[b, n, s, c]`` streams.
            branch: the residual branch F, ``[b, n, c] -> [b, n, c]`` (applies its own
                LayerNorm; padding is its business).

        Returns:
            ``[b, n, s, c]`` updated streams; with one stream exactly ``x + branch(x)``.
        """
        if self.expansion_rate == 1:
            return x + branch(x.squeeze(-2)).unsqueeze(-2)
        coefficients = self.coefficients(x)
        return self.write(x, branch(self.read(x, coefficients)), coefficients)

    def extra_repr(self) -> str:
        return f"c={self.c}, expansion_rate={self.expansion_rate}, iters={self.sinkhorn_iters}"
