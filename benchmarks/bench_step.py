"""Peak memory and speed of one training step and one denoising step, per chain length.

Usage::

    python benchmarks/bench_step.py --config configs/train_baseline.config \
        --lengths 128,256,512 [--set key=value ...] [--modes train,sample] [--batch-size 1] \
        [--warmup 3] [--repeat 10] [--device cuda] [--data FILE.npz] [--out results.json] \
        [--timeout-per-length S]

Every (length, mode) pair runs in a fresh child process of this script, so an out-of-memory error
or a fragmented allocator at one length cannot change the figures of the next. The child
(``bench_step.py --child SPEC_JSON``, measured by ``bench_measure.py`` on a batch of
``bench_data.py``) prints one ``BENCH_RESULT {json}`` line; the parent collects it, or, when the
child dies or runs past its time limit, records the reason as an ``error: ...`` row. The parent
rewrites the output JSON after every row, so a run that is cut off keeps what it measured.

What each mode measures, and how, is said in ``bench_measure.py``.

Exit status: 0 when every row is ``ok`` or ``OOM``, 1 when any row is an error (the JSON is
written either way) or on a bug, 2 for bad arguments (a config that does not load, an unwritable
``--out``: checked before the first child starts; :mod:`genie.utils.cli`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_measure import MODES, RESULT_PREFIX, child_main  # noqa: E402
from genie.config import load_config  # noqa: E402
from genie.config.cli import add_config_arguments  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


def _tail(text: str, lines: int) -> str:
    """Last ``lines`` non-empty lines of ``text``."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_child(
    command: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a child process and return the row it printed, or an error row saying why not.

    Args:
        command: the child's argv.
        timeout: seconds before the child is killed.
        env: environment of the child (default: inherited).

    Returns:
        The child's ``BENCH_RESULT`` row, or ``{"status": "error: ...", "stderr_tail": ...}``.
    """
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return {"status": f"error: timed out after {timeout:g} s", "stderr_tail": _tail(stderr, 20)}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            row = json.loads(line[len(RESULT_PREFIX) :])
            if row.get("status", "").startswith("error"):
                row["stderr_tail"] = _tail(proc.stderr, 20)
            return row
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        why = f"child killed by {name}" + (" (host out of memory?)" if name == "SIGKILL" else "")
    else:
        last = _tail(proc.stderr, 1) or "no output"
        why = f"child exited with code {proc.returncode} without a result: {last}"
    return {"status": f"error: {why[:300]}", "stderr_tail": _tail(proc.stderr, 20)}


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    """Run git in the repository root; ``None`` when git itself is missing."""
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_info() -> tuple[str, bool | None]:
    """The short commit and whether the tree is dirty.

    Returns:
        (commit, dirty): commit is ``"uncommitted"`` in a repository without commits and
        ``"unknown"`` outside one (dirty is then ``None``).
    """
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0:
        return "unknown", None
    head = _git("rev-parse", "--short", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else "uncommitted"
    status = _git("status", "--porcelain")
    dirty = None if status is None or status.returncode != 0 else bool(status.stdout.strip())
    return commit, dirty


def _child_env() -> dict[str, str]:
    """The parent's environment with the repository root on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _fmt(value: float | None, spec: str) -> str:
    """Format a number for the console table ('-' for none)."""
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width console table of result rows."""
    lines = [
        f"{'L':>6}  {'mode':<6}  {'status':<10}  {'peak GiB':>9}  {'median s':>9}  {'samples/s':>9}"
    ]
    for row in rows:
        status = row["status"] if len(row["status"]) <= 10 else "error"
        lines.append(
            f"{row['length']:>6}  {row['mode']:<6}  {status:<10}  "
            f"{_fmt(row.get('peak_mem_gib'), '.2f'):>9}  {_fmt(row.get('median_s'), '.4f'):>9}  "
            f"{_fmt(row.get('samples_per_s'), '.3g'):>9}"
        )
    errors = [r for r in rows if r["status"].startswith("error")]
    lines += [f"L={r['length']} {r['mode']}: {r['status']}" for r in errors]
    return "\n".join(lines)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the results document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


_ROW_KEYS = ("length", "mode", "status", "peak_mem_gib", "median_s", "samples_per_s", "times_s")
_RUN_KEYS = ("device", "resolved_config", "parameters")


def run_benchmark(args: argparse.Namespace, command_line: str) -> dict[str, Any]:
    """Measure every (length, mode) in its own child and write the results document.

    Returns:
        The results document (also written to ``args.out`` after every row).
    """
    commit, dirty = git_info()
    if args.git_commit:
        commit = args.git_commit
    document: dict[str, Any] = {
        "device": "cpu" if args.device == "cpu" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "config": args.config,
        "overrides": list(args.overrides),
        "resolved_config": None,
        "parameters": None,
        "command": command_line,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "data": args.data or "synthetic",
        "seed": args.seed,
        "sampler": args.sampler,
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "results": [],
    }
    specs = [
        {
            "config": args.config,
            "overrides": list(args.overrides),
            "length": length,
            "mode": mode,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "device": args.device,
            "data": args.data,
            "seed": args.seed,
            "sampler": args.sampler,
        }
        for length in args.lengths
        for mode in args.modes
    ]
    return measure_children(document, specs, script=Path(__file__), out=args.out,
                            timeout=args.timeout_per_length, device=args.device,
                            label="bench")  # fmt: skip


def measure_children(
    document: dict[str, Any],
    specs: Sequence[dict[str, Any]],
    *,
    script: Path,
    out: Path,
    timeout: float,
    device: str,
    label: str,
) -> dict[str, Any]:
    """Run ``script --child SPEC`` for every spec (``length``, ``mode`` and what the child
    reads), one fresh process each, and add its row to ``document["results"]`` (rewritten to
    ``out`` after every row; a line printed per row). The run keys (device, resolved config,
    parameters) come from the first child that reports them."""
    env = _child_env()
    for spec in specs:
        length, mode = spec["length"], spec["mode"]
        command = [sys.executable, str(script.resolve()), "--child", json.dumps(spec)]
        start = time.perf_counter()
        got = run_child(command, timeout, env)
        wall = time.perf_counter() - start
        for key in _RUN_KEYS:
            if document.get(key) is None and got.get(key) is not None:
                document[key] = got[key]
        row = {key: got.get(key) for key in _ROW_KEYS}
        row.update(length=length, mode=mode, times_s=got.get("times_s") or [])
        row.update({k: v for k, v in got.items() if k not in _ROW_KEYS + _RUN_KEYS})
        row["wall_s"] = wall
        document["results"].append(row)
        _write_json(out, document)
        print(
            f"[{label}] L={length} {mode}: {row['status']}  "
            f"peak={_fmt(row['peak_mem_gib'], '.2f')} GiB  "
            f"median={_fmt(row['median_s'], '.4f')} s  (child {wall:.1f} s)",
            flush=True,
        )
        if row["status"].startswith("error") and row.get("stderr_tail"):
            print(_tail(row["stderr_tail"], 6), flush=True)
    if document["device"] is None:
        available = torch.cuda.is_available()
        document["device"] = torch.cuda.get_device_name() if available else device
        _write_json(out, document)
    return document


def _positive_ints(text: str) -> list[int]:
    """Parse '128,256,512' into positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text}"
        ) from error
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"lengths must be positive integers: {text}")
    return values


