"""Multi-scale distance loss: the "multi-scale hierarchical consistency loss" of DESIGN §5.

Not to be confused with the mHC hyper-connections of the structure trunk (``mhcExpansionRate``);
the config keys ``useMHCLoss``, ``mhcNumScales`` and ``mhcWeights`` belong to this loss.

Notation: ``b`` batch, ``n`` residues, ``s`` scales; coordinates and distances in Å.

For each scale with cut-off c (local 8 Å, mid 16 Å, global 32 Å), the error of a chain is the mean
absolute error of its predicted Cα distances

    E_c = mean over pairs i ≠ j of real residues with d_ij < c  of  |d̂_ij − d_ij|

where d is the true and d̂ the predicted distance; a chain's loss is Σ_s w_s E_{c_s}. Only the true
distance selects the pairs, so a prediction cannot shrink the set of pairs it is scored on.

Memory: with ``chunk_size`` the pairs are visited in chunks of rows i, each chunk under
:func:`genie.utils.checkpointing.recompute`, so neither the forward nor the backward pass holds a
tensor larger than ``[b, chunk_size, n]``; per-scale sums and pair counts are accumulated and
divided at the end. Without it one ``[b, n, n]`` distance matrix is built. Distances are computed
in fp32 whatever the autocast state (coordinate differences, not a Gram matrix, so there is no
cancellation for chains far from the origin).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genie.utils.checkpointing import recompute

DEFAULT_CUTOFFS: tuple[float, ...] = (8.0, 16.0, 32.0)  # Å: local, mid, global scale

# Å² added under the square root: keeps the gradient of the distance finite for coincident points
# (d = 0 has an infinite sqrt slope). Applied to true and predicted distances alike, so a perfect
# prediction scores exactly 0.
DISTANCE_EPS = 1e-6


def _squared_distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows [b, r, 3], cols [b, n, 3]`` -> ``[b, r, n]`` squared distances (Å²), built one
    coordinate at a time so that no ``[b, r, n, 3]`` tensor exists."""
    d2 = (rows[:, :, None, 0] - cols[:, None, :, 0]).square()  # [b, r, n]
    for c in (1, 2):
        d2 = d2 + (rows[:, :, None, c] - cols[:, None, :, c]).square()  # [b, r, n]
    return d2


