"""The builder's ``triangleKernel``: which dense layers get cuEquivariance's fused kernels, the
errors of ``cuequivariance`` where they cannot run or do not fit, and that the kernel choice
leaves the parameters (and so checkpoints) unchanged."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import REPO, SPARSE_TINY, TINY_MODEL, randomize_

from genie.checkpoint import CHECKSUM_KEY, checksum_entry, read_checkpoint
from genie.config import ConfigError, SampleConfig, load_config
from genie.model import build, build_denoiser
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication

# Sizes the fused kernels take: multiplicative hidden 32, attention 8 channels per head.
FUSABLE = TINY_MODEL + [
    "triangularMultiplicativeHiddenDimension=32", "triangularAttentionHiddenDimension=8",
    "includeTriangularAttention=True", "useAxialAttention=True", "numPairTransformLayers=2",
]  # fmt: skip
NOT_IMPORTABLE = "cuequivariance-torch does not import (ModuleNotFoundError: No module named x)"


def triangle_updates(model) -> list[torch.nn.Module]:
    kinds = (TriangleMultiplication, TriangleAttention)
    return [m for m in model.modules() if isinstance(m, kinds)]


@pytest.fixture
def available(monkeypatch):
    """The fused kernels as if installed on a GPU machine (nothing runs them here)."""
    monkeypatch.setattr(build, "cuequivariance_unavailable", lambda: None)


@pytest.mark.parametrize("kernel", ["auto", "cuequivariance"])
def test_without_the_package_auto_is_ours_and_cuequivariance_an_error(kernel, monkeypatch):
    monkeypatch.setattr(build, "cuequivariance_unavailable", lambda: NOT_IMPORTABLE)
    cfg = load_config(None, FUSABLE + [f"triangleKernel={kernel}"])
    if kernel == "auto":
        assert all(m.kernels is None for m in triangle_updates(build_denoiser(cfg)))
        return
    with pytest.raises(ConfigError) as error:
        build_denoiser(cfg)
    message = str(error.value)
    assert message.startswith(f"triangleKernel cuequivariance: {NOT_IMPORTABLE}")
    assert "triangleKernel auto" in message and "pip install 'genie-long[cueq]'" in message


def test_this_machine_decides_for_itself():
    """Without CUDA the package is not even imported, and cuequivariance says why."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    assert build.cuequivariance_unavailable().startswith("no CUDA device is available")
    with pytest.raises(ConfigError, match="no CUDA device"):
        build_denoiser(load_config(None, FUSABLE + ["triangleKernel=cuequivariance"]))


def test_every_dense_triangle_and_axial_layer_gets_the_kernels(available):
    for kernel, required in (("auto", False), ("cuequivariance", True)):
        model = build_denoiser(load_config(None, FUSABLE + [f"triangleKernel={kernel}"]))
        updates = triangle_updates(model)
        assert len(updates) == 2 * (2 + 2 + 2)  # per layer: 2 updates, 2 triangle, 2 axial
        assert {m.kernels.required for m in updates} == {required}
    reference = build_denoiser(load_config(None, FUSABLE + ["triangleKernel=reference"]))
    assert all(m.kernels is None for m in triangle_updates(reference))


def test_factorised_and_sparse_pairs_keep_ours_under_auto(available):
    factor = ["useFactorizedPairs=True", "pairFactorDim=6", "useFactorizedTriangleOps=True"]
    for cfg in (load_config(None, TINY_MODEL + factor),
                load_config(REPO / "configs" / "train_stage3v2.config", SPARSE_TINY)):  # fmt: skip
        assert cfg.triangleKernel == "auto"
        assert build.triangle_kernels(cfg) is None


