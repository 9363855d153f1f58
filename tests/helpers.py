"""Shared test helpers: tiny configs, protein-like traces, random rigid motions, real data."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_MODEL = [
    "singleFeatureDimension=16", "pairFeatureDimension=8", "positionalEmbeddingDimension=8",
    "timestepEmbeddingDimension=8", "relativePositionK=4", "numPairTransformLayers=1",
    "triangularMultiplicativeHiddenDimension=8", "triangularAttentionHiddenDimension=4",
    "triangularAttentionNumHeads=2", "structureEncoderDepth=2", "structureEncoderHeads=2",
    "ipaHiddenDimension=4", "ipaNumQkPoints=2", "ipaNumVPoints=3",
]  # fmt: skip


def tiny_train_config(tmp_path: Path, *extra: str):
    """A tiny model trained on a few bundled chains, with everything written under tmp_path."""
    from genie.config import load_config

    return load_config(
        None,
        TINY_MODEL
        + [
            f"logDirectory={tmp_path / 'runs'}", f"cacheDirectory={tmp_path / 'cache'}",
            "name=test", "numWorkers=0", "maximumNumResidues=32", "minimumNumResidues=20",
            "batchSize=8", "datasetSize=16", "validationFraction=0.2", "numTimesteps=100",
            "learningRate=3e-3", "logEverySteps=1", "seed=3",
            "logSamplesEveryEpochs=0",  # ≈1.4 s a round; test_pictures.py turns them on
        ]
        + list(extra),
    )  # fmt: skip


# Dropout and a learning-rate warm-up: what a resumed run must reproduce exactly.
RESUME_EXTRA = ("triangularDropout=0.25", "warmupEpochs=1")
TINY_STEPS_PER_EPOCH = 2  # tiny_train_config: 16 training segments in batches of 8


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a training checkpoint."""
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """The weights of checkpoint ``path`` are bit for bit ``expected``."""
    weights = checkpoint_weights(path)
    assert list(weights) == list(expected)
    for name, value in expected.items():
        assert torch.equal(weights[name], value), f"{name} differs from the uninterrupted run"


def torchrun(script: Path, *args: str, processes: int, cwd: Path, timeout: float = 600):
    """``torchrun --standalone --nproc_per_node processes script args`` on the CPU (one thread
    per process); the completed process, its output captured."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(processes), str(script), *args]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def write_tiny_checkpoint(path: Path, *, timesteps: int, model: list[str] | None = None) -> Path:
    """A checkpoint in the trainer's format of a tiny model (``model``: its keys, default
    :data:`TINY_MODEL`) with ``timesteps`` diffusion steps and random (not zero-initialised)
    weights."""
    from genie.config import load_config
    from genie.training.module import GenieModule

    keys = (TINY_MODEL if model is None else model) + [f"numTimesteps={timesteps}"]
    module = GenieModule(load_config(None, keys))
    randomize_(module.model, scale=0.1, seed=0)
    torch.save({"hyper_parameters": {"config": dict(module.hparams["config"])},
                "state_dict": module.state_dict()}, path)  # fmt: skip
    return path


def shared_pdb_dir() -> Path:
    """The real structures of ../shared/data/pdb, or skip the test when they are absent."""
    path = SHARED_DATA / "pdb"
    if not path.is_dir():
        pytest.skip("../shared/data/pdb is not present")
    return path


def helix_trace(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """An ideal α-helix Cα trace ``[n, 3]`` (Å; 3.8 Å steps, 100° per residue, 1.5 Å rise),
    slightly perturbed so no two traces are identical."""
    i = torch.arange(n, dtype=torch.float64)
    angle = i * math.radians(100.0)
    x = torch.stack([2.3 * torch.cos(angle), 2.3 * torch.sin(angle), 1.5 * i], dim=-1)
    x = x + 0.1 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return (x - x.mean(0)).float()


def random_rotation(generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """A uniformly random proper rotation ``[3, 3]``."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def randomize_(module: torch.nn.Module, *, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with random values, so zero-initialised final layers (which
    make fresh outputs trivially zero) cannot hide a bug."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


class _AllocationLimit(TorchDispatchMode):
    """Raise on any operator whose output tensor has ``numel`` elements or more, or (with
    ``square=n``) two or more axes of size n: a residue-by-residue tensor at any channel count."""

    def __init__(self, numel: int, square: int | None = None) -> None:
        super().__init__()
        self.numel, self.square = numel, square
        self.largest = 0  # elements of the largest output seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
                if tensor.numel() >= self.numel:
                    raise AssertionError(
                        f"{func} produced a tensor of shape {tuple(tensor.shape)} "
                        f"({tensor.numel()} elements >= {self.numel})"
                    )
                if self.square and list(tensor.shape).count(self.square) >= 2:
                    raise AssertionError(
                        f"{func} produced a tensor of shape {tuple(tensor.shape)} "
                        f"(two residue axes of {self.square})"
                    )
        return out


