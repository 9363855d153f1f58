"""Optimiser steps per second and peak memory of Lightning training with a config's own strategy
(DDP, FSDP or one device), started by torchrun, by Lightning (a plain launch with ``devices``) or
as one process.

Usage::

    python benchmarks/bench_distributed.py --config configs/train_stage5.config --length 4096 \
        [--steps 30] [--warmup 5] [--set key=value ...] [--out results.json]
    torchrun --nproc_per_node 8 benchmarks/bench_distributed.py --config ...

Unlike ``bench_step.py`` (one step of the bare module), this runs ``genie.training.run.train``:
the data module, the sampler's share-out to ranks, the strategy's communication, accumulation and
the optimiser. Every item is a crop (or join, ``concatenateChains True``) of exactly ``--length``
residues of the config's data (progressive training, validation, checkpoints and pictures off).
After ``--warmup`` optimiser steps, each of ``--steps`` steps is timed from one optimiser step to
the next (the device synchronised). Rank 0 prints one JSON row (and writes it to ``--out``):
``median_step_s``, ``samples_per_s`` (chains of a step / median, all ranks together),
``peak_mem_gib`` (``torch.cuda.max_memory_allocated`` over the timed steps, the largest of the
ranks; null on CPU), the layout and the device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.config import GenieConfig  # noqa: E402
from genie.config.cli import add_config_arguments, load_with_defaults  # noqa: E402
from genie.training.distributed import torchrun_layout  # noqa: E402
from genie.training.run import train  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


class StepTimer(pl.Callback):
    """Wall time between optimiser steps (device synchronised), and the peak memory after the
    warm-up steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self._last: float | None = None

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:  # after each step
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if trainer.global_step == self.warmup and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        if self._last is not None and trainer.global_step > self.warmup:
            self.times.append(now - self._last)
        self._last = now


def measure(cfg: GenieConfig, *, steps: int, warmup: int) -> dict:
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as folder:
        cfg = _benchmark_config(cfg, folder)
        trainer, _ = train(cfg, max_steps=warmup + steps + 1, limit_val_batches=0,
                           num_sanity_val_steps=0, enable_progress_bar=False,
                           enable_model_summary=False, callbacks=[timer])  # fmt: skip
    peak = torch.tensor(0.0)
    if torch.cuda.is_available():
        peak = torch.tensor(torch.cuda.max_memory_allocated() / 2**30, device="cuda")
    peak = float(trainer.strategy.reduce(peak, reduce_op="max")) if trainer.world_size > 1 else peak
    median = statistics.median(timer.times)
    chains = trainer.accumulate_grad_batches * cfg.batchSize * trainer.world_size
    return {
        "config": cfg.name,
        "length": cfg.maximumNumResidues,
        "world_size": trainer.world_size,
        "strategy": cfg.distributedStrategy if cfg.useDistributed else "single device",
        "backend": cfg.distributedBackend if cfg.useDistributed else None,
        "batch_size": cfg.batchSize,
        "accumulation": trainer.accumulate_grad_batches,
        "chains_per_step": chains,
        "median_step_s": median,
        "step_times_s": timer.times,
        "samples_per_s": chains / median,
        "peak_mem_gib": float(peak) if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


def _benchmark_config(cfg: GenieConfig, folder: str) -> GenieConfig:
    import dataclasses

    return dataclasses.replace(
        cfg, logDirectory=folder, numEpochs=1_000_000, maxTrainingMinutes=None
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(parser, what="training")
    parser.add_argument("--length", type=int, required=True, help="residues of every chain")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimiser steps first")
    parser.add_argument("--out", default=None, help="write the row to this JSON file (rank 0)")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.out:
            ensure_writable_file(args.out, what="--out")
        overrides = [*args.overrides, f"maximumNumResidues={args.length}", "concatenateChains=True",
                     "useProgressiveTraining=False", "logSamplesEveryEpochs=0"]  # fmt: skip
        layout = torchrun_layout()
        if layout is not None:
            overrides += [f"devices={layout[0]}", f"numNodes={layout[1]}"]
        cfg, _ = load_with_defaults(GenieConfig, args.config, overrides)
        row = measure(cfg, steps=args.steps, warmup=args.warmup)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({k: v for k, v in row.items() if k != "step_times_s"}))
            if args.out:
                Path(args.out).write_text(json.dumps(row, indent=1) + "\n")

    return run_command(body, prog="bench_distributed.py")


if __name__ == "__main__":
    sys.exit(main())