def test_the_kernel_choice_leaves_the_parameters_unchanged(available):
    """The same names, shapes and initial values, and each model loads the other's weights."""
    states = {}
    for kernel in ("reference", "auto", "cuequivariance"):
        torch.manual_seed(0)
        model = build_denoiser(load_config(None, FUSABLE + [f"triangleKernel={kernel}"]))
        states[kernel] = model.state_dict()
        model.load_state_dict(randomize_(build_denoiser(load_config(None, FUSABLE))).state_dict())
    reference = states.pop("reference")
    for kernel, state in states.items():
        assert list(state) == list(reference), kernel
        for key, value in state.items():
            assert torch.equal(value, reference[key]), f"{kernel}: {key}"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["useFactorizedPairs=True", "useFactorizedTriangleOps=True", "useAxialAttention=False"],
         "with useFactorizedPairs True the pair layers have no dense pair tensor"),
        (["includeTriangularMultiplicativeUpdate=False", "includeTriangularAttention=False",
          "useAxialAttention=False"], "has no triangle multiplicative update"),
        (["numPairTransformLayers=0"], "has no triangle multiplicative update"),
        (["triangularMultiplicativeHiddenDimension=48"],
         "triangularMultiplicativeHiddenDimension a multiple of 32, got 48"),
        (["triangularAttentionHiddenDimension=12"],
         "triangularAttentionHiddenDimension a multiple of 8 and at most 128, got 12"),
        (["triangularAttentionHiddenDimension=136"], "at most 128, got 136"),
    ],
)  # fmt: skip
def test_cuequivariance_sizes_are_checked_with_the_config(extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, FUSABLE + ["triangleKernel=cuequivariance", *extra])
    load_config(None, FUSABLE + ["triangleKernel=auto", *extra])  # auto: ours where they differ


def test_sparse_pairs_refuse_cuequivariance():
    with pytest.raises(ConfigError, match="with useSparseKNN True"):
        load_config(REPO / "configs" / "train_stage3v2.config",
                    SPARSE_TINY + ["triangleKernel=cuequivariance"])  # fmt: skip


def test_a_checkpoint_trained_with_cuequivariance_samples_with_the_reference(
    tmp_path, available, monkeypatch
):
    """The sampling config's triangleKernel replaces the checkpoint's, so such a checkpoint
    reads on a machine without the kernels."""
    cfg = load_config(None, FUSABLE + ["triangleKernel=cuequivariance"])
    model = randomize_(build_denoiser(cfg), scale=0.2)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "fused.ckpt"
    torch.save({"hyper_parameters": {"config": dataclasses.asdict(cfg)}, "state_dict": state,
                CHECKSUM_KEY: checksum_entry(state)}, path)  # fmt: skip
    monkeypatch.setattr(build, "cuequivariance_unavailable", lambda: NOT_IMPORTABLE)  # sampling
    with pytest.raises(ConfigError, match="triangleKernel cuequivariance: cuequivariance-torch"):
        read_checkpoint(path)
    overrides = SampleConfig(triangleKernel="reference").model_overrides()
    assert overrides == {"triangleKernel": "reference"}
    trained = read_checkpoint(path, overrides=overrides)
    assert trained.config.triangleKernel == "reference"
    assert all(m.kernels is None for m in triangle_updates(trained.model))
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_the_training_command_reports_it_in_one_line(tmp_path, monkeypatch, capsys):
    from genie.training.run import main

    monkeypatch.setattr(build, "cuequivariance_unavailable", lambda: NOT_IMPORTABLE)
    overrides = [*FUSABLE, "triangleKernel=cuequivariance", f"logDirectory={tmp_path / 'runs'}",
                 f"cacheDirectory={tmp_path / 'cache'}", "numWorkers=0"]  # fmt: skip
    config = tmp_path / "fused.config"
    config.write_text("# the keys are given with --set\n")
    assert main(["--config", str(config), *(a for o in overrides for a in ("--set", o))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"error: triangleKernel cuequivariance: {NOT_IMPORTABLE}. Set triangleKernel auto (the "
            "fused kernels where they can run, ours elsewhere) or reference; to install them: "
            "pip install 'genie-long[cueq]'"
        )
    )
