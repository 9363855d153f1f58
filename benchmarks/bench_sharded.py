"""One chain sharded by residue over every process of a torchrun launch: a training step's time,
peak memory per process and share of time in communication, or a sampled backbone's time per
step (the body of ``benchmarks/multi_gpu.py``'s sequence-parallel parts).

    torchrun --standalone --nproc_per_node P benchmarks/bench_sharded.py train --length 65536
    torchrun --standalone --nproc_per_node P benchmarks/bench_sharded.py sample --length 16384 \
        --steps 100 --save coords.pt
    python benchmarks/bench_sharded.py train --length 2048 --device cpu     (one process)

**train**: the config's denoiser (default ``train_stage5.config``, stage 3 V2's recipe) on
:class:`genie.distributed.SequenceShards` of the whole launch, one step of the training loss
(``GenieModule.compute_loss``: the noise loss and, with ``useMHCLoss``, the distance loss;
forward, backward, AdamW; the config's autocast) on a synthetic Cα trace of ``--length``
residues (``benchmarks/bench_data.py``), timed ``--repeat`` times after ``--warmup`` steps by
``bench_measure.time_steps`` (device synchronised; each step ends with a barrier, so it is the
slowest process's time).
Peak memory is ``torch.cuda.max_memory_allocated`` of each process over the timed steps.
Communication (unless ``--no-profile``): one more step under ``torch.profiler``: the summed device
time of the NCCL kernels (CUDA), or the summed CPU time of the ``c10d`` collectives and their
waits (gloo on the CPU; minutes to parse), over that step's wall time (a share of the step;
kernels that wait for a slower peer count as communication).

**sample**: :func:`genie.sampling.sharded.sample_sharded` of one chain of ``--length`` residues
(DDIM with ``--steps`` model calls, η = 1, so fresh noise enters every step; seed ``--seed``)
after a warm-up sample of two model calls; the time per step is the whole loop over
``--steps``. Rank 0 saves the backbone (``[n, 3]`` float32, Å) to ``--save`` for the caller to
compare with an unsharded run.

Rank 0 prints one line ``RESULT {json}``. Out of memory is a result (``"status": "OOM"``).
Everything runs eagerly (the sharded model is not compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_data import make_batch  # noqa: E402
from benchmarks.bench_measure import is_oom, time_steps  # noqa: E402
from genie.config import load_config  # noqa: E402
from genie.distributed import SequenceShards, check_shardable  # noqa: E402
from genie.distributed.mesh import end_process_group, launched_mesh  # noqa: E402
from genie.model.build import build_denoiser, build_parametrisation, build_schedule  # noqa: E402
from genie.model.layout import using_layout  # noqa: E402
from genie.training.module import GenieModule  # noqa: E402
from genie.training.precision import autocast_dtype  # noqa: E402

# CPU events of the collectives under gloo (their issue and their wait)
_CPU_COLLECTIVE_MARKS = ("c10d", "gloo", "all_gather", "reduce_scatter", "wait_tensor")


def _on_every_process(step):
    """``step`` then a barrier: a timed step ends when the slowest process has finished it."""

    def run() -> None:
        step()
        dist.barrier()

    return run


def _peaks(peak: float | None) -> list[float | None]:
    """Every process's peak memory (GiB; None off CUDA), in rank order."""
    peaks = [None] * dist.get_world_size()
    dist.all_gather_object(peaks, peak)
    return peaks


def _communication_s(prof: torch.profiler.profile, device: torch.device) -> float:
    """Seconds of communication in a profiled step (module docstring)."""
    events = prof.key_averages()
    if device.type == "cuda":
        total_us = sum(e.device_time_total for e in events if "nccl" in e.key.lower())
    else:
        total_us = sum(e.self_cpu_time_total for e in events
                       if any(mark in e.key.lower() for mark in _CPU_COLLECTIVE_MARKS))  # fmt: skip
    return total_us / 1e6


