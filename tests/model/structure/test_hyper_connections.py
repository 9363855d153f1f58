"""mHC hyper-connections: Sinkhorn–Knopp, initialisation, the one-stream reduction, symmetry
breaking between streams, gradients, padding, autocast."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_
from torch import nn
from torch.testing import assert_close

from genie.model.structure.hyper_connections import (
    HyperConnection,
    StreamContraction,
    contract_streams,
    expand_streams,
    sinkhorn_knopp,
)

C, S, ITERS, ALPHA = 8, 4, 20, 0.01  # channels, streams, Sinkhorn iterations, α init

# Sinkhorn accuracy after 20 iterations on std-1 logits, s = 4: columns are normalised last and
# sum to 1 to rounding; rows are within the convergence error (measured on this seed: ~1e-4; over
# 10^5 draws the worst was 1.4e-3, so near-degenerate matrices converge more slowly).
COL_TOL, ROW_TOL = 1e-6, 1e-3


def make_hc(*, expansion_rate: int = S, branch_index: int = 0, dtype=torch.float64):
    hc = HyperConnection(
        c=C, expansion_rate=expansion_rate, sinkhorn_iters=ITERS, alpha_init=ALPHA,
        branch_index=branch_index,
    )  # fmt: skip
    return hc.to(dtype)


def make_mlp(seed: int, dtype=torch.float64) -> nn.Module:
    """A random pre-LN MLP branch ``[b, n, c] -> [b, n, c]`` (no zero-initialised final layer)."""
    mlp = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, 2 * C), nn.ReLU(), nn.Linear(2 * C, C))
    return randomize_(mlp, scale=0.5, seed=seed).to(dtype)


class Stack(nn.Module):
    """expand -> ``n_layers`` hyper-connected MLP branches -> contract (mean)."""

    def __init__(self, *, expansion_rate: int, n_layers: int = 2):
        super().__init__()
        self.expansion_rate = expansion_rate
        self.hcs = nn.ModuleList(
            make_hc(expansion_rate=expansion_rate, branch_index=i) for i in range(n_layers)
        )
        self.branches = nn.ModuleList(make_mlp(seed=i) for i in range(n_layers))

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = expand_streams(s, self.expansion_rate)  # [b, n, s, c]
        hidden = []
        for hc, branch in zip(self.hcs, self.branches, strict=True):
            x = hc(x, branch)
            hidden.append(x)
        return contract_streams(x), hidden


def inputs(b=2, n=6, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, C, generator=gen, dtype=dtype)


def stream_spread(x: torch.Tensor) -> float:
    """Largest difference between any stream and stream 0 of ``[b, n, s, c]``."""
    return (x - x[..., :1, :]).abs().max().item()


# --- Sinkhorn–Knopp -------------------------------------------------------------------------


def test_sinkhorn_doubly_stochastic():
    logits = torch.randn(1024, S, S, generator=torch.Generator().manual_seed(0))
    p = sinkhorn_knopp(logits, ITERS)
    assert p.shape == logits.shape and p.dtype == torch.float32
    assert (p >= 0).all()
    col_err = (p.sum(-2) - 1).abs().max().item()
    row_err = (p.sum(-1) - 1).abs().max().item()
    assert col_err < COL_TOL, col_err
    assert row_err < ROW_TOL, row_err
    # Not the trivial answer: the projection keeps the structure of the logits.
    assert (p - 1.0 / S).abs().max() > 0.1


def test_sinkhorn_converges_with_more_iterations():
    logits = torch.randn(1024, S, S, generator=torch.Generator().manual_seed(1))
    errors = [(sinkhorn_knopp(logits, k).sum(-1) - 1).abs().max().item() for k in (1, 5, 50)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 1e-5, errors


def test_sinkhorn_finite_for_large_logits_under_autocast():
    gen = torch.Generator().manual_seed(0)
    logits = 50.0 * torch.randn(256, S, S, generator=gen).sign()  # ±50
    logits = logits.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = sinkhorn_knopp(logits, ITERS)
        (p * torch.randn(p.shape, generator=gen)).sum().backward()
    assert p.dtype == torch.float32
    assert torch.isfinite(p).all() and (p >= 0).all()
    # Columns are normalised last; rows need not converge for 0/1-like patterns without a
    # doubly-stochastic matrix of the same support (exp(±50)), so only finiteness is required.
    assert (p.sum(-2) - 1).abs().max() < COL_TOL
    assert torch.isfinite(logits.grad).all()


def test_sinkhorn_rejects_zero_iterations():
    with pytest.raises(ValueError, match="iters"):
        sinkhorn_knopp(torch.zeros(S, S), 0)


def test_hyper_connection_matches_the_formula():
    """DESIGN §5 written out, with a linear-space Sinkhorn, against the module (random params, so
    H_res is far from I and every coefficient matters)."""
    hc = randomize_(make_hc(branch_index=1), scale=0.5, seed=1)
    branch = make_mlp(seed=2)
    x = torch.randn(2, 6, S, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    flat = x.reshape(2, 6, S * C)
    x_norm = flat / torch.sqrt((flat**2).mean(-1, keepdim=True) + 1e-6)  # x′
    h_pre = torch.sigmoid(hc.alpha_pre * x_norm @ hc.phi_pre.weight.T + hc.b_pre)
    h_post = 2 * torch.sigmoid(hc.alpha_post * x_norm @ hc.phi_post.weight.T + hc.b_post)
    m = torch.exp(hc.alpha_res * (x_norm @ hc.phi_res.weight.T).reshape(2, 6, S, S) + hc.b_res)
    for _ in range(ITERS):
        m = m / m.sum(-1, keepdim=True)
        m = m / m.sum(-2, keepdim=True)
    expected = (
        torch.einsum("bnij,bnjc->bnic", m, x)
        + h_post[..., None] * branch(torch.einsum("bns,bnsc->bnc", h_pre, x))[..., None, :]
    )

    coeffs = hc.coefficients(x)
    assert_close(coeffs.pre, h_pre)
    assert_close(coeffs.post, h_post)
    assert_close(coeffs.res, m)
    assert (m - torch.eye(S, dtype=m.dtype)).abs().max() > 0.1  # really mixing
    assert_close(hc(x, branch), expected)


# --- initialisation ------------------------------------------------------------------------


def test_h_res_is_identity_at_init():
    hc = make_hc()
    x = 3.0 * torch.randn(
        2, 6, S, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    coeffs = hc.coefficients(x)
    assert coeffs.res.shape == (2, 6, S, S)
    # Off-diagonal exp(-8) ≈ 3.4e-4 each, so the diagonal is 1 - 3 * 3.4e-4 ≈ 0.999.
    assert (coeffs.res - torch.eye(S, dtype=torch.float64)).abs().max() < 2e-3
    # H_post ≈ 2σ(0) = 1; H_pre reads stream 0 (≈ 0.9) and sums to ≈ 1; dynamic part ~α.
    assert (coeffs.post - 1).abs().max() < 0.05
    assert (coeffs.pre[..., 0] - 0.9).abs().max() < 0.05
    assert (coeffs.pre.sum(-1) - 1).abs().max() < 0.05


def test_branch_index_chooses_the_read_stream():
    x = torch.randn(1, 3, S, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for index in range(2 * S):
        pre = make_hc(branch_index=index).coefficients(x).pre  # [b, n, s]
        assert (pre.argmax(-1) == index % S).all()


def test_stack_at_init_is_close_to_plain_residual():
    torch.manual_seed(0)
    mhc, plain = Stack(expansion_rate=S), Stack(expansion_rate=1)
    plain.branches.load_state_dict(mhc.branches.state_dict())
    s = inputs()
    out_mhc, _ = mhc(s)
    out_plain, _ = plain(s)
    diff = (out_mhc - out_plain).abs().max() / out_plain.abs().max()
    assert 0 < diff < 0.05, diff


# --- one stream: the plain residual ----------------------------------------------------------


def test_one_stream_is_exactly_the_plain_residual():
    hc = make_hc(expansion_rate=1)
    assert len(list(hc.parameters())) == 0
    branch = make_mlp(seed=3)
    s = inputs()
    out = hc(expand_streams(s, 1), branch)
    assert out.shape == (2, 6, 1, C)
    assert torch.equal(out.squeeze(-2), s + branch(s))


def test_one_stream_stack_equals_plain_residual_stack_bit_for_bit():
    torch.manual_seed(0)
    stack = Stack(expansion_rate=1, n_layers=3)
    s = inputs()
    plain = s
    for branch in stack.branches:
        plain = plain + branch(plain)
    out, _ = stack(s)
    assert torch.equal(out, plain)
    assert torch.equal(StreamContraction(expansion_rate=1, mode="learned")(s[..., None, :]), s)


# --- symmetry breaking -----------------------------------------------------------------------


@pytest.mark.parametrize("init", ["default", "phi_zero", "symmetric"])
def test_streams_differ_after_one_step_only_with_symmetry_breaking(init):
    """``default``: the module's init. ``phi_zero``: φ = 0, so only the uneven b_pre reads break
    the symmetry. ``symmetric``: φ = 0 and even b_pre — copies of one representation then get
    identical updates and gradients, and stay identical (this is what the init prevents)."""
    torch.manual_seed(0)
    stack = Stack(expansion_rate=S)
    with torch.no_grad():
        for hc in stack.hcs:
            if init in ("phi_zero", "symmetric"):
                for phi in (hc.phi_pre, hc.phi_post, hc.phi_res):
                    phi.weight.zero_()
            if init == "symmetric":
                hc.b_pre.zero_()
    s, target = inputs(seed=0), inputs(seed=1)
    _, hidden = stack(s)
    before = stream_spread(hidden[0])

    opt = torch.optim.SGD(stack.parameters(), lr=0.1)
    out, _ = stack(s)
    ((out - target) ** 2).mean().backward()
    opt.step()
    with torch.no_grad():
        _, hidden = stack(s)
    after = stream_spread(hidden[0])

    if init == "default":  # random φ already separates the streams a little
        assert before > 1e-4 and after > 1e-4, (before, after)
    else:
        assert before < 1e-12, before
    if init == "phi_zero":
        assert after > 1e-4, after
    if init == "symmetric":
        assert after < 1e-12, after


# --- gradients, padding, dtypes ------------------------------------------------------------


def test_gradients_reach_alpha_phi_and_biases():
    torch.manual_seed(0)
    stack = Stack(expansion_rate=S)
    out, _ = stack(inputs())
    (out**2).sum().backward()
    for i, hc in enumerate(stack.hcs):
        for name, p in hc.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (i, name)
            assert p.grad.abs().max() > 0, (i, name)


def test_padding_rows_are_finite_and_do_not_leak():
    hc = make_hc()
    branch = make_mlp(seed=0)  # per-residue, like a transition
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, S, C, generator=gen, dtype=torch.float64)
    x[1, 3:] = 0.0  # all-zero padding rows
    x.requires_grad_()
    out = hc(x, branch)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    coeffs = hc.coefficients(x)
    assert all(torch.isfinite(t).all() for t in coeffs)

    x_other = x.detach().clone()
    x_other[1, 3:] = 100.0 * torch.randn(3, S, C, generator=gen, dtype=torch.float64)
    out_other = hc(x_other, branch)
    assert_close(out_other[0], out[0], rtol=0, atol=0)
    assert_close(out_other[1, :3], out[1, :3], rtol=0, atol=0)


def test_large_logits_under_autocast_stay_finite():
    hc = make_hc(dtype=torch.float32)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        hc.b_res.copy_(50.0 * torch.randn(S, S, generator=gen).sign())
        hc.alpha_res.fill_(50.0)
    branch = make_mlp(seed=0, dtype=torch.float32)
    x = torch.randn(2, 6, S, C, generator=gen, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coeffs = hc.coefficients(x)
        out = hc(x, branch)
    out.float().sum().backward()
    assert coeffs.res.dtype == torch.float32
    assert torch.isfinite(coeffs.res).all() and (coeffs.res >= 0).all()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(hc.phi_res.weight.grad).all()


def test_shapes_and_contraction():
    s = inputs(b=3, n=5)
    x = expand_streams(s, S)
    assert x.shape == (3, 5, S, C)
    assert torch.equal(x[:, :, 2], s)
    assert torch.equal(contract_streams(x), s)
    out = make_hc()(x, make_mlp(seed=0))
    assert out.shape == (3, 5, S, C)

    learned = StreamContraction(expansion_rate=S, mode="learned").double()
    assert_close(learned(out), contract_streams(out))  # starts as the mean
    with torch.no_grad():
        learned.weight_logits.copy_(torch.tensor([10.0, -10.0, -10.0, -10.0]))
    assert_close(learned(out), out[:, :, 0], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="mode"):
        StreamContraction(expansion_rate=S, mode="sum")
