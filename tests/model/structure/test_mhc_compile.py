"""On a GPU, the compiled mHC coefficients equal the eager ones (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from genie.model.structure.hyper_connections import HyperConnection


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_coefficients_equal_eager():
    torch.manual_seed(0)
    hc = HyperConnection(c=32, expansion_rate=4, sinkhorn_iters=20, alpha_init=0.5,
                         branch_index=1).cuda()  # fmt: skip
    with torch.no_grad():
        hc.b_res.normal_()
    x = torch.randn(2, 300, 4, 32, device="cuda", requires_grad=True)
    grads = []
    for compiled in (True, False):
        hc.compile = compiled
        pre, post, res = hc.coefficients(x)
        (g,) = torch.autograd.grad((pre.sum() + post.square().sum() + res.square().sum()), x)
        grads.append((pre, post, res, g))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5)
