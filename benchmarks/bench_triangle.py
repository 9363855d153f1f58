"""One dense triangle layer, forward + backward: ours against cuEquivariance's fused kernels.

    python benchmarks/bench_triangle.py --lengths 256,512,1024 \
        [--layers multiplication,attention] [--kernels reference,cuequivariance] \
        [--precisions fp32,bf16] [--warmup 3] [--repeat 10] [--git-commit C] --out triangle.json

Layers at Genie's sizes (c_p = 128): the outgoing triangle multiplicative update (hidden 128) and
starting-node triangle attention (4 heads × 32 channels), batch 1, no padding, unchunked (the
training default, ``triangleChunkSize`` None). Kernels: ``reference`` (ours) and
``cuequivariance`` (:class:`~genie.model.dense.fused_kernels.FusedTriangleKernels`, required, so
every call runs the fused kernel). Precisions: ``fp32`` (products as ``--matmul-precision``,
default ``high`` = TF32, the training default) and ``bf16`` (autocast over fp32 inputs and
parameters, as ``precision bf16`` trains). The factorised triangle layers have no fused
counterpart (``genie/model/dense/fused_kernels.py``), so they are not measured here.

Each row: ``median_s`` of the timed steps (CUDA events around forward + backward of
``mean(out²)``), ``times_s``, and ``peak_mem_gib``, the peak ``torch.cuda.max_memory_allocated``
of the step including its input, parameters and gradients (``input_gib`` is the input alone);
GiB = 2^30 bytes. ``status`` is ``ok``, ``OOM``, or ``error: ...``.
Exit 2 (one line) without CUDA, or with ``cuequivariance`` asked for where it does not import.
``--device cpu`` is a smoke run of ours (times meaningless, memory ``null``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.model.dense.fused_kernels import (  # noqa: E402
    FusedTriangleKernels,
    cuequivariance_unavailable,
)
from genie.model.dense.triangle_attention import TriangleAttention  # noqa: E402
from genie.model.dense.triangle_multiplication import TriangleMultiplication  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import UserInputError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402
from genie.utils.runtime import require_cuda  # noqa: E402

SIZES = {"c_p": 128, "c_hidden_mul": 128, "c_hidden_att": 32, "n_heads_att": 4}
KERNELS = {"reference": None, "cuequivariance": FusedTriangleKernels(required=True)}
LAYERS: dict[str, Callable[[FusedTriangleKernels | None], torch.nn.Module]] = {
    "multiplication": lambda k: TriangleMultiplication(
        c_p=SIZES["c_p"], c_hidden=SIZES["c_hidden_mul"], mix="outgoing", kernels=k
    ),
    "attention": lambda k: TriangleAttention(
        c_p=SIZES["c_p"], c_hidden=SIZES["c_hidden_att"], n_heads=SIZES["n_heads_att"],
        node="starting", kernels=k,
    ),
}  # fmt: skip
PRECISIONS = ("fp32", "bf16")


def measure(
    layer: torch.nn.Module, n: int, precision: str, warmup: int, repeat: int, device: str
) -> dict:
    """Time and peak memory of forward + backward at length ``n`` (module docstring)."""
    cuda = device != "cpu"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        gen = torch.Generator(device=device).manual_seed(0)
        z = torch.randn(1, n, n, SIZES["c_p"], device=device, generator=gen, requires_grad=True)
        pair_mask = torch.ones(1, n, n, device=device)
        times = []
        for i in range(warmup + repeat):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = layer(z, pair_mask)
            out.float().square().mean().backward()
            if cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
            z.grad = None
            layer.zero_grad(set_to_none=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        size = z.numel() * z.element_size() / 2**30
        return {"status": "ok", "median_s": statistics.median(times), "times_s": times,
                "peak_mem_gib": peak, "input_gib": size}  # fmt: skip
    except torch.OutOfMemoryError:
        return {"status": "OOM"}
    except RuntimeError as err:  # a kernel that cannot run these shapes
        return {"status": f"error: {str(err).splitlines()[0][:200]}"}
    finally:
        if cuda:
            torch.cuda.empty_cache()


def _choices(text: str, allowed: Sequence[str], what: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in allowed for v in values):
        raise UserInputError(f"--{what} takes a comma-separated subset of {','.join(allowed)}")
    return values


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="256,512,1024")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--matmul-precision", default="high", choices=("highest", "high"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, or cpu (a smoke run)")
    parser.add_argument("--git-commit", help="the commit measured (a copy without .git)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        lengths = [int(v) for v in args.lengths.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise UserInputError(f"--lengths takes positive integers like 256,512: {args.lengths!r}")
    layers = _choices(args.layers, tuple(LAYERS), "layers")
    kernels = _choices(args.kernels, tuple(KERNELS), "kernels")
    precisions = _choices(args.precisions, PRECISIONS, "precisions")
    if args.warmup < 0 or args.repeat < 1:
        raise UserInputError("need --warmup >= 0 and --repeat >= 1")
    ensure_writable_file(args.out, what="--out")
    if args.device != "cpu":
        require_cuda("bench_triangle.py")
    if "cuequivariance" in kernels:
        why = "they run on a GPU" if args.device == "cpu" else cuequivariance_unavailable()
        if why:
            raise UserInputError(f"--kernels cuequivariance: {why}")
    torch.set_float32_matmul_precision(args.matmul_precision)
    doc = {
        "device": "cpu" if args.device == "cpu" else torch.cuda.get_device_name(args.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda, "cuequivariance_torch": _version("cuequivariance-torch"),
        "cuequivariance_ops_torch": _version("cuequivariance-ops-torch-cu13")
        or _version("cuequivariance-ops-torch-cu12"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": args.git_commit, "sizes": SIZES, "batch_size": 1,
        "matmul_precision": args.matmul_precision, "warmup": args.warmup, "repeat": args.repeat,
        "command": " ".join(["python", *sys.argv]), "results": [],
    }  # fmt: skip
    cases = [(n, name, precision, kernel) for n in lengths for name in layers
             for precision in precisions for kernel in kernels]  # fmt: skip
    for n, name, precision, kernel in cases:
        torch.manual_seed(0)
        layer = LAYERS[name](KERNELS[kernel]).to(args.device)
        for p in layer.parameters():  # non-zero output layers, so backward does real work
            torch.nn.init.normal_(p, std=0.05)
        row = {"layer": name, "kernel": kernel, "precision": precision, "length": n}
        row.update(measure(layer, n, precision, args.warmup, args.repeat, args.device))
        doc["results"].append(row)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "times_s"}), flush=True)
        del layer


if __name__ == "__main__":
    sys.exit(run_command(main))
