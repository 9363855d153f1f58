"""One (length, mode) measurement of the step benchmark: the body of a child of ``bench_step.py``.

The child builds the model with ``GenieModule`` from the config on the device, a batch of
``batch_size`` chains of exactly L residues (``bench_data.make_batch``), and measures, per mode:

- ``train``: one full optimisation step: ``zero_grad(set_to_none=True)``, ``compute_loss`` under
  the config's autocast (``genie.training.precision.autocast_dtype``: bf16, or fp16 with a
  ``GradScaler``), backward, gradient-norm clipping when ``gradientClipVal > 0``, a step of the
  optimiser that ``GenieModule.configure_optimizers`` returns (its scheduler does not step).
- ``sample``: one denoiser forward pass ``module.model(coords, t, mask)`` under ``no_grad`` (and the
  same autocast) at a random timestep.

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (reset after warm-up), in
GiB (2**30 bytes); time is the median wall-clock of ``repeat`` steps after ``warmup`` steps with a
device synchronisation around each; samples/s = batch size / median. On CPU memory is ``null``.
The child prints its row as one ``BENCH_RESULT {json}`` line; running out of memory is a result
(``OOM``), any other failure an ``error: ...`` row.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.bench_data import make_batch

RESULT_PREFIX = "BENCH_RESULT "
NUM_TIMESTEPS = 1000  # Genie's T, used when the config has no numTimesteps
GIB = 2**30
MODES = ("train", "sample", "reverse")
REVERSE_WARMUP_STRIDE = 50  # warm-up of the reverse mode: a DDIM pass of T / 50 model calls


def is_oom(error: BaseException) -> bool:
    """Whether an exception means the device ran out of memory."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text.lower() or "ALLOC_FAILED" in text
    )


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step: Callable[[], Any], device: torch.device, warmup: int, repeat: int
) -> tuple[list[float], float | None]:
    """Run ``step`` ``warmup`` times, then time it ``repeat`` times.

    Returns:
        The wall-clock seconds of each timed step and the peak allocated memory over the timed
        steps in GiB (``None`` off CUDA).
    """
    for _ in range(warmup):
        step()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeat):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return times, peak


def _optimizer_from(configured: Any) -> torch.optim.Optimizer:
    """Pick the optimiser out of what ``configure_optimizers`` returned."""
    if isinstance(configured, dict):
        return configured["optimizer"]
    if isinstance(configured, (list, tuple)):
        return _optimizer_from(configured[0])
    return configured


