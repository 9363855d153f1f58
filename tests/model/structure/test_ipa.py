"""Dense IPA against AF2 Alg. 22 written with explicit point differences (fp64)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import random_rotation, randomize_
from torch.testing import assert_close

from genie.geometry import Rigid, quaternion_to_rotation
from genie.model.representations import DensePair
from genie.model.structure.ipa import InvariantPointAttention

H, C, PQ, PV, CS, CP = 3, 4, 2, 3, 10, 5


def make_inputs(b=2, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(b, n, CS, generator=gen, dtype=torch.float64)
    z = torch.randn(b, n, n, CP, generator=gen, dtype=torch.float64)
    rots = quaternion_to_rotation(torch.randn(b, n, 4, generator=gen, dtype=torch.float64))
    frames = Rigid(rots, torch.randn(b, n, 3, generator=gen, dtype=torch.float64) * 2)
    mask = torch.ones(b, n, dtype=torch.float64)
    if b > 1:
        mask[1, n - 3 :] = 0
    return s, z, frames, mask


def make_ipa(seed=0, chunk_size=None):
    ipa = InvariantPointAttention(
        c_s=CS, c_p=CP, c_hidden=C, n_heads=H, n_qk_points=PQ, n_v_points=PV,
        chunk_size=chunk_size,
    )  # fmt: skip
    return randomize_(ipa, scale=0.3, seed=seed).double()


def reference_ipa(ipa, s, z, frames, mask):
    b, n, _ = s.shape
    R, t = frames.rots, frames.trans  # [b, n, 3, 3], [b, n, 3]

    def to_global(p):  # [b, n, h, p, 3]
        return torch.einsum("bnxy,bnhpy->bnhpx", R, p) + t[:, :, None, None]

    q = ipa.linear_q(s).view(b, n, H, C)
    k, v = ipa.linear_kv(s).view(b, n, H, 2 * C).split(C, -1)
    qp = to_global(ipa.linear_q_pts(s).view(b, n, H, PQ, 3))
    kp, vp = to_global(ipa.linear_kv_pts(s).view(b, n, H, PQ + PV, 3)).split([PQ, PV], dim=3)
    gamma = torch.nn.functional.softplus(ipa.head_weights) * math.sqrt(2 / (9 * PQ))
    dist2 = ((qp[:, :, None] - kp[:, None, :]) ** 2).sum(dim=(-1, -2))  # [b, i, j, h]
    logits = (
        torch.einsum("bihc,bjhc->bijh", q, k) / math.sqrt(C)
        + ipa.linear_bias(z)
        - gamma / 2 * dist2
    ) * math.sqrt(1 / 3)
    logits = logits + (1 - mask)[:, None, :, None] * -1e9
    a = torch.softmax(logits, dim=2)  # over j
    o = torch.einsum("bijh,bjhc->bihc", a, v)
    o_pt = torch.einsum("bijh,bjhpx->bihpx", a, vp)
    o_pt = torch.einsum("bnyx,bnhpy->bnhpx", R, o_pt - t[:, :, None, None])  # Rᵀ(o − t)
    o_norm = torch.sqrt((o_pt**2).sum(-1) + 1e-8)
    o_pair = torch.einsum("bijh,bijc->bihc", a, z)
    feats = torch.cat([o.flatten(2), o_pt.flatten(2), o_norm.flatten(2), o_pair.flatten(2)], -1)
    return ipa.linear_out(feats) * mask[..., None]


def test_matches_explicit_reference():
    ipa = make_ipa()
    s, z, frames, mask = make_inputs()
    out = ipa(s, DensePair(z), frames, mask)
    assert out.shape == s.shape
    assert_close(out, reference_ipa(ipa, s, z, frames, mask))


@pytest.mark.parametrize("chunk", [1, 3, 7, 33])
def test_chunked_equals_unchunked(chunk):
    chunked, plain = make_ipa(1, chunk_size=chunk), make_ipa(1)
    s, z, frames, mask = make_inputs(seed=1)
    assert_close(chunked(s, DensePair(z), frames, mask), plain(s, DensePair(z), frames, mask))


def test_invariant_to_global_rigid_motion():
    ipa = make_ipa(2)
    s, z, frames, mask = make_inputs(seed=2)
    gen = torch.Generator().manual_seed(2)
    motion = Rigid(
        random_rotation(gen, torch.float64), torch.randn(3, generator=gen, dtype=torch.float64) * 5
    )
    moved = Rigid(motion.rots @ frames.rots, frames.trans @ motion.rots.T + motion.trans)
    assert_close(ipa(s, DensePair(z), moved, mask), ipa(s, DensePair(z), frames, mask))


def test_padding_changes_nothing():
    ipa = make_ipa(3)
    s, z, frames, mask = make_inputs(b=1, seed=3)
    full = ipa(s, DensePair(z), frames, mask)
    n = s.shape[1]
    pad = 4
    s2 = torch.cat([s, torch.randn(1, pad, CS, dtype=torch.float64) * 9], 1)
    z2 = torch.randn(1, n + pad, n + pad, CP, dtype=torch.float64) * 9
    z2[:, :n, :n] = z
    frames2 = Rigid(
        torch.cat([frames.rots, torch.eye(3, dtype=torch.float64).expand(1, pad, 3, 3)], 1),
        torch.cat([frames.trans, torch.randn(1, pad, 3, dtype=torch.float64) * 30], 1),
    )
    mask2 = torch.cat([mask, torch.zeros(1, pad, dtype=torch.float64)], 1)
    assert_close(ipa(s2, DensePair(z2), frames2, mask2)[:, :n], full)
