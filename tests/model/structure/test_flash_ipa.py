"""FlashIPA against dense IPA with the same low-rank bias and pair values (fp64), invariance,
padding, gradients, memory, head-dim validation and (GPU) backend agreement."""

from __future__ import annotations

import pytest
import torch
from helpers import forbid_allocations_at_least, random_rotation, randomize_
from torch.testing import assert_close

from genie.geometry import Rigid, quaternion_to_rotation
from genie.model.representations import PairFactors
from genie.model.structure.flash_ipa import FlashIPA
from genie.model.structure.ipa import InvariantPointAttention

H, C, PQ, PV, CS, R, CF = 3, 4, 2, 3, 10, 2, 5


def inputs(b=2, n=9, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(b, n, CS, generator=gen, dtype=dtype)
    pair = PairFactors(torch.randn(b, n, R, CF, generator=gen, dtype=dtype),
                       torch.randn(b, n, R, CF, generator=gen, dtype=dtype))  # fmt: skip
    rots = quaternion_to_rotation(torch.randn(b, n, 4, generator=gen, dtype=dtype))
    frames = Rigid(rots, torch.randn(b, n, 3, generator=gen, dtype=dtype) * 3 + 20)
    mask = torch.ones(b, n, dtype=dtype)
    if b > 1:
        mask[1, n - 3 :] = 0
    return s, pair.masked(mask), frames, mask


def flash(seed=0, **kwargs):
    layer = FlashIPA(c_s=CS, c_f=CF, rank=R, c_hidden=C, n_heads=H, n_qk_points=PQ,
                     n_v_points=PV, **kwargs)  # fmt: skip
    return randomize_(layer, scale=0.3, seed=seed).double()


class ExplicitPair:
    """A pair representation for dense IPA whose bias is Σ_r β_hir β'_hjr (materialised) and
    whose pair values are z_ij = Σ_r U_ir ⊙ V_jr (materialised)."""

    def __init__(self, layer: FlashIPA, pair: PairFactors):
        beta = layer.bias_u(pair.u)  # [b, n, r, h]
        beta2 = layer.bias_v(pair.v)
        self.bias_full = torch.einsum("birh,bjrh->bhij", beta, beta2)
        self.z = pair.materialize()

    def bias(self, linear, rows):
        return self.bias_full[:, :, rows]

    def attend(self, attn, rows):
        return attn.transpose(1, 2) @ self.z[:, rows]

    def normalized(self, norm):
        return self


def dense_twin(layer: FlashIPA) -> InvariantPointAttention:
    ipa = InvariantPointAttention(c_s=CS, c_p=CF, c_hidden=C, n_heads=H, n_qk_points=PQ,
                                  n_v_points=PV).double()  # fmt: skip
    for name in ("linear_q", "linear_kv", "linear_q_pts", "linear_kv_pts", "linear_out"):
        getattr(ipa, name).load_state_dict(getattr(layer, name).state_dict())
    ipa.head_weights.data.copy_(layer.head_weights.data)
    return ipa


def test_equals_dense_ipa_with_the_same_low_rank_bias_and_values():
    layer = flash()
    s, pair, frames, mask = inputs()
    s.requires_grad_(True)
    out = layer(s, pair, frames, mask)
    ref = dense_twin(layer)(s, ExplicitPair(layer, pair), frames, mask)
    assert_close(out, ref, rtol=1e-10, atol=1e-10)
    (g1,) = torch.autograd.grad(out.square().sum(), s)
    (g2,) = torch.autograd.grad(ref.square().sum(), s)
    assert_close(g1, g2, rtol=1e-9, atol=1e-9)


def test_invariant_to_global_rigid_motion():
    layer = flash(1)
    s, pair, frames, mask = inputs(seed=1)
    gen = torch.Generator().manual_seed(1)
    q = random_rotation(gen, torch.float64)
    moved = Rigid(q @ frames.rots, frames.trans @ q.T + torch.tensor([5.0, -3.0, 40.0]).double())
    assert_close(layer(s, pair, moved, mask), layer(s, pair, frames, mask))


def test_padding_changes_nothing():
    layer = flash(2)
    s, pair, frames, mask = inputs(b=1, seed=2)
    n, pad = s.shape[1], 4
    s2 = torch.cat([s, 9 * torch.randn(1, pad, CS, dtype=torch.float64)], 1)
    junk = 9 * torch.randn(2, 1, pad, R, CF, dtype=torch.float64)
    pair2 = PairFactors(torch.cat([pair.u, junk[0]], 1), torch.cat([pair.v, junk[1]], 1))
    frames2 = Rigid(torch.cat([frames.rots, torch.eye(3).double().expand(1, pad, 3, 3)], 1),
                    torch.cat([frames.trans, 50 * torch.randn(1, pad, 3).double()], 1))  # fmt: skip
    mask2 = torch.cat([mask, torch.zeros(1, pad, dtype=torch.float64)], 1)
    out = layer(s2, pair2.masked(mask2), frames2, mask2)
    assert_close(out[:, :n], layer(s, pair, frames, mask))
    assert out[:, n:].abs().max() == 0


def test_zero_padding_of_head_dims_changes_nothing():
    layer = flash(3)
    s, pair, frames, mask = inputs(seed=3)
    q, k, v, _ = layer.augmented(s, pair, frames, mask)
    assert q.shape[-1] % 8 == 0 and v.shape[-1] % 8 == 0
    plain = torch.softmax(q @ k.transpose(-1, -2), -1) @ v
    extra = torch.nn.functional.pad
    padded = torch.softmax(extra(q, (0, 8)) @ extra(k, (0, 8)).transpose(-1, -2), -1) @ extra(
        v, (0, 16)
    )
    assert_close(padded[..., : v.shape[-1]], plain)
    assert_close(layer._attend(q, k, v), plain)


def test_gradcheck_tiny():
    layer = FlashIPA(c_s=4, c_f=2, rank=1, c_hidden=2, n_heads=1, n_qk_points=1, n_v_points=1)
    layer = randomize_(layer, scale=0.3, seed=4).double()
    s, _, frames, mask = inputs(b=1, n=4, seed=4)
    pair = PairFactors(torch.randn(1, 4, 1, 2).double(), torch.randn(1, 4, 1, 2).double())
    s = s[..., :4].clone().requires_grad_(True)
    u = pair.u.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s_, u_: layer(s_, PairFactors(u_, pair.v), frames, mask), (s, u), eps=1e-6
    )


