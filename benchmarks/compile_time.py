"""Compile time of the denoiser against its number of chunks: chunk loops apart or unrolled.

Usage::

    python benchmarks/compile_time.py --config configs/train_stage3v2.config --length 256 \
        --chunks 1,8,16,32 [--arms apart,unrolled] [--set key=value ...] [--mode default] \
        [--device cpu] [--out results.json] [--timeout S]

Each (chunk count, arm) row is a fresh child process with an empty Inductor cache of its own
(a temporary ``TORCHINDUCTOR_CACHE_DIR``), so every figure is a cold compilation. The child
builds the config's denoiser with ``sparseChunkSize`` = ⌈length / chunks⌉, compiles it
(:class:`~genie.model.compiled.CompiledDenoiser`, ``--mode``) and times on one synthetic chain:

- ``first_s``: the first forward + backward (of the squared output), compilation included;
- ``steady_s``: the second one;
- ``graphs``: the graphs Dynamo compiled (``torch._dynamo``'s ``unique_graphs`` counter);
- ``max_abs_diff``: the largest difference of the compiled output from the eager module's.

Arms: ``apart`` is the package as it is (chunk loops of more than
:data:`~genie.utils.chunking.MAX_UNROLLED` chunks run through one compiled chunk function);
``unrolled`` sets that bound out of reach, so every chunk is unrolled into the graph (the
package before commit 8c18249). Results: ``docs/BENCHMARKS.md``, "Why 16,384 compiles slowly".
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_data import make_batch  # noqa: E402
from benchmarks.bench_measure import RESULT_PREFIX  # noqa: E402
from benchmarks.bench_step import _child_env, git_info, run_child  # noqa: E402
from genie.utils.chunking import MAX_UNROLLED  # noqa: E402

ARMS = ("apart", "unrolled")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One row: compile the denoiser of ``spec`` and time its first and second step."""
    import genie.utils.chunking as chunking
    from genie.config import load_config
    from genie.model.build import build_denoiser
    from genie.model.compiled import CompiledDenoiser

    if spec["arm"] == "unrolled":
        chunking.MAX_UNROLLED = 1 << 30
    length, chunks = spec["length"], spec["chunks"]
    chunk = -(-length // chunks)
    cfg = load_config(spec["config"], [*spec["overrides"], f"sparseChunkSize={chunk}"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = build_denoiser(cfg, announce=False).to(device).train()
    batch, _ = make_batch(length, 1, seed=0)
    coords, mask = batch["coords"].to(device), batch["mask"].to(device)
    t = torch.full((1,), cfg.numTimesteps // 2, device=device)
    compiled = CompiledDenoiser(model, mode=spec["mode"])
    graph = model.build_graph(coords, mask) if model.uses_graph else None

    def step() -> tuple[torch.Tensor, float]:
        x = coords.clone().requires_grad_(True)
        start = time.perf_counter()
        out = compiled(x, t, mask, graph=graph)
        out.float().square().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out.detach(), time.perf_counter() - start

    out, first = step()
    _, steady = step()
    with torch.no_grad():
        eager = model(coords, t, mask, graph=graph)
    return {
        "arm": spec["arm"], "chunks": chunks, "sparseChunkSize": chunk, "length": length,
        "status": "ok" if compiled.failed is None else f"error: fell back ({compiled.failed})",
        "first_s": first, "steady_s": steady,
        "graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"],
        "max_abs_diff": float((out.float() - eager.float()).abs().max()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs/train_stage3v2.config"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="overrides")
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--chunks", default="1,8,16,32", help="chunk counts, comma-separated")
    parser.add_argument("--arms", default="apart,unrolled", help=f"of {', '.join(ARMS)}")
    parser.add_argument("--mode", default="default", choices=("default", "max-autotune"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (rewritten per row)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per row")
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT_PREFIX + json.dumps(measure(json.loads(args.child))), flush=True)
        return 0
    arms = args.arms.split(",")
    if unknown := sorted(set(arms) - set(ARMS)):
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    try:
        counts = [int(c) for c in args.chunks.split(",")]
    except ValueError:
        parser.error(f"--chunks must be comma-separated integers, got {args.chunks!r}")
    if min(counts) < 1 or max(counts) > args.length:
        parser.error(f"chunk counts must lie in 1..{args.length} (the length)")
    commit, dirty = git_info()
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit, "git_dirty": dirty, "torch": torch.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "rows": [],
    }  # fmt: skip
    for chunks in counts:
        for arm in arms:
            if arm == "unrolled" and chunks <= MAX_UNROLLED:
                continue  # so few chunks are unrolled in both arms: the same program
            spec = dict(
                arm=arm,
                chunks=chunks,
                length=args.length,
                mode=args.mode,
                config=args.config,
                overrides=args.overrides,
                device=args.device,
            )
            with tempfile.TemporaryDirectory(prefix="inductor_") as cache:
                env = {**_child_env(), "TORCHINDUCTOR_CACHE_DIR": cache}
                command = [sys.executable, __file__, "--child", json.dumps(spec)]
                row = run_child(command, args.timeout, env) | {"arm": arm, "chunks": chunks}
            result["rows"].append(row)
            shown = ("arm", "chunks", "status", "first_s", "steady_s", "graphs")
            print(json.dumps({k: row.get(k) for k in shown}), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if any(not r.get("status", "").startswith("ok") for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