def _modes(text: str) -> list[str]:
    """Parse 'train,sample' into a list of modes."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in MODES for v in values):
        raise argparse.ArgumentTypeError(f"modes must be a subset of {','.join(MODES)}: {text}")
    return values


def add_run_arguments(parser: argparse.ArgumentParser, *, default_out: str) -> None:
    """The options every step benchmark takes: batch, warm-up and timed steps, device, input
    data, seed, results file and the per-child time limit."""
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeat", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    parser.add_argument("--data", help="processed dataset npz (coords, offsets) to crop from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help=f"results JSON (default {default_out})")
    parser.add_argument(
        "--timeout-per-length",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds before a (length, mode) child is killed (default 300)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(parser, what="training")
    parser.add_argument("--lengths", required=True, type=_positive_ints, help="e.g. 128,256,512")
    parser.add_argument(
        "--modes", type=_modes, default=["train", "sample"], help="train,sample,reverse"
    )
    parser.add_argument(
        "--sampler",
        default="ddpm",
        help="reverse mode: ddpm (T model calls) or ddim:S (DDIM, stride S, η = 0)",
    )
    add_run_arguments(parser, default_out="runs/bench/<config>-<time>.json")
    parser.add_argument(
        "--git-commit",
        help="commit to record when running on a copy of the tree without .git",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("need --batch-size >= 1, --warmup >= 0 and --repeat >= 1")
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = REPO_ROOT / "runs" / "bench" / f"{Path(args.config).stem}-{stamp}.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the parent by default, a child with ``--child SPEC_JSON``."""
    script = sys.argv[0] if argv is None else os.path.relpath(__file__)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--child":
        return child_main(argv[1])  # reports its own errors in its result row
    args = parse_args(argv)
    return run_command(_parent, args, "python " + shlex.join([script, *argv]))


def _parent(args: argparse.Namespace, command_line: str) -> int:
    """Check the config, ``--data`` and ``--out``, then measure every row in a child."""
    load_config(args.config, args.overrides)  # a config error is reported once, not per row
    if args.data and not Path(args.data).is_file():
        raise FileNotFoundError(f"--data: no dataset file {args.data}")
    ensure_writable_file(args.out, what="--out")
    document = run_benchmark(args, command_line)
    print()
    print(
        f"device: {document['device']}  torch {document['torch']}  cuda {document['cuda']}  "
        f"commit {document['git_commit']}{' (dirty)' if document['git_dirty'] else ''}"
    )
    print(f"config: {args.config} {' '.join(args.overrides)}  parameters: {document['parameters']}")
    print(format_table(document["results"]))
    print(f"results: {args.out}")
    failed = any(r["status"].startswith("error") for r in document["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