def test_head_dim_limit_is_refused_at_build_time():
    kwargs = dict(c_s=32, c_hidden=16, n_heads=12, n_qk_points=4, n_v_points=8)
    FlashIPA(c_f=96, rank=2, **kwargs)  # v = 16 + 24 + 192 = 232
    with pytest.raises(ValueError, match=r"value head dim 328 exceeds 256.*zFactorRank"):
        FlashIPA(c_f=96, rank=3, **kwargs)


def test_no_n_by_n_tensor_at_2048():
    n = 2048
    layer = FlashIPA(c_s=16, c_f=8, rank=2, c_hidden=8, n_heads=4, n_qk_points=2, n_v_points=2)
    _, _, frames, mask = inputs(b=1, n=n, seed=5, dtype=torch.float32)
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(1, n, 16, generator=gen).requires_grad_(True)
    pair = PairFactors(
        torch.randn(1, n, 2, 8, generator=gen), torch.randn(1, n, 2, 8, generator=gen)
    )
    with forbid_allocations_at_least(n * n, square=n) as limit:
        out = layer(s, pair, frames, mask)
        out.square().sum().backward()
    assert limit.largest >= n * 16 and torch.isfinite(s.grad).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["cudnn", "flash", "efficient", "auto"])
def test_gpu_backends_agree_with_math(backend):
    torch.manual_seed(0)
    kw = dict(c_s=64, c_f=32, rank=2, c_hidden=16, n_heads=12, n_qk_points=4, n_v_points=8)
    ref_layer = FlashIPA(**kw, backend="math", qk_dtype="fp32").cuda()
    randomize_(ref_layer, scale=0.1, seed=6)
    layer = FlashIPA(**kw, backend=backend, qk_dtype="fp16").cuda()
    layer.load_state_dict(ref_layer.state_dict())
    s, pair, frames, mask = inputs(b=2, n=300, seed=6, dtype=torch.float32)
    s = s.repeat(1, 1, 7)[..., :64].cuda().requires_grad_(True)
    pair = PairFactors(pair.u.repeat(1, 1, 1, 7)[..., :32].cuda(),
                       pair.v.repeat(1, 1, 1, 7)[..., :32].cuda())  # fmt: skip
    frames = Rigid(frames.rots.cuda(), frames.trans.cuda() / 10)
    mask = mask.cuda()
    ref = ref_layer(s, pair, frames, mask)
    out = layer(s, pair, frames, mask)
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-2, f"{backend}: relative error {rel:.2e}"
    (g1,) = torch.autograd.grad(ref.square().sum(), s)
    (g2,) = torch.autograd.grad(out.square().sum(), s)
    assert (g2 - g1).norm() / g1.norm() < 2e-2
