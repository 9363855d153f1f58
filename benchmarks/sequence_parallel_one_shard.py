"""The cost of the sequence-parallel code path with one shard, against the plain model (one GPU).

    python -m benchmarks.sequence_parallel_one_shard [--config C] [--length L] [--repeat R]

Builds the config's model (default the stage 3 V2 recipe), then times, interleaved, the plain
model and the same model on :class:`genie.distributed.SequenceShards` of a one-process group (the
row-restricted k-NN search, the layout's calls, the objective's padding and shares): one training
step's forward and backward of :func:`genie.training.objective.denoising_losses` under the
config's autocast, and one no-grad forward. Prints one JSON line: the median seconds of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from genie.config import load_config
from genie.distributed import SequenceShards, sequence_parallel
from genie.model.build import build_denoiser, build_schedule
from genie.model.layout import WHOLE_CHAIN
from genie.training.objective import denoising_losses
from genie.training.precision import autocast_dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/train_stage3v2.config")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda", torch.cuda.current_device())  # NCCL binds a device index
    cfg = load_config(args.config, ["useProgressiveTraining=False"])
    torch.manual_seed(0)
    model = build_denoiser(cfg, announce=False).to(device)
    schedule = build_schedule(cfg).to(device)
    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)
    n = args.length
    x = torch.cumsum(torch.randn(1, n, 3, device=device) * 2.2, dim=1)  # a random walk, Å
    batch = {"coords": x - x.mean(1, keepdim=True), "mask": torch.ones(1, n, device=device)}
    t = torch.full((1,), 500, device=device)

    backend = "nccl"
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group(backend, init_method=f"file://{Path(folder) / 'pg'}", rank=0,
                                world_size=1, device_id=device)  # fmt: skip
        layouts = {"plain": WHOLE_CHAIN, "one_shard": SequenceShards(dist.group.WORLD)}

        def train_step(layout) -> None:
            model.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                terms = denoising_losses(model, schedule, batch, layout=layout,
                                         loss_type=cfg.lossType, distance=None)  # fmt: skip
            terms.objective.backward()

        @torch.no_grad()
        def forward(layout) -> None:
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                model(batch["coords"], t, batch["mask"])

        times: dict[str, list[float]] = {}
        for mode, step in (("train", train_step), ("sample", forward)):
            for i in range(args.repeat + 3):
                for name, layout in layouts.items():
                    with sequence_parallel(model, layout):
                        torch.cuda.synchronize()
                        start = time.perf_counter()
                        step(layout)
                        torch.cuda.synchronize()
                    if i >= 3:  # warm-up
                        times.setdefault(f"{mode}/{name}", []).append(time.perf_counter() - start)
        dist.destroy_process_group()
    result = {key: round(statistics.median(v), 5) for key, v in times.items()}
    result.update(config=args.config, length=n, repeat=args.repeat,
                  device=torch.cuda.get_device_name(), torch=torch.__version__)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
