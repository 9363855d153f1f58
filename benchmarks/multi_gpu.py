"""Stage 5 on several GPUs in one command: data-parallel scaling, one chain's training step sharded
over GPUs, and one chain sampled sharded over GPUs (docs/BENCHMARKS.md, "Stage 5 on several
GPUs").

    python benchmarks/multi_gpu.py --gpus 1,2,4 --out results/multi_gpu.json --plot results/mg.png
    python benchmarks/multi_gpu.py --gpus 1,2,4 --parts sharded --sharded-lengths 131072 --out ...
    python benchmarks/multi_gpu.py --device cpu --gpus 1,2,3 --scaling-lengths 128 \
        --sharded-lengths 256 --sample-lengths 128 --sample-steps 4 --set structureEncoderDepth=1 \
        --out /tmp/mg.json                                  (CPU processes with gloo: a dry run)

For every part, process count N (``--gpus``) and length, one ``torchrun --standalone
--nproc_per_node N`` launch (NVLink multicast off):

- **scaling**: ``benchmarks/bench_distributed.py`` with the config's DDP (``train_stage5.config``,
  no sequence parallelism), one chain per process and optimiser step (``effectiveBatchSize`` = N
  × ``batchSize``: no accumulation, the all-reduce every step); throughput (chains/s) and the
  efficiency throughput / (N × the one-process throughput). On CUDA also with PowerSGD
  (``gradientCompressionRatio``, ``--compression``); PowerSGD is a DDP hook on CUDA only.
- **sharded**: ``benchmarks/bench_sharded.py train``: one chain over the N processes; median step,
  peak memory per process, share of time in communication, speed-up over one process.
- **sampling**: ``benchmarks/bench_sharded.py sample``: one chain sampled over N processes
  (``--sample-steps`` DDIM calls, η = 1, seed 0): seconds per step, speed-up, and the backbone
  against the one-process backbone of the same seed (largest coordinate difference in Å,
  ``identical`` when bit for bit).

Rows are merged into ``--out`` after each launch (a re-run replaces the rows it repeats, keeps the
others), so parts and GPU counts can run in separate commands; a failed launch is a row with its
error, OOM a row with status OOM. The table of all rows is printed at the end, and ``--plot``
draws it. Exit status 1 if any launch of this run failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PARTS = ("scaling", "sharded", "sampling")
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}  # fmt: skip


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def row_key(row: dict[str, Any]) -> tuple:
    return (row["part"], row["processes"], row["length"], row.get("compression"))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows of ``new`` replacing those of the same key, new keys appended."""
    merged = {row_key(r): r for r in old}
    merged.update({row_key(r): r for r in new})
    return sorted(
        merged.values(),
        key=lambda r: (
            PARTS.index(r["part"]),
            r["length"],
            str(r.get("compression")),
            r["processes"],
        ),
    )


def derive(rows: list[dict]) -> list[dict]:
    """Fill in efficiency (scaling) and speed-up (sharded, sampling) against the one-process row
    of the same part, length and compression; rows without one get None."""

    def same(r: dict) -> tuple:
        return r["part"], r["length"], r.get("compression")

    ones = {same(r): r for r in rows if r["processes"] == 1 and r["status"] == "ok"}
    for row in rows:
        one = ones.get(same(row))
        row["efficiency"] = row["speedup"] = None
        if one is None or row["status"] != "ok":
            continue
        n = row["processes"]
        if row["part"] == "scaling":
            row["efficiency"] = row["samples_per_s"] / (n * one["samples_per_s"])
        elif row["part"] == "sharded":
            row["speedup"] = one["median_step_s"] / row["median_step_s"]
        else:
            row["speedup"] = one["s_per_step"] / row["s_per_step"]
    return rows


def compare_backbones(mine: Path, reference: Path) -> dict[str, Any]:
    """The sampled backbone against the one-process one of the same seed."""
    import torch

    a, b = torch.load(mine, weights_only=True), torch.load(reference, weights_only=True)
    if a.shape != b.shape:
        return {"identical": False, "max_abs_diff_A": None}
    return {"identical": bool(torch.equal(a, b)), "max_abs_diff_A": float((a - b).abs().max())}