@contextlib.contextmanager
def forbid_allocations_at_least(
    numel: int, *, square: int | None = None
) -> Iterator[_AllocationLimit]:
    """Fail (``AssertionError``) if an operator inside the block, forward or backward, returns a
    tensor of ``numel`` elements or more (or, with ``square=n``, one with two axes of size n).
    Yields the mode; its ``largest`` is the largest output seen (elements), for a positive check
    that the block did run something."""
    with _AllocationLimit(numel, square) as mode:
        yield mode


# Tiny dimensions for the sparse stage configs (train_stage3v2/4.config) in CPU tests.
SPARSE_TINY = [
    "singleFeatureDimension=16", "pairFeatureDimension=8", "kNeighbors=6", "pairFactorDim=6",
    "numPairTransformLayers=2", "numTriangleLayers=2", "triangularMultiplicativeHiddenDimension=6",
    "triangularAttentionHiddenDimension=4", "triangularAttentionNumHeads=2",
    "structureEncoderDepth=2", "structureEncoderHeads=2", "ipaHiddenDimension=4",
    "ipaNumQkPoints=2", "ipaNumVPoints=3", "positionalEmbeddingDimension=8",
    "timestepEmbeddingDimension=8", "ipaDropout=0", "structureTransitionDropout=0",
    "triangularDropout=0", "spatialBiasRange=4", "sparseChunkSize=5", "knnChunkSize=7",
]  # fmt: skip


def denoiser_batch(n: int = 12, b: int = 2, seed: int = 0, *, pad_last: int = 0):
    """``x [b, n, 3]`` float64 helices (Å), ``t [b]`` in 1..999 and ``mask [b, n]``; the last
    ``pad_last`` residues of the last chain are padding."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.stack([helix_trace(n, generator=gen) for _ in range(b)]).double() * 1.5
    t = torch.randint(1, 1000, (b,), generator=gen)
    mask = torch.ones(b, n, dtype=torch.float64)
    if pad_last:
        mask[-1, n - pad_last :] = 0
    return x, t, mask


def assert_rotates_with_input(model, x, t, mask, *, seed: int = 5) -> torch.Tensor:
    """SE(3) equivariance of a denoiser: ε̂ of the rotated, shifted input is ε̂ rotated (the
    shift is ignored). Returns ε̂ of ``x``, checked not to be trivially zero."""
    from torch.testing import assert_close

    gen = torch.Generator().manual_seed(seed)
    q = random_rotation(gen, x.dtype)
    shift = torch.randn(3, generator=gen, dtype=x.dtype) * 20
    with torch.no_grad():
        eps = model(x, t, mask)
        moved = model(x @ q.T + shift, t, mask)
    assert eps.abs().max() > 1e-3  # not trivially zero
    assert_close(moved, eps @ q.T)
    return eps


class GraphFreeDenoiser(torch.nn.Module):
    """A test denoiser without a k-NN graph (a :class:`~genie.sampling.reverse.Denoiser`):
    subclasses define ``denoise(x, t, mask)``; :func:`as_denoiser` wraps a function."""

    def build_graph(self, coords, mask):
        return None

    def forward(self, x, t, mask, *, graph=None):
        assert graph is None, "a graph-free denoiser must get no graph"
        return self.denoise(x, t, mask)


def as_denoiser(fn) -> GraphFreeDenoiser:
    """``fn(x, t, mask) -> ε̂`` as a graph-free denoiser."""
    model = GraphFreeDenoiser()
    model.denoise = fn
    return model


class PointOracle(GraphFreeDenoiser):
    """ε̂ = (x_t − √ᾱ_t x0) / √(1 − ᾱ_t): the exact noise for data concentrated at x0."""

    def __init__(self, schedule, targets: dict[int, torch.Tensor]):
        """``schedule``: a DiffusionSchedule; ``targets``: chain length -> x0 ``[n, 3]``."""
        super().__init__()
        self.schedule, self.targets = schedule, targets

    def denoise(self, x, t, mask):
        x0 = torch.zeros_like(x)
        for i, n in enumerate(mask.sum(-1).long().tolist()):
            x0[i, :n] = self.targets[n]
        ab = self.schedule.alpha_bar[t][:, None, None]
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt() * mask[..., None]