def _attach_trainer(module: Any, max_steps: int) -> None:
    """Give a LightningModule a bare Trainer, so that ``configure_optimizers`` may read it.

    Lightning modules commonly size their schedules with the Trainer's
    ``estimated_stepping_batches``; with ``max_epochs=-1`` that is ``max_steps``. Nothing else of
    the Trainer is used: the harness runs the steps itself. A module that is not a
    LightningModule is left alone.
    """
    import pytorch_lightning as pl  # imported already, by genie.training.precision

    if not isinstance(module, pl.LightningModule):
        return
    module.trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _train_step(module: Any, batch: dict, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one full optimisation step, and a holder of its last loss."""
    optimizer = _optimizer_from(module.configure_optimizers())
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    clip = float(module.config.gradientClipVal)
    last_loss: list[torch.Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module.compute_loss(batch)
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
        last_loss[:] = [loss.detach()]

    return step, last_loss


def _sampling_model(module: Any, device: torch.device) -> Any:
    """The model as the sampler runs it: compiled per ``compileModel`` with the sampler's
    default (``auto`` = reduce-overhead, CUDA graphs, on CUDA; off on the CPU)."""
    choice = getattr(module.config, "compileModel", "off")  # a config without the key: eager
    if choice == "off":
        return module.model
    from genie.model.compiled import maybe_compile
    from genie.utils.runtime import resolve_compile_mode

    return maybe_compile(
        module.model, mode=resolve_compile_mode(choice, device, auto="reduce-overhead")
    )


def _sample_step(module: Any, batch: dict, dtype: torch.dtype | None, device: torch.device):
    """Return a closure doing one denoiser forward pass at a random timestep t in 1..T."""
    b = batch["coords"].shape[0]
    num_timesteps = getattr(module.config, "numTimesteps", NUM_TIMESTEPS)
    timesteps = torch.randint(1, num_timesteps + 1, (b,), device=device)  # [b]
    model = _sampling_model(module, device)

    def step() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(batch["coords"], timesteps, batch["mask"])

    return step


def _reverse_run(module: Any, length: int, batch_size: int, dtype: torch.dtype | None,
                 device: torch.device, seed: int, sampler_spec: str):  # fmt: skip
    """Return a closure running a whole reverse process of ``batch_size`` chains of ``length``
    residues (``sampler_spec``: ``ddpm`` = T model calls at γ = 0.6, or ``ddim:S`` = DDIM with
    stride S, η = 0), and a warm-up closure (a DDIM pass with stride T / 50)."""
    from genie.sampling.chains import ChainBatch
    from genie.sampling.ddim import DDIMSampler
    from genie.sampling.ddpm import DDPMSampler
    from genie.sampling.reverse import reverse_process

    model = _sampling_model(module, device)
    schedule = module.schedule
    if sampler_spec == "ddpm":
        sampler = DDPMSampler(schedule=schedule, temperature=0.6)
    else:
        stride = int(sampler_spec.split(":", 1)[1])
        sampler = DDIMSampler(schedule=schedule, stride=stride, eta=0.0, temperature=0.6)
    warm = DDIMSampler(schedule=schedule, stride=REVERSE_WARMUP_STRIDE, eta=0.0, temperature=0.6)
    seeds = [seed + i for i in range(batch_size)]

    def run(which) -> None:
        chains = ChainBatch(lengths=[length] * batch_size, seeds=seeds, device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            reverse_process(model, which, chains)

    return (lambda: run(sampler)), (lambda: run(warm)), len(sampler.timesteps())


def _jsonable(value: Any) -> Any:
    """Turn a resolved-config value into something ``json.dumps`` accepts."""
    return json.loads(json.dumps(value, default=str))


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (length, mode) pair; the body of a child process.

    Args:
        spec: ``config``, ``overrides``, ``length``, ``mode``, ``batch_size``, ``warmup``,
            ``repeat``, ``device``, ``data``, ``seed``.

    Returns:
        The result row, plus the device name, resolved config and parameter count.
    """
    from genie.config import load_config
    from genie.training.module import GenieModule
    from genie.training.precision import autocast_dtype
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
    torch.manual_seed(spec["seed"])

    overrides = list(spec["overrides"])
    cfg = load_config(spec["config"], overrides)
    row["resolved_config"] = _jsonable(dataclasses.asdict(cfg))
    max_res = getattr(cfg, "maximumNumResidues", None)
    if isinstance(max_res, int) and max_res < length:
        # The benchmark asks for longer chains than the config crops to; raise the limit for this
        # measurement only and say so in the row.
        row["overrides_added"] = [f"maximumNumResidues={length}"]
        kept = [o for o in overrides if o.split("=", 1)[0].strip() != "maximumNumResidues"]
        cfg = load_config(spec["config"], [*kept, *row["overrides_added"]])

    apply_runtime_settings(matmul_precision=cfg.matmulPrecision)
    module = GenieModule(config=cfg).to(device)
    row["parameters"] = sum(p.numel() for p in module.parameters())
    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)
    row["autocast"] = None if dtype is None else str(dtype).removeprefix("torch.")

    batch, joins = make_batch(length, batch_size, spec["seed"], spec["data"])
    batch = {k: v.to(device) for k, v in batch.items()}
    row["joins"] = joins

    try:
        if mode == "train":
            module.train()
            _attach_trainer(module, spec["warmup"] + spec["repeat"])
            step, last_loss = _train_step(module, batch, dtype, device)
        elif mode == "sample":
            module.eval()
            step, last_loss = _sample_step(module, batch, dtype, device), []
        else:
            module.eval()
            step, warm, calls = _reverse_run(module, length, batch_size, dtype, device,
                                             spec["seed"], spec.get("sampler", "ddpm"))  # fmt: skip
            row["model_calls"], last_loss = calls, []
            time_steps(warm, device, 1, 0)  # compiles and records the CUDA graphs
        times, peak = time_steps(step, device, spec["warmup"], spec["repeat"])
    except Exception as error:
        if not is_oom(error):
            raise
        row["status"] = "OOM"
        return row
    median = statistics.median(times)
    row.update(
        peak_mem_gib=peak,
        median_s=median,
        samples_per_s=batch_size / median,
        times_s=times,
    )
    if device.type == "cuda":
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    if last_loss:
        row["loss"] = float(last_loss[0].float())
    return row


def child_main(
    spec_json: str, measure_fn: Callable[[dict[str, Any]], dict[str, Any]] = measure
) -> int:
    """Run one measurement (``measure_fn``: ours by default) and print its row as one
    ``BENCH_RESULT`` line; a failure is a row too (``OOM`` or ``error: ...``)."""
    spec = json.loads(spec_json)
    try:
        row = measure_fn(spec)
    except Exception as error:
        traceback.print_exc()
        message = " ".join(f"{type(error).__name__}: {error}".split())
        status = "OOM" if is_oom(error) else f"error: {message[:300]}"
        row = {"length": spec["length"], "mode": spec["mode"], "status": status}
    print(RESULT_PREFIX + json.dumps(row), flush=True)
    return 0
