"""Peak memory and speed of the original Genie (aqlaboratory/genie), measured as ours is.

Usage::

    scripts/get_original_genie.sh PATH_OR_URL_OF_AQLABORATORY_GENIE   # once: .original_genie/
    python benchmarks/bench_original_genie.py --lengths 256,512,768,1024 \
        [--modes train,sample,reverse] [--matmul-precision highest|high|medium] \
        [--autocast none|bf16] [--batch-size 1] [--warmup 3] [--repeat 10] [--device cuda] \
        [--data FILE.npz] [--seed 0] [--out results.json] [--timeout-per-length S] \
        [--config-name scope_l_256] [--original-dir .original_genie] [--deterministic] \
        [--noise-scale 0.6] [--full-loop] [--git-commit abc1234]

Every (length, mode) pair runs in a fresh child process (``--child SPEC_JSON``, measured by
``original_genie.py``), collected by ``bench_step.run_child`` exactly as ``bench_step.py`` does
it: an out-of-memory error is an ``OOM`` row, a crash, kill or time-out an ``error: ...`` row.
The results JSON has the format of ``bench_step.py``'s (rewritten after every row), so
``report.py --original FILE`` can set these rows beside ours from the same run, with the ratio
ours/original per length. What each mode measures is said in ``original_genie.py``.

Precision: ``--matmul-precision`` is applied as our configs' ``matmulPrecision`` is
(``torch.set_float32_matmul_precision``: ``highest`` = strict fp32, their code's own setting;
``high`` = TF32 matrix products); ``--autocast bf16`` runs their steps under bf16 autocast.

Exit status: 0 when every row is ``ok`` or ``OOM``, 1 when any row is an error (the JSON is
written either way), 2 for bad arguments (no export in ``--original-dir``, an unknown
``--config-name``, an unwritable ``--out``: checked before the first child starts).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_step import (  # noqa: E402
    _positive_ints,
    add_run_arguments,
    format_table,
    git_info,
    measure_children,
)
from benchmarks.original_genie import (  # noqa: E402
    AUTOCAST_DTYPES,
    DEFAULT_CONFIG,
    DEFAULT_DIRECTORY,
    MODES,
    NOISE_SCALE,
    child_main,
    config_path,
    export_info,
)
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402

MODEL_NAME = "original Genie (aqlaboratory/genie)"


def _spec(args: argparse.Namespace, length: int, mode: str) -> dict[str, Any]:
    """What one child measures (``original_genie.measure``'s argument)."""
    return {
        "directory": str(args.original_dir),
        "config_name": args.config_name,
        "length": length,
        "mode": mode,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "device": args.device,
        "data": args.data,
        "seed": args.seed,
        "matmul_precision": args.matmul_precision,
        "autocast": args.autocast,
        "deterministic": args.deterministic,
        "noise_scale": args.noise_scale,
        "full_loop": args.full_loop,
    }


def run_benchmark(args: argparse.Namespace, command_line: str) -> dict[str, Any]:
    """Measure every (length, mode) in its own child and write the results document.

    Returns:
        The results document (also written to ``args.out`` after every row).
    """
    commit, dirty = git_info()
    if args.git_commit:
        commit = args.git_commit
    document: dict[str, Any] = {
        "model": MODEL_NAME,
        "original": export_info(args.original_dir),
        "device": "cpu" if args.device == "cpu" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "config": os.path.relpath(config_path(args.original_dir, args.config_name), REPO_ROOT),
        "overrides": [],
        "resolved_config": None,
        "parameters": None,
        "matmul_precision": args.matmul_precision,
        "autocast": None if args.autocast == "none" else args.autocast,
        "deterministic": args.deterministic,
        "command": command_line,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "data": args.data or "synthetic",
        "seed": args.seed,
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "results": [],
    }
    specs = [_spec(args, length, mode) for length in args.lengths for mode in args.modes]
    return measure_children(document, specs, script=Path(__file__), out=args.out,
                            timeout=args.timeout_per_length, device=args.device,
                            label="original")  # fmt: skip


def _modes(text: str) -> list[str]:
    """Parse 'train,sample,reverse' into a list of modes."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in MODES for v in values):
        raise argparse.ArgumentTypeError(f"modes must be a subset of {','.join(MODES)}: {text}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", required=True, type=_positive_ints, help="e.g. 256,512,1024")
    parser.add_argument("--modes", type=_modes, default=["train", "sample"], help="train,sample")
    parser.add_argument(
        "--matmul-precision",
        choices=("highest", "high", "medium"),
        default="highest",
        help="torch.set_float32_matmul_precision, as our matmulPrecision (default highest: "
        "strict fp32, as their training ran)",
    )
    parser.add_argument("--autocast", choices=tuple(AUTOCAST_DTYPES), default="none")
    add_run_arguments(parser, default_out="runs/bench/original_genie-<time>.json")
    parser.add_argument(
        "--config-name",
        default=DEFAULT_CONFIG,
        help=f"their configuration in ORIGINAL_DIR/configs (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--original-dir",
        type=Path,
        default=DEFAULT_DIRECTORY,
        help="the export of scripts/get_original_genie.sh (default .original_genie)",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms, as their Trainer(deterministic=True) (ours: off)",
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=NOISE_SCALE,
        help=f"reverse mode: their sampling noise scale (default {NOISE_SCALE}, as sample.py)",
    )
    parser.add_argument(
        "--full-loop",
        action="store_true",
        help="reverse mode: also time one whole p_sample_loop (T steps) after the timed steps",
    )
    parser.add_argument(
        "--git-commit",
        help="commit to record when running on a copy of the tree without .git",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("need --batch-size >= 1, --warmup >= 0 and --repeat >= 1")
    if args.noise_scale < 0:
        parser.error("need --noise-scale >= 0")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = REPO_ROOT / "runs" / "bench" / f"original_genie-{stamp}.json"
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
    """Check the export, ``--data`` and ``--out``, then measure every row in a child."""
    info = export_info(args.original_dir)
    config_path(args.original_dir, args.config_name)
    if args.data and not Path(args.data).is_file():
        raise FileNotFoundError(f"--data: no dataset file {args.data}")
    ensure_writable_file(args.out, what="--out")
    document = run_benchmark(args, command_line)
    print()
    print(
        f"device: {document['device']}  torch {document['torch']}  cuda {document['cuda']}  "
        f"commit {document['git_commit']}{' (dirty)' if document['git_dirty'] else ''}"
    )
    print(
        f"{MODEL_NAME} at {info['commit'][:12]}, {document['config']}, matmul precision "
        f"{args.matmul_precision}, autocast {args.autocast}, parameters: {document['parameters']}"
    )
    print(format_table(document["results"]))
    reverse = [r for r in document["results"] if r["mode"] == "reverse" and r["status"] == "ok"]
    for row in reverse:
        loop = f", whole loop {row['loop_s']:.1f} s" if "loop_s" in row else ""
        print(
            f"L={row['length']} reverse: {row['median_s']:.4f} s per step, "
            f"about {row['estimated_loop_s']:.1f} s for all steps{loop}"
        )
    print(f"results: {args.out}")
    failed = any(r["status"].startswith("error") for r in document["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
