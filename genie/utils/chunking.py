"""Chunked evaluation: run a function over slices of one dimension and concatenate.

The one chunking utility of the package. Layers take a ``chunk_size`` argument and call
:func:`chunked`; ``chunk_size=None`` runs the function once on the whole input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def chunked(
    fn: Callable[[slice], torch.Tensor], size: int, chunk_size: int | None, *, dim: int
) -> torch.Tensor:
    """Evaluate ``fn(slice(start, stop))`` for consecutive chunks and concatenate on ``dim``.

    Args:
        fn: maps a slice of the chunked axis to that slice of the output.
        size: length of the chunked axis.
        chunk_size: positions per call (None or >= size: a single call).
        dim: output dimension along which the pieces are concatenated.
    """
    if chunk_size is None or chunk_size >= size:
        return fn(slice(0, size))
    return torch.cat([fn(piece) for piece in chunk_slices(size, chunk_size)], dim)


def chunk_slices(size: int, chunk_size: int | None) -> list[slice]:
    """Consecutive slices of ``chunk_size`` positions covering ``range(size)`` (None: one).

    The loop runs over the number of chunks, ⌈size / chunk_size⌉, not over ``range(0, size,
    step)``: under ``torch.compile`` with a symbolic size the program then depends on that
    count only (``range`` over the size itself would fix the size to one value, so every length
    would compile anew)."""
    if chunk_size is None:
        return [slice(0, size)]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    count = -(-size // chunk_size)
    return [slice(i * chunk_size, min((i + 1) * chunk_size, size)) for i in range(count)]
