"""Training stability with and without mHC at a deliberately high learning rate.

    python benchmarks/stability.py --config configs/train_mhc_flash.config --data FILE.npz \
        --lr 3e-3 --steps 300 --out stability.json [--plot stability.png]

Trains the config twice from the same seed on the same batches — once as it is (mHC on), once
with ``useMHCMode False`` — without gradient clipping, and records the loss and the gradient norm
of every step. A plain loop (no Lightning) keeps the two runs identical except for the toggle.
Both run under the config's autocast (``genie.training.precision.autocast_dtype``); the loop has
no GradScaler, so ``precision 16`` runs fp16 autocast unscaled.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.config import load_config  # noqa: E402
from genie.config.cli import add_config_arguments  # noqa: E402
from genie.training.module import GenieModule  # noqa: E402
from genie.training.precision import autocast_dtype  # noqa: E402
from genie.training.run import build_datamodule  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402
from genie.utils.runtime import apply_runtime_settings  # noqa: E402


def run(cfg, batches, *, lr: float, device) -> dict:
    torch.manual_seed(cfg.seed)
    module = GenieModule(cfg).to(device).train()
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    losses, norms = [], []
    dtype = autocast_dtype(use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision)
    for step, batch in enumerate(batches):
        torch.manual_seed(cfg.seed * 1000 + step)  # same timesteps and noise in both runs
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module.compute_loss(batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), float("inf"))
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
    return {"loss": losses, "grad_norm": norms,
            "diverged": not all(math.isfinite(v) for v in losses + norms)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser, what="training")
    parser.add_argument("--data", required=True)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = [f"dataDirectory={args.data}", "numWorkers=0", "gradientClipVal=0", *args.overrides]
    cfg_on = load_config(args.config, base)
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path is not None:
            ensure_writable_file(path, what=option)
    apply_runtime_settings(matmul_precision=cfg_on.matmulPrecision)
    dm = build_datamodule(cfg_on)
    dm.prepare_data()
    dm.setup("fit")
    batches = []
    while len(batches) < args.steps:
        dm.train_dataset.set_epoch(len(batches))
        for batch in dm.train_dataloader():
            batches.append(batch)
            if len(batches) == args.steps:
                break
    results = {}
    for name, extra in (("mhc", []), ("plain", ["useMHCMode=False"])):
        cfg = load_config(args.config, base + extra)
        results[name] = run(cfg, batches, lr=args.lr, device=device)
        tail = results[name]["loss"][-20:]
        print(f"{name:>6}: final loss (mean of last 20) {sum(tail) / len(tail):.4f}, "
              f"max grad norm {max(results[name]['grad_norm']):.3g}, "
              f"diverged {results[name]['diverged']}")  # fmt: skip
    doc = {"config": args.config, "lr": args.lr, "steps": args.steps, "overrides": base,
           "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "command": " ".join(sys.argv), "runs": results}  # fmt: skip
    Path(args.out).write_text(json.dumps(doc))
    if args.plot:
        plot(doc, args.plot)


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, run_ in doc["runs"].items():
        axes[0].plot(run_["loss"], label=name, lw=0.8)
        axes[1].semilogy(run_["grad_norm"], label=name, lw=0.8)
    axes[0].set(xlabel="step", ylabel="training loss", title=f"lr = {doc['lr']:g}")
    axes[1].set(xlabel="step", ylabel="gradient norm (before any clipping)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(run_command(main))
