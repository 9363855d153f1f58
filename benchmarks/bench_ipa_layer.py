"""One IPA layer, forward + backward: dense IPA vs FlashIPA (per attention backend).

    python benchmarks/bench_ipa_layer.py --lengths 512,1024,4096,16384,65536 \
        [--backends auto,cudnn,efficient,flash] [--dense-max 8192] --out ipa.json

Genie's IPA sizes (12 heads, c = 16, 4 query/key and 8 value points, c_s = 128); FlashIPA with
pair factors of rank 2 and 32 channels (value head dim 104), dense IPA with a dense pair tensor
of 128 channels. Memory: peak ``torch.cuda.max_memory_allocated`` of the step including its
inputs (GiB); time: median of the timed repeats (s). OOM is recorded as OOM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_data import synthetic_trace  # noqa: E402
from genie.geometry import frenet_serret_frames  # noqa: E402
from genie.model.representations import DensePair, PairFactors  # noqa: E402
from genie.model.structure.flash_ipa import FlashIPA  # noqa: E402
from genie.model.structure.ipa import InvariantPointAttention  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import UserInputError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402
from genie.utils.runtime import require_cuda  # noqa: E402

SIZES = dict(c_s=128, c_hidden=16, n_heads=12, n_qk_points=4, n_v_points=8)


def inputs(n: int, kind: str):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.as_tensor(synthetic_trace(n, seed=0), device="cuda")[None].float()
    frames = frenet_serret_frames(x).scale_translation(0.1)
    s = torch.randn(1, n, 128, device="cuda", generator=gen, requires_grad=True)
    mask = torch.ones(1, n, device="cuda")
    if kind == "dense":
        pair = DensePair(
            torch.randn(1, n, n, 128, device="cuda", generator=gen, requires_grad=True)
        )
    else:
        u = torch.randn(1, n, 2, 32, device="cuda", generator=gen, requires_grad=True)
        pair = PairFactors(u, torch.randn(1, n, 2, 32, device="cuda", generator=gen))
    return s, pair, frames, mask


def measure(layer, n: int, kind: str, warmup: int, repeat: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        s, pair, frames, mask = inputs(n, kind)
        times = []
        for i in range(warmup + repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = layer(s, pair, frames, mask)
            out.float().square().mean().backward()
            end.record()
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(start.elapsed_time(end) / 1e3)
        return {"status": "ok", "median_s": statistics.median(times),
                "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}  # fmt: skip
    except torch.OutOfMemoryError:
        return {"status": "OOM"}
    except RuntimeError as err:  # a backend that cannot run these shapes
        return {"status": f"error: {str(err).splitlines()[0][:160]}"}
    finally:
        torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", required=True)
    parser.add_argument("--backends", default="auto,cudnn,efficient,flash")
    parser.add_argument("--dense-max", type=int, default=8192, help="skip dense IPA above this L")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        lengths = [int(v) for v in args.lengths.split(",")]
    except ValueError:
        raise UserInputError(
            f"--lengths takes integers like 512,1024, got {args.lengths!r}"
        ) from None
    ensure_writable_file(args.out, what="--out")
    require_cuda("bench_ipa_layer.py")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for n in lengths:
        variants = (
            [("dense", InvariantPointAttention(c_p=128, **SIZES))] if n <= args.dense_max else []
        )
        variants += [(f"flash-{b}", FlashIPA(c_f=32, rank=2, backend=b, **SIZES))
                     for b in args.backends.split(",")]  # fmt: skip
        for name, layer in variants:
            torch.manual_seed(0)
            for p in layer.parameters():  # non-zero output layer, so backward does real work
                torch.nn.init.normal_(p, std=0.05)
            row = {"length": n, "variant": name,
                   **measure(layer.cuda(), n, "dense" if name == "dense" else "flash",
                             args.warmup, args.repeat)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            del layer
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "sizes": SIZES, "flash_pair": {"rank": 2, "c_f": 32}, "dense_c_p": 128,
           "command": " ".join(sys.argv), "results": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main))