def _row_block_sums(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    mask: torch.Tensor,
    start: int,
    stop: int,
    cutoffs: tuple[float, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Error sums and pair counts of the rows ``start:stop``.

    Args:
        x_pred, x_true: ``[b, n, 3]`` fp32 coordinates (Å), zero at padding.
        mask: ``[b, n]`` fp32, 1 for real residues.
        start, stop: the rows i of this block.
        cutoffs: ``s`` cut-offs (Å).

    Returns:
        ``([b, s], [b, s])``: Σ |d̂ − d| (Å) and the number of pairs, per chain and scale.
    """
    d_pred = torch.sqrt(_squared_distances(x_pred[:, start:stop], x_pred) + DISTANCE_EPS)
    d_true = torch.sqrt(_squared_distances(x_true[:, start:stop], x_true) + DISTANCE_EPS)
    # [b, r, n] each
    n = x_pred.shape[1]
    rows = torch.arange(start, stop, device=x_pred.device)  # [r]
    off_diagonal = rows[:, None] != torch.arange(n, device=x_pred.device)[None, :]  # [r, n]
    real = (mask[:, start:stop, None] > 0) & (mask[:, None, :] > 0) & off_diagonal  # [b, r, n]
    error = (d_pred - d_true).abs()  # [b, r, n]
    sums, counts = [], []
    for cutoff in cutoffs:
        chosen = real & (d_true < cutoff)  # [b, r, n]
        sums.append(torch.where(chosen, error, 0.0).sum(dim=(1, 2)))  # [b]
        counts.append(chosen.sum(dim=(1, 2)).to(error.dtype))  # [b]
    return torch.stack(sums, dim=-1), torch.stack(counts, dim=-1)  # [b, s], [b, s]


def distance_error_sums(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    mask: torch.Tensor,
    *,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    rows: slice | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ |d̂_ij − d_ij| and the number of pairs, per chain and scale, over the pairs i ≠ j of real
    residues whose true distance is below each cut-off, for the rows i in ``rows`` (default all;
    j ranges over every residue). Under sequence parallelism each process sums its own rows.

    Args: those of :func:`distance_errors`, and ``rows``: a range of rows i (``[start, stop)``).

    Returns:
        ``([b, s], [b, s])`` fp32: error sums (Å) and pair counts.
    """
    if x_pred.shape != x_true.shape or x_pred.shape[-1] != 3 or mask.shape != x_pred.shape[:2]:
        raise ValueError(
            f"expected x_pred, x_true [b, n, 3] and mask [b, n], got {tuple(x_pred.shape)}, "
            f"{tuple(x_true.shape)}, {tuple(mask.shape)}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    cutoffs = tuple(float(c) for c in cutoffs)
    if not cutoffs:
        raise ValueError("give at least one cut-off")
    with torch.autocast(device_type=x_pred.device.type, enabled=False):
        real = mask[..., None] > 0  # [b, n, 1]
        x_pred = torch.where(real, x_pred.float(), 0.0)  # [b, n, 3]
        x_true = torch.where(real, x_true.float(), 0.0)  # [b, n, 3]
        mask = real[..., 0].float()  # [b, n]
        rows = slice(0, x_pred.shape[1]) if rows is None else rows
        span = rows.stop - rows.start
        step = max(1, span if chunk_size is None else min(chunk_size, span))
        sums = counts = x_pred.new_zeros(x_pred.shape[0], len(cutoffs))  # [b, s]
        for start in range(rows.start, rows.stop, step):
            stop = min(start + step, rows.stop)
            block = (
                _row_block_sums(x_pred, x_true, mask, start, stop, cutoffs)
                if chunk_size is None
                else _recomputed_block(x_pred, x_true, mask, start, stop, cutoffs)
            )
            sums, counts = sums + block[0], counts + block[1]  # [b, s]
        return sums, counts


def distance_errors(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    mask: torch.Tensor,
    *,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mean absolute distance error per chain and scale.

    Args:
        x_pred: ``[b, n, 3]`` predicted coordinates (Å); any dtype, computed in fp32.
        x_true: ``[b, n, 3]`` true coordinates (Å).
        mask: ``[b, n]`` 1 for real residues, 0 for padding (padding coordinates are ignored,
            even when non-finite).
        cutoffs: ``s`` cut-offs (Å) on the true distance, one per scale.
        chunk_size: rows i per chunk (None = one ``[b, n, n]`` block).

    Returns:
        ``[b, s]`` mean |d̂_ij − d_ij| (Å) over the pairs i ≠ j of real residues whose true
        distance is below each cut-off; 0 where a chain has no such pair.
    """
    sums, counts = distance_error_sums(x_pred, x_true, mask, cutoffs=cutoffs, chunk_size=chunk_size)
    return sums / counts.clamp_min(1.0)  # [b, s]


def _recomputed_block(x_pred, x_true, mask, start, stop, cutoffs):
    """:func:`_row_block_sums` under activation recomputation: only the (shared) inputs are
    stored, and the ``[b, r, n]`` intermediates are rebuilt block by block in backward."""

    def block(x_pred: torch.Tensor, x_true: torch.Tensor, mask: torch.Tensor):
        return _row_block_sums(x_pred, x_true, mask, start, stop, cutoffs)

    return recompute(block, x_pred, x_true, mask)


def per_chain_distance_loss(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    mask: torch.Tensor,
    *,
    weights: Sequence[float],
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Σ_s w_s · (mean distance error at scale s), one value per chain.

    Args:
        x_pred, x_true: ``[b, n, 3]`` predicted and true coordinates (Å).
        mask: ``[b, n]`` 1 for real residues.
        weights: ``s`` weights, one per cut-off.
        cutoffs: ``s`` cut-offs (Å).
        chunk_size: rows per chunk (None = unchunked).

    Returns:
        ``[b]`` fp32 loss per chain (Å).
    """
    if len(weights) != len(cutoffs):
        raise ValueError(f"{len(weights)} weights for {len(cutoffs)} cut-offs: give one per scale")
    errors = distance_errors(x_pred, x_true, mask, cutoffs=cutoffs, chunk_size=chunk_size)
    w = torch.tensor([float(v) for v in weights], dtype=errors.dtype, device=errors.device)
    return (errors * w).sum(-1)  # [b]; no matmul, which autocast would run in low precision


def multiscale_distance_loss(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    mask: torch.Tensor,
    *,
    weights: Sequence[float],
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    chunk_size: int | None = None,
    chain_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The multi-scale distance loss of a batch: mean over chains of ``chain_weight · loss``.

    Chain weights are not renormalised (the mean divides by b, not by Σ weights), so that a batch
    of down-weighted chains contributes little instead of being scaled back up.

    Args:
        x_pred, x_true: ``[b, n, 3]`` predicted and true coordinates (Å).
        mask: ``[b, n]`` 1 for real residues.
        weights: ``s`` weights, one per cut-off.
        cutoffs: ``s`` cut-offs (Å); default 8, 16, 32 Å.
        chunk_size: rows per chunk (None = unchunked, builds ``[b, n, n]``).
        chain_weights: ``[b]`` weight per chain (None = 1).

    Returns:
        scalar fp32 loss (Å).
    """
    per_chain = per_chain_distance_loss(
        x_pred, x_true, mask, weights=weights, cutoffs=cutoffs, chunk_size=chunk_size
    )  # [b]
    if chain_weights is not None:
        per_chain = per_chain * chain_weights.float()
    return per_chain.mean()
