"""Where the time of one training step goes: the top CUDA kernels by total time.

    python benchmarks/profile_step.py --config configs/train_baseline.config --length 512 \
        [--set key=value ...] [--top 25]

Builds the model at one length (batch 1, synthetic trace), runs warm-up steps, then profiles
one full training step (forward, backward, optimiser; under the config's autocast) with
``torch.profiler`` and prints the operator table (sorted by ``--sort``), the total CUDA time
and the number of kernel launches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_data import synthetic_trace  # noqa: E402
from genie.config import load_config  # noqa: E402
from genie.config.cli import add_config_arguments  # noqa: E402
from genie.training.module import GenieModule  # noqa: E402
from genie.training.precision import autocast_dtype  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.runtime import apply_runtime_settings, require_cuda  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser, what="training")
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--sort", default="cuda_time_total", help="profiler column, e.g. self_cpu_time_total"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config, [*args.overrides, f"maximumNumResidues={args.length}"])
    require_cuda("profile_step.py (CUDA kernel times)")
    apply_runtime_settings(matmul_precision=cfg.matmulPrecision)
    module = GenieModule(cfg).cuda().train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)
    coords = torch.as_tensor(synthetic_trace(args.length, seed=0), dtype=torch.float32)
    batch = {"coords": coords[None].cuda(), "mask": torch.ones(1, args.length, device="cuda")}

    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = module.compute_loss(batch)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    print(events.table(sort_by=args.sort, row_limit=args.top, max_name_column_width=60))
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_ms = sum(e.device_time for e in kernels) / 1e3
    print(f"L={args.length} {cfg.matmulPrecision}: {len(kernels)} kernels, {total_ms:.1f} ms GPU")


if __name__ == "__main__":
    sys.exit(run_command(main))