def train(args, cfg, module: GenieModule, device) -> dict:
    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.learningRate)
    batch, _ = make_batch(args.length, 1, args.seed)
    batch = {k: v.to(device) for k, v in batch.items()}
    generator = torch.Generator(device=device)

    def step() -> None:  # the training step's loss (noise and distance terms), its backward
        optimizer.zero_grad(set_to_none=True)
        generator.manual_seed(args.seed)  # t and ε: the same draws on every process
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module.compute_loss(batch, generator=generator)
        loss.backward()
        optimizer.step()

    times, peak = time_steps(_on_every_process(step), device, args.warmup, args.repeat)
    row = {"median_step_s": statistics.median(times), "step_times_s": times,
           "peak_mem_gib_per_process": _peaks(peak)}  # fmt: skip
    if args.profile:
        # CUDA: kernels only (few events); CPU: every operator (slow to parse: minutes)
        activity = torch.profiler.ProfilerActivity
        with torch.profiler.profile(
            activities=[activity.CUDA if device.type == "cuda" else activity.CPU]
        ) as prof:
            (profiled_s,), _ = time_steps(_on_every_process(step), device, 0, 1)
        comm_s = _communication_s(prof, device)
        row.update(communication_s=comm_s, profiled_step_s=profiled_s,
                   communication_share=comm_s / profiled_s)  # fmt: skip
    return row


def sample(args, cfg, model, group, device) -> dict:
    from genie.sampling.ddim import DDIMSampler
    from genie.sampling.sharded import sample_sharded

    schedule = build_schedule(cfg).to(device)
    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)
    stride = max(1, -(-cfg.numTimesteps // args.steps))  # ceil: at most --steps calls
    sampler = DDIMSampler(schedule=schedule, stride=stride, eta=1.0, temperature=0.6)
    calls = len(sampler.timesteps())
    options = dict(schedule=schedule, parametrisation=build_parametrisation(cfg), sampler=sampler,
                   lengths=[args.length], seeds=[args.seed], device=device)  # fmt: skip
    warm = DDIMSampler(schedule=schedule, stride=cfg.numTimesteps // 2, eta=1.0, temperature=0.6)
    results = []

    def run(which) -> None:
        results.append(sample_sharded(model, group=group, **{**options, "sampler": which}))

    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        run(warm)  # kernels, allocator
        (elapsed,), peak = time_steps(_on_every_process(lambda: run(sampler)), device, 0, 1)
    if dist.get_rank() == 0 and args.save:
        torch.save(results[-1].coords[0], args.save)
    return {"model_calls": calls, "total_s": elapsed, "s_per_step": elapsed / calls,
            "peak_mem_gib_per_process": _peaks(peak)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("train", "sample"))
    parser.add_argument("--config", default="configs/train_stage5.config")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")  # fmt: skip
    parser.add_argument("--length", type=int, required=True, help="residues of the chain")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--repeat", type=int, default=3, help="timed training steps")
    parser.add_argument("--steps", type=int, default=100, help="model calls of a sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--save", type=Path, help="sample: rank 0 saves the backbone here")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="train: skip the profiled step (no communication share)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available (use --device cpu)")
    device = (torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
              if args.device == "cuda" else torch.device("cpu"))  # fmt: skip
    mesh = launched_mesh(sequence_shards=int(os.environ.get("WORLD_SIZE", 1)), device=device)
    group = mesh["sequence"]
    cfg = load_config(args.config, ["useProgressiveTraining=False", "useSequenceParallelism=False",
                                    "numSequenceShards=1", *args.overrides,
                                    "compileModel=off"])  # fmt: skip
    torch.manual_seed(0)  # the same weights on every process
    row = {"mode": args.mode, "length": args.length, "processes": dist.get_world_size(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "backend": dist.get_backend(), "config": args.config, "overrides": args.overrides,
           "torch": torch.__version__, "status": "ok"}  # fmt: skip
    try:
        if args.mode == "train":
            module = GenieModule(config=cfg).to(device).train()
            check_shardable(module.model)
            with using_layout(module, SequenceShards(group)):
                row.update(train(args, cfg, module, device))
        else:
            model = build_denoiser(cfg, announce=False).to(device).eval()
            row.update(sample(args, cfg, model, group, device))
    except Exception as error:
        if not is_oom(error):
            raise
        row["status"] = "OOM"
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(row), flush=True)
    end_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