def launch(n: int, script: str, args: list[str], timeout: float) -> tuple[int, str, str]:
    """``torchrun --standalone --nproc_per_node n script args``: (status, stdout, stderr)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n}", script, *args]  # fmt: skip
    env = {**os.environ, **NO_MULTICAST, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as error:
        return 124, error.stdout or "", f"killed after {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr


# lines of a failed launch's stderr that say why (torchrun's summary only names the signal)
_CAUSE_MARKS = ("Error", "error:", "terminate called", "what():", "Exception", "Aborted")


def _error_row(base: dict, status: int, stderr: str) -> dict:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    causes = [line for line in lines if any(mark in line for mark in _CAUSE_MARKS)][-8:]
    return {**base, "status": f"error: exit {status}", "stderr_causes": causes,
            "stderr_tail": lines[-8:]}  # fmt: skip


def run_scaling(args, n: int, length: int, compression: float | None, work: Path) -> dict:
    base = {"part": "scaling", "processes": n, "length": length, "compression": compression}
    out = work / f"scaling_{n}_{length}_{compression}.json"
    sets = [*args.overrides, f"effectiveBatchSize={n}", "batchSize=1",
            "useSequenceParallelism=False", "numSequenceShards=1"]  # fmt: skip
    if compression is not None:
        sets.append(f"gradientCompressionRatio={compression}")
    if args.device == "cpu":
        sets += ["accelerator=cpu", "distributedBackend=gloo"]
    cli = ["--config", args.config, "--length", str(length), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--out", str(out)]  # fmt: skip
    for item in sets:
        cli += ["--set", item]
    status, _, stderr = launch(n, "benchmarks/bench_distributed.py", cli, args.timeout)
    if status != 0 or not out.exists():
        return _error_row(base, status, stderr)
    result = json.loads(out.read_text())
    return {**base, **{k: v for k, v in result.items() if k != "length"}, "status": "ok"}


def run_sharded(args, part: str, n: int, length: int, work: Path) -> dict:
    base = {"part": part, "processes": n, "length": length, "compression": None}
    mode = "train" if part == "sharded" else "sample"
    cli = [mode, "--config", args.config, "--length", str(length), "--device", args.device,
           "--warmup", str(args.warmup), "--repeat", str(args.repeat),
           "--steps", str(args.sample_steps)]  # fmt: skip
    for item in args.overrides:
        cli += ["--set", item]
    if not args.profile:
        cli.append("--no-profile")
    saved = work / f"backbone_{length}_{n}.pt"
    if mode == "sample":
        cli += ["--save", str(saved)]
    status, stdout, stderr = launch(n, "benchmarks/bench_sharded.py", cli, args.timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if status != 0 or not lines:
        return _error_row(base, status, stderr)
    result = json.loads(lines[-1].removeprefix("RESULT "))
    row = {**base, **{k: v for k, v in result.items() if k not in ("length", "processes")}}
    reference = work / f"backbone_{length}_1.pt"
    if mode == "sample" and row["status"] == "ok" and n > 1 and reference.exists():
        row.update(compare_backbones(saved, reference))
    return row


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(rows: list[dict]) -> str:
    """Markdown table of every row."""
    lines = ["| part | GPUs | L | compression | step s (sampling: s/step) | chains/s | "
             "peak GiB per GPU | communication | efficiency / speed-up | sample vs 1 GPU | "
             "status |", "|" + "---|" * 11]  # fmt: skip
    for r in rows:
        step = r.get("median_step_s") if r["part"] != "sampling" else r.get("s_per_step")
        peaks = r.get("peak_mem_gib_per_process") or [r.get("peak_mem_gib")]
        peaks = [p for p in peaks if p is not None]
        gain = r.get("efficiency") if r["part"] == "scaling" else r.get("speedup")
        same = None
        if "identical" in r:
            same = "identical" if r["identical"] else f"max {_cell(r['max_abs_diff_A'])} Å"
        share = r.get("communication_share")
        lines.append("| " + " | ".join([
            r["part"], str(r["processes"]), f"{r['length']:,}", _cell(r.get("compression")),
            _cell(step), _cell(r.get("samples_per_s")),
            _cell(max(peaks)) if peaks else "—",
            "—" if share is None else f"{100 * share:.0f} %",
            "—" if gain is None else (f"{100 * gain:.0f} %" if r["part"] == "scaling"
                                      else f"{gain:.2f}×"),
            _cell(same), r["status"],
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Efficiency (scaling), step time (sharded) and seconds per sampling step against GPUs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (("scaling", "efficiency", "data-parallel efficiency"),
              ("sharded", "median_step_s", "sharded training step (s)"),
              ("sampling", "s_per_step", "sharded sampling (s per step)"))  # fmt: skip
    for ax, (part, key, title) in zip(axes, panels, strict=True):
        series: dict[tuple, list] = {}
        for r in rows:
            if r["part"] == part and r["status"] == "ok" and r.get(key) is not None:
                series.setdefault((r["length"], r.get("compression")), []).append(
                    (r["processes"], r[key])
                )
        for (length, compression), points in sorted(series.items(), key=str):
            points.sort()
            label = f"L = {length:,}" + ("" if compression is None else f", PowerSGD {compression}")
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("GPUs (processes)")
        ax.set_xticks(sorted({n for points in series.values() for n, _ in points}))
        if part == "scaling":
            ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
        else:
            ax.set_yscale("log")
        if series:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=_ints, default=[1, 2, 4], help="process counts, e.g. 1,2,4")
    parser.add_argument("--parts", default=",".join(PARTS), help="of scaling,sharded,sampling")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--config", default="configs/train_stage5.config")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every launch")  # fmt: skip
    parser.add_argument("--scaling-lengths", type=_ints, default=[1024, 4096])
    parser.add_argument(
        "--compression",
        type=float,
        default=8.0,
        help="gradientCompressionRatio of the PowerSGD rows (CUDA); 0: none",
    )
    parser.add_argument("--sharded-lengths", type=_ints, default=[65536, 131072])
    parser.add_argument("--sample-lengths", type=_ints, default=[16384, 65536])
    parser.add_argument("--sample-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10, help="scaling: timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeat", type=int, default=3, help="sharded: timed steps")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per launch")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="sharded: no profiled step, no communication share (fast on CPU)",
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON (merged)")
    parser.add_argument("--plot", type=Path, help="PNG of the rows")
    parser.add_argument("--work", type=Path, help="folder of the sampled backbones (kept)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or any(p not in PARTS for p in parts):
        parser.error(f"--parts takes a subset of {','.join(PARTS)}, got {args.parts!r}")
    gpus = sorted(set(args.gpus))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() < max(gpus):
            found = torch.cuda.device_count() if torch.cuda.is_available() else 0
            parser.error(f"--gpus {max(gpus)} needs that many CUDA devices, found {found} "
                         "(--device cpu runs CPU processes with gloo)")  # fmt: skip
    work = args.work or Path(tempfile.mkdtemp(prefix="multi_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    compressions = [None]
    if args.device == "cuda" and args.compression:
        compressions.append(args.compression)
    jobs = []
    for part in parts:
        lengths = {"scaling": args.scaling_lengths, "sharded": args.sharded_lengths,
                   "sampling": args.sample_lengths}[part]  # fmt: skip
        for length in lengths:
            for compression in compressions if part == "scaling" else [None]:
                for n in gpus:  # one process first: the sampling reference
                    jobs.append((part, length, compression, n))
    failed, new = False, []
    for part, length, compression, n in jobs:
        print(
            f"[multi_gpu] {part} L={length} GPUs={n}"
            + ("" if compression is None else f" PowerSGD {compression}"),
            flush=True,
        )
        if part == "scaling":
            row = run_scaling(args, n, length, compression, work)
        else:
            row = run_sharded(args, part, n, length, work)
        row["date"] = datetime.date.today().isoformat()
        failed |= row["status"].startswith("error")
        shown = row.get("stderr_causes", [])
        for line in [*shown, *(x for x in row.get("stderr_tail", []) if x not in shown)]:
            print(f"    {line}", flush=True)
        new.append(row)
        rows = derive(merge_rows(old, new))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    rows = derive(merge_rows(old, new))
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
