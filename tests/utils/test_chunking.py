"""genie/utils/chunking.py: chunked equals unchunked; under ``torch.compile`` a loop of more than
``MAX_UNROLLED`` chunks leaves the caller's graph and compiles as often whatever its length."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from torch.testing import assert_close

from genie.utils.chunking import (
    MAX_UNROLLED,
    chunk_slices,
    chunked,
    chunks_run_by,
    compile_chunk_runner,
)


def softmax_rows(x: torch.Tensor, w: torch.Tensor):
    """A layer's chunk body: rows ``x[:, sl] [b, i, c]`` through ``w``, gated by their first
    channel."""

    def rows(sl: slice) -> torch.Tensor:
        return torch.softmax(x[:, sl] @ w, dim=-1) * x[:, sl, :1]

    return rows


def layer(x: torch.Tensor, w: torch.Tensor, chunk: int) -> torch.Tensor:
    """Work before, a chunked operation, work after: ``[b, n, c] -> [b, n, c_out]``."""
    h = torch.tanh(x)
    return 2 * chunked(softmax_rows(h, w), h.shape[1], chunk, dim=1) + 1


def reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(x)
    return 2 * torch.softmax(h @ w, dim=-1) * h[..., :1] + 1


def inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, w


@pytest.mark.parametrize(("size", "chunk"), [(10, None), (10, 10), (10, 20), (10, 3), (10, 1)])
def test_chunked_equals_the_whole_computation(size, chunk):
    x, w = inputs(size)
    assert_close(layer(x, w, chunk), reference(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("size", "chunk"), [(10, 3), (9, 3), (1, 4), (5, 1), (5, None)])
def test_chunk_slices_cover_the_axis_once_in_order(size, chunk):
    slices = chunk_slices(size, chunk)
    assert [i for piece in slices for i in range(piece.start, piece.stop)] == list(range(size))
    assert all(piece.stop - piece.start <= (chunk or size) for piece in slices)


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_slices(10, 0)


def counting_backend(graphs: list):
    def backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    return backend


def compile_counts(n: int, chunk: int) -> tuple[int, int]:
    """(caller graphs, chunk-runner graphs) compiled for one forward and backward of ``layer``,
    whose output and gradients must equal the unchunked reference."""
    dynamo.reset()
    caller, chunks = [], []
    compiled = torch.compile(layer, backend=counting_backend(caller))
    x, w = inputs(n, seed=n)
    with chunks_run_by(compile_chunk_runner(backend=counting_backend(chunks))):
        out = compiled(x, w, chunk)
    want = reference(x, w)
    assert_close(out, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(want)
    got = torch.autograd.grad((out * weights).sum(), [x, w])
    expected = torch.autograd.grad((want * weights).sum(), [x, w])
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e, rtol=1e-12, atol=1e-12)
    return len(caller), len(chunks)


def test_few_chunks_stay_in_the_callers_graph():
    assert compile_counts(4 * MAX_UNROLLED, 4) == (1, 0)  # MAX_UNROLLED chunks: one graph


def test_many_chunks_compile_as_often_however_many_they_are():
    """More than MAX_UNROLLED chunks: the chunk body compiles for the first chunk and once more
    with its bounds symbolic, the caller in two pieces around the loop; 2·MAX_UNROLLED or
    8·MAX_UNROLLED chunks (an uneven last one included) compile the same graphs."""
    few = compile_counts(2 * MAX_UNROLLED * 3, 3)
    many = compile_counts(8 * MAX_UNROLLED * 3 + 2, 3)
    assert few == many
    caller, chunks = few
    assert 1 <= chunks <= 3 and caller <= 3


def test_without_an_installed_runner_the_chunks_run_through_inductor():
    """The default runner: inductor's generated CPU code for the chunk body, under a caller
    compiled by another backend."""
    dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager")
    x, w = inputs(3 * (MAX_UNROLLED + 1))
    with torch.no_grad():
        assert_close(compiled(x, w, 3), reference(x, w), rtol=1e-10, atol=1e-10)
