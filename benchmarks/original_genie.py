"""The original Genie (``aqlaboratory/genie``, Lin & AlQuraishi 2023, arXiv:2301.12485), loaded
from its export, and one (length, mode) measurement of it: the body of a child of
``bench_original_genie.py``.

``scripts/get_original_genie.sh`` exports their code into ``.original_genie/`` (git-ignored) as the
package ``genie_original`` (their package is also called ``genie``; only its absolute imports are
renamed), with their published SCOPe configurations in ``.original_genie/configs/`` and the
exported commit in ``.original_genie/source.json``. Their ``Genie`` LightningModule is built from
one of those configurations with their own ``Config`` parser (``scope_l_256``: c_s = c_p = 128,
5 triangle-multiplicative pair layers, 5 IPA layers, cosine schedule, T = 1000, Adam at 1e-4;
4,087,574 parameters), moved to the device, and measured per mode:

- ``train``: one full optimisation step as their Lightning loop runs it (automatic optimisation,
  no gradient clipping): ``zero_grad(set_to_none=True)``, their ``training_step`` (Frenet frames
  of the centred Cα trace, a timestep drawn from 0..T-1, the noised trace, the denoiser, their
  loss: the mean over residues of the per-residue L2 norm of the noise error), backward, a step
  of the Adam optimiser that their ``configure_optimizers`` returns.
- ``sample``: one denoiser forward ``module.model(frames, t, mask)`` in eval mode under
  ``no_grad`` at a random timestep, on the frames of the noised trace (built before the timing).
- ``reverse``: steps of their own sampling loop (``Diffusion.p_sample_loop``: the timestep tensor
  built on the host, then their ``p``: the denoiser, the posterior mean, noise of scale
  ``noise_scale`` and Frenet frames of the new trace), from their ``sample_frames`` at t = T-1
  downwards. DISCREPANCY with ``sample``: as their ``sample.py`` runs it, the module stays in
  train mode (``load_from_checkpoint`` does not call ``eval()``, so dropout is on) and autograd
  records every step (their loop has no ``no_grad``). The row adds ``estimated_loop_s`` = median
  step x T, and with ``full_loop`` the wall time of one whole ``p_sample_loop`` call
  (``loop_s``); samples/s is then chains per second of whole samples.

The same timing as ours (``bench_measure.time_steps``): warm-up steps, then the median of timed
steps with a device synchronisation around each; peak memory is ``torch.cuda.max_memory_allocated``
over the timed steps, reset after warm-up. Inputs are the same chains as ours
(``bench_data.make_batch``); their loader yields N, Cα, C backbones and their ``transform`` reads
only the Cα (``coords[:, 1::3]``), so each Cα is given in all three atom slots.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_data import make_batch
from benchmarks.bench_measure import GIB, is_oom, time_steps
from benchmarks.bench_measure import child_main as measure_child
from genie.utils.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIRECTORY = REPO_ROOT / ".original_genie"
PACKAGE = "genie_original"
DEFAULT_CONFIG = "scope_l_256"  # their published SCOPe model (weights/scope_l_256/configuration)
MODES = ("train", "sample", "reverse")
NOISE_SCALE = 0.6  # their sample.py's default --noise_scale
AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16}


def export_info(directory: str | Path) -> dict[str, Any]:
    """What ``scripts/get_original_genie.sh`` exported into ``directory`` (its source.json).

    Raises:
        UserInputError: no export there.
    """
    directory = Path(directory)
    source = directory / "source.json"
    if not (directory / PACKAGE / "__init__.py").is_file() or not source.is_file():
        raise UserInputError(
            f"no export of the original Genie in {directory}: run scripts/get_original_genie.sh "
            "(benchmarks/README.md says how)"
        )
    return json.loads(source.read_text())


def config_path(directory: str | Path, name: str) -> Path:
    """Their configuration file ``name`` in the export.

    Raises:
        UserInputError: no such configuration (the message lists those there).
    """
    path = Path(directory) / "configs" / name
    if not path.is_file():
        there = sorted(p.name for p in (Path(directory) / "configs").glob("*"))
        raise UserInputError(f"no original Genie configuration {name!r} in {path.parent}: {there}")
    return path


def import_original(directory: str | Path) -> tuple[Any, Any]:
    """Import their ``Config`` and ``Genie`` classes from the export in ``directory``.

    Returns:
        (Config, Genie).

    Raises:
        UserInputError: no export there, or a ``genie_original`` already imported from elsewhere.
    """
    directory = Path(directory).resolve()
    export_info(directory)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    package = importlib.import_module(PACKAGE)
    if Path(package.__file__).resolve().parent != directory / PACKAGE:
        raise UserInputError(f"{PACKAGE} was imported from {package.__file__}, not {directory}")
    config = importlib.import_module(f"{PACKAGE}.config")
    genie = importlib.import_module(f"{PACKAGE}.diffusion.genie")
    return config.Config, genie.Genie


def build_module(directory: str | Path, config_name: str = DEFAULT_CONFIG) -> Any:
    """Their ``Genie`` LightningModule with the hyper-parameters of their configuration file
    (random initial weights, drawn as their ``Linear`` initialisers draw them)."""
    config_cls, genie_cls = import_original(directory)
    return genie_cls(config_cls(filename=str(config_path(directory, config_name))))


def _their_batch(length: int, batch_size: int, seed: int, data: str | None, device: torch.device):
    """Our benchmark chains in the form their ``transform`` takes.

    Returns:
        (coords [b, 3L, 3] float32 Å, each Cα in the N, Cα and C slots; mask [b, L] float32), and
        the number of artificial joins (``bench_data.make_batch``).
    """
    batch, joins = make_batch(length, batch_size, seed, data)
    coords = batch["coords"].repeat_interleave(3, dim=1)  # [b, 3L, 3]
    return (coords.to(device), batch["mask"].to(device)), joins


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, or nothing when it is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _train_step(module: Any, batch: tuple, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one full optimisation step, and a holder of its last loss."""
    optimizer = module.configure_optimizers()  # Adam(model.parameters(), lr)
    last_loss: list[torch.Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        last_loss[:] = [loss.detach()]

    return step, last_loss


def _sample_step(module: Any, batch: tuple, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one denoiser forward at a random timestep t in 0..T-1."""
    frames, mask = module.transform(batch)
    timesteps = module.sample_timesteps(mask.shape[0])  # [b]
    noisy, _ = module.q(frames, timesteps, mask)

    def step() -> None:
        with torch.no_grad(), _autocast(device, dtype):
            module.model(noisy, timesteps, mask)

    return step


def _reverse_step(module: Any, mask: torch.Tensor, dtype: torch.dtype | None, noise_scale: float):
    """Return a closure doing the next step of their reverse loop (t = T-1, T-2, ..., wrapping)."""
    num_timesteps = module.config.diffusion["n_timestep"]
    frames = [module.sample_frames(mask)]
    calls = [0]

    def step() -> None:
        i = num_timesteps - 1 - calls[0] % num_timesteps
        # The body of their p_sample_loop, verbatim but for the autocast.
        s = torch.Tensor([i] * mask.shape[0]).long().to(module.device)
        with _autocast(mask.device, dtype):
            frames[0] = module.p(frames[0], s, mask, noise_scale)
        calls[0] += 1

    return step


def _timed_once(function: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of one call, with a device synchronisation on each side."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _apply_determinism(deterministic: bool) -> None:
    """What their ``Trainer(deterministic=True)`` set: deterministic algorithms (and the cuBLAS
    workspace that they need)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (length, mode) pair of the original Genie; the body of a child process.

    Args:
        spec: ``directory``, ``config_name``, ``length``, ``mode``, ``batch_size``, ``warmup``,
            ``repeat``, ``device``, ``data``, ``seed``, ``matmul_precision``, ``autocast``
            (``none`` or ``bf16``), ``deterministic``, ``noise_scale``, ``full_loop``.

    Returns:
        The result row (the keys of ``bench_measure.measure``'s rows), plus the device name,
        their resolved configuration and the parameter count.
    """
    from genie.utils.runtime import apply_runtime_settings

    length, mode, batch_size = spec["length"], spec["mode"], spec["batch_size"]
    row: dict[str, Any] = {
        "length": length,
        "mode": mode,
        "status": "ok",
        "peak_mem_gib": None,
        "median_s": None,
        "samples_per_s": None,
        "times_s": [],
    }
    device = torch.device(spec["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    row["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    apply_runtime_settings(matmul_precision=spec["matmul_precision"])
    _apply_determinism(spec["deterministic"])
    torch.manual_seed(spec["seed"])

    module = build_module(spec["directory"], spec["config_name"]).to(device)
    config = module.config
    row["resolved_config"] = {
        part: getattr(config, part) for part in ("io", "diffusion", "model", "optimization")
    }
    row["parameters"] = sum(p.numel() for p in module.parameters())
    dtype = AUTOCAST_DTYPES[spec["autocast"]]
    row["autocast"] = None if dtype is None else str(dtype).removeprefix("torch.")
    batch, joins = _their_batch(length, batch_size, spec["seed"], spec["data"], device)
    row["joins"] = joins
    module.setup_schedule()  # what their training_step / p_sample_loop do on their first call
    module.setup = True

    last_loss: list[torch.Tensor] = []
    try:
        with warnings.catch_warnings():
            # Their training_step calls self.log, a no-op (with this warning) without a Trainer.
            warnings.filterwarnings("ignore", message=".*self.log.*")
            if mode == "train":
                module.train()
                step, last_loss = _train_step(module, batch, dtype, device)
            elif mode == "sample":
                module.eval()
                step = _sample_step(module, batch, dtype, device)
            else:
                module.train()
                row["noise_scale"] = spec["noise_scale"]
                step = _reverse_step(module, batch[1], dtype, spec["noise_scale"])
            times, peak = time_steps(step, device, spec["warmup"], spec["repeat"])
            median = statistics.median(times)
            if mode == "reverse":
                num_timesteps = config.diffusion["n_timestep"]
                row["estimated_loop_s"] = median * num_timesteps
                if spec["full_loop"]:
                    row["loop_s"] = _timed_once(
                        lambda: module.p_sample_loop(batch[1], spec["noise_scale"], verbose=False),
                        device,
                    )
    except Exception as error:
        if not is_oom(error):
            raise
        row["status"] = "OOM"
        return row
    per_sample = row.get("loop_s", row.get("estimated_loop_s", median))
    row.update(
        peak_mem_gib=peak,
        median_s=median,
        samples_per_s=batch_size / per_sample,
        times_s=times,
    )
    if device.type == "cuda":
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    if last_loss:
        row["loss"] = float(last_loss[0].float())
    return row


def child_main(spec_json: str) -> int:
    """Run one measurement of the original Genie and print its row (``bench_measure``'s child)."""
    return measure_child(spec_json, measure)
