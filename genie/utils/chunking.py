"""Chunked evaluation: run a function over slices of one dimension and concatenate.

The one chunking utility of the package. Layers take a ``chunk_size`` argument and call
:func:`chunked`; ``chunk_size=None`` runs the function once on the whole input.

Under ``torch.compile`` a loop of more than :data:`MAX_UNROLLED` chunks is not unrolled into
the caller's graph, where every chunk is traced and compiled anew (compile time grew with the
chunk count: 91 s for one chunk, 249 s for 16 in ``docs/BENCHMARKS.md``). It is a deliberate
graph break instead: the loop runs in Python and calls one compiled function per chunk,
:func:`compile_chunk_runner`'s, which compiles once for the first chunk and once more with the
chunk's bounds symbolic, and then serves every chunk of every layer of that class.
:class:`~genie.model.compiled.CompiledDenoiser` installs a runner compiled like its forward
(:func:`chunks_run_by`); without one, the chunks run through inductor's default. Up to
:data:`MAX_UNROLLED` chunks (the sparse layers' 1,024-residue chunks up to 8,192 residues)
stay in the caller's graph, fused and CUDA-graphed with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import torch

ChunkRunner = Callable[[Callable[[slice], torch.Tensor], int, int], torch.Tensor]  # fn, start, stop

MAX_UNROLLED = 8  # chunks a compiled caller's graph holds; more run through the chunk runner
_runner: ContextVar[ChunkRunner | None] = ContextVar("chunk_runner", default=None)
_default_runner: list[ChunkRunner] = []  # compiled on first use


def chunked(
    fn: Callable[[slice], torch.Tensor], size: int, chunk_size: int | None, *, dim: int
) -> torch.Tensor:
    """Evaluate ``fn(slice(start, stop))`` for consecutive chunks and concatenate on ``dim``;
    under ``torch.compile``, more than :data:`MAX_UNROLLED` chunks run through the chunk runner
    (module doc), outside the caller's graph, whose program then does not depend on their number.

    Args:
        fn: maps a slice of the chunked axis to that slice of the output.
        size: length of the chunked axis.
        chunk_size: positions per call (None or >= size: a single call).
        dim: output dimension along which the pieces are concatenated.
    """
    if chunk_size is None or chunk_size >= size:
        return fn(slice(0, size))
    if torch.compiler.is_compiling() and size > MAX_UNROLLED * chunk_size:
        return _chunked_apart(fn, size, chunk_size, dim)
    return torch.cat([fn(piece) for piece in chunk_slices(size, chunk_size)], dim)


def chunk_slices(size: int, chunk_size: int | None) -> list[slice]:
    """Consecutive slices of ``chunk_size`` positions covering ``range(size)`` (None: one).

    The loop runs over the number of chunks, ⌈size / chunk_size⌉, not over ``range(0, size,
    step)``: traced by ``torch.compile`` (up to :data:`MAX_UNROLLED` chunks) with a symbolic
    size, the program then depends on that count only (``range`` over the size itself would
    fix the size to one value, so every length would compile anew)."""
    if chunk_size is None:
        return [slice(0, size)]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    count = -(-size // chunk_size)
    return [slice(i * chunk_size, min((i + 1) * chunk_size, size)) for i in range(count)]


@torch.compiler.disable
def _chunked_apart(
    fn: Callable[[slice], torch.Tensor], size: int, chunk_size: int, dim: int
) -> torch.Tensor:
    """The graph break of :func:`chunked`: a Python loop over the compiled runner."""
    runner = _runner.get()
    if runner is None:
        if not _default_runner:
            _default_runner.append(compile_chunk_runner())
        runner = _default_runner[0]
    pieces = [runner(fn, piece.start, piece.stop) for piece in chunk_slices(size, chunk_size)]
    return torch.cat(pieces, dim)


def _one_chunk(fn: Callable[[slice], torch.Tensor], start: int, stop: int) -> torch.Tensor:
    return fn(slice(start, stop))


def compile_chunk_runner(**options: Any) -> ChunkRunner:
    """``torch.compile(**options)`` of the call ``fn(slice(start, stop))`` of one chunk.

    One compiled variant serves each chunk body (its guards check ``fn``'s code and the shapes
    of the tensors it closes over); ``start`` and ``stop`` become symbolic at the second chunk,
    so a chunked layer compiles about twice whatever its number of chunks."""
    return torch.compile(_one_chunk, **options)


@contextlib.contextmanager
def chunks_run_by(runner: ChunkRunner) -> Iterator[None]:
    """Within the block, compiled chunk loops (:func:`chunked`) call ``runner``."""
    token = _runner.set(runner)
    try:
        yield
    finally:
        _runner.reset(token)
