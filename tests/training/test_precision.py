"""The config's precision keys as an autocast dtype, in agreement with the Lightning precision."""

from __future__ import annotations

import itertools

import pytest
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from genie.training.precision import PRECISIONS, autocast_dtype, lightning_precision


@pytest.mark.parametrize(
    ("use_mixed_precision", "precision", "expected"),
    [
        (True, "16", torch.float16),
        (True, "bf16", torch.bfloat16),
        (True, "32", None),
        (False, "16", None),
        (False, "bf16", None),
        (False, "32", None),
    ],
)
def test_autocast_dtype_of_each_combination(use_mixed_precision, precision, expected):
    got = autocast_dtype(use_mixed_precision=use_mixed_precision, precision=precision)
    assert got is expected


@pytest.mark.parametrize(
    ("use_mixed_precision", "precision"), itertools.product((True, False), PRECISIONS)
)
def test_autocast_dtype_is_what_lightning_autocasts_to(use_mixed_precision, precision):
    """Lightning's own plugin for ``lightning_precision`` of the same keys autocasts to the same
    dtype; ``32-true`` has no autocast."""
    dtype = autocast_dtype(use_mixed_precision=use_mixed_precision, precision=precision)
    lightning = lightning_precision(use_mixed_precision=use_mixed_precision, precision=precision)
    if lightning == "32-true":
        assert dtype is None
        return
    scaler = torch.amp.GradScaler("cpu") if lightning == "16-mixed" else None
    plugin = MixedPrecision(lightning, "cpu", scaler=scaler)
    assert plugin.autocast_context_manager().fast_dtype is dtype


@pytest.mark.parametrize("use_mixed_precision", [True, False])
def test_unknown_precision_is_refused_as_by_lightning_precision(use_mixed_precision):
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        autocast_dtype(use_mixed_precision=use_mixed_precision, precision="fp8")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        lightning_precision(use_mixed_precision=use_mixed_precision, precision="fp8")
