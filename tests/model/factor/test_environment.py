"""k-NN environment features: SE(3) invariance, padding, the graph they are given, gradients."""

from __future__ import annotations

import torch
from helpers import helix_trace, random_rotation, randomize_
from torch.testing import assert_close

from genie.geometry.graph import build_knn_graph
from genie.model.factor.environment import KnnEnvironmentFeatures


def features(seed=0):
    layer = KnnEnvironmentFeatures(c_out=8, num_bins=6, max_distance=12.0, max_offset=4)
    return randomize_(layer, scale=0.5, seed=seed)


def graph(coords, mask, residue_index, k=5, strategy="coordinate"):
    return build_knn_graph(coords, mask, residue_index, k=k, strategy=strategy, chunk_size=7)


def test_features_invariant_to_rotation_and_translation():
    gen = torch.Generator().manual_seed(3)
    coords = torch.stack([helix_trace(15, generator=gen), helix_trace(15, generator=gen)])
    mask = torch.ones(2, 15)
    mask[1, 11:] = 0
    residue_index = torch.arange(15).expand(2, -1)
    layer = features()
    out = layer(coords, mask, graph(coords, mask, residue_index))
    moved = coords @ random_rotation(gen).T + torch.tensor([30.0, -12.0, 7.5])
    assert_close(layer(moved, mask, graph(moved, mask, residue_index)), out)
    assert out.shape == (2, 15, 8) and out[0].abs().min() > 0  # not trivially zero


def test_features_padding_and_the_graph_given():
    gen = torch.Generator().manual_seed(4)
    coords = helix_trace(12, generator=gen)[None]
    residue_index = torch.arange(12)[None] + 5
    layer = features()
    ones = torch.ones(1, 12)
    alone = layer(coords, ones, graph(coords, ones, residue_index, k=4))
    padded_coords = torch.cat([coords, torch.full((1, 6, 3), float("nan"))], dim=1)
    padded_index = torch.cat([residue_index, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 12), torch.zeros(1, 6)], dim=1)
    padded = layer(padded_coords, mask, graph(padded_coords, mask, padded_index, k=4))
    assert_close(padded[:, :12], alone)
    assert torch.equal(padded[:, 12:], torch.zeros(1, 6, 8))
    # Another graph (the sequence strategy) changes the output: the graph given is the one used.
    seq = graph(padded_coords, mask, padded_index, k=4, strategy="sequence")
    assert not torch.allclose(layer(padded_coords, mask, seq), padded)


def test_features_gradient_reaches_parameters():
    gen = torch.Generator().manual_seed(5)
    coords = helix_trace(10, generator=gen)[None]
    mask = torch.ones(1, 10)
    layer = features()
    layer(coords, mask, graph(coords, mask, torch.arange(10)[None])).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
