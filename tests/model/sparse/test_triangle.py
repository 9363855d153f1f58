"""Sparse triangle updates, triangle attention and axial attention equal the dense operations on
the pair tensor masked to the same graph (float64), read on the graph's edges."""

import pytest
import torch
from helpers import randomize_

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import knn_graph
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layers.transition import Transition
from genie.model.sparse.triangle import SparseTriangleAttention, SparseTriangleMultiplication

C_P = 8


def make_graph(strategy: str = "coordinate", n: int = 14, k: int = 5, pad: int = 3):
    """A batch of two chains (the second padded) and its k-NN graph."""
    torch.manual_seed(0)
    coords = torch.randn(2, n, 3, dtype=torch.float64) * 6
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, n - pad :] = False
    index, valid = knn_graph(coords, mask, k=k, strategy=strategy)
    return KnnGraph.from_neighbors(index, valid, torch.zeros_like(index)), mask


def densify(edges: torch.Tensor, graph: KnnGraph):
    """``[b, n, k, c]`` edges -> dense ``[b, n, n, c]`` (zero off the graph) and the graph's
    ``[b, n, n]`` pair mask."""
    b, n, k, c = edges.shape
    z = edges.new_zeros(b, n, n, c)
    adj = edges.new_zeros(b, n, n)
    bi = torch.arange(b)[:, None, None].expand(b, n, k)
    ii = torch.arange(n)[None, :, None].expand(b, n, k)
    v = graph.valid
    z[bi[v], ii[v], graph.index[v]] = edges[v]
    adj[bi[v], ii[v], graph.index[v]] = 1.0
    return z, adj


def on_edges(dense: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
    """Dense ``[b, n, n, c]`` read at the graph's edge slots -> ``[b, n, k, c]``."""
    b, n, k = graph.index.shape
    bi = torch.arange(b)[:, None, None].expand(b, n, k)
    ii = torch.arange(n)[None, :, None].expand(b, n, k)
    return dense[bi, ii, graph.index]


def random_edges(graph: KnnGraph) -> torch.Tensor:
    torch.manual_seed(1)
    e = torch.randn(graph.b, graph.n, graph.k, C_P, dtype=torch.float64)
    return e * graph.valid[..., None]


@pytest.mark.parametrize("strategy", ["coordinate", "sequence", "hybrid"])
@pytest.mark.parametrize("mix", ["outgoing", "incoming"])
@pytest.mark.parametrize("chunk", [None, 4])
def test_sparse_triangle_multiplication_equals_masked_dense(strategy, mix, chunk):
    graph, _ = make_graph(strategy)
    dense = randomize_(TriangleMultiplication(c_p=C_P, c_hidden=6, mix=mix)).double()
    sparse = SparseTriangleMultiplication(c_p=C_P, c_hidden=6, mix=mix).double()
    sparse.load_state_dict(dense.state_dict())
    e = random_edges(graph).requires_grad_()
    z, adj = densify(e, graph)
    want = on_edges(dense(z, adj), graph) * graph.valid[..., None]
    got = sparse(e, graph, chunk_size=chunk)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # gradients agree too (through the gather/scatter and the recomputed chunks)
    (g_got,) = torch.autograd.grad((got * torch.cos(got)).sum(), e)
    (g_want,) = torch.autograd.grad((want * torch.cos(want)).sum(), e)
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("strategy", ["coordinate", "hybrid"])
@pytest.mark.parametrize("node", ["starting", "ending"])
@pytest.mark.parametrize("triangle_bias", [True, False])
def test_sparse_triangle_and_axial_attention_equal_masked_dense(strategy, node, triangle_bias):
    graph, _ = make_graph(strategy)
    kw = dict(c_p=C_P, c_hidden=4, n_heads=2, node=node, triangle_bias=triangle_bias)
    dense = randomize_(TriangleAttention(**kw)).double()
    sparse = SparseTriangleAttention(**kw).double()
    sparse.load_state_dict(dense.state_dict())
    e = random_edges(graph)
    z, adj = densify(e, graph)
    want = on_edges(dense(z, adj), graph) * graph.valid[..., None]
    for chunk in (None, 3):
        got = sparse(e, graph, chunk_size=chunk)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_sparse_pair_transition_equals_masked_dense():
    graph, _ = make_graph("hybrid")
    transition = randomize_(Transition(c=C_P, expansion=2)).double()
    e = random_edges(graph)
    z, adj = densify(e, graph)
    want = on_edges(transition(z, adj), graph)
    got = transition(e, graph.valid.double())
    torch.testing.assert_close(got, want * graph.valid[..., None], rtol=1e-12, atol=1e-12)
