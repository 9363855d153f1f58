"""Validation noise loss of trained checkpoints on one fixed split, timesteps and noise.

    python benchmarks/val_loss.py CKPT [CKPT ...] [--data FILE.npz] [--max-length 256]
        [--draws 8] [--out results.json]

Every checkpoint is scored on the same validation segments (the split of the first
checkpoint's config, rebuilt from ``--data``), with the same timesteps and noise for every model
(``draws`` noise draws per batch), using the per-residue L2 denoising loss only — so models
trained with extra loss terms are compared on the common objective. Each model is noised with
its own noise scale σ and scored on its own target (ε, or x0/σ for ``predictionTarget x0``:
:mod:`genie.diffusion.parametrisation`), in one pass without self-conditioning; for Genie's
unit noise and ε this is Genie's noise loss, and only models of one noise scale and target are
comparable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.diffusion import noise_loss  # noqa: E402
from genie.training.module import load_module  # noqa: E402
from genie.training.run import build_datamodule  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


@torch.no_grad()
def score(module, datamodule, *, draws: int, device: torch.device) -> float:
    module = module.to(device).eval()
    total, count = 0.0, 0
    for i, batch in enumerate(datamodule.val_dataloader()):
        gen = torch.Generator(device=device).manual_seed(10_000 + i)
        x0, mask = batch["coords"].to(device), batch["mask"].to(device)
        for _ in range(draws):
            t = module.schedule.sample_timesteps(x0.shape[0], device=device, generator=gen)
            eps = torch.randn(x0.shape, device=device, generator=gen) * mask[..., None]
            sigma = module.parametrisation.noise.training(x0, mask)  # [b] Å
            x_t = module.schedule.add_noise(x0, t, eps * sigma[:, None, None])
            output = module.model(x_t, t, mask).float()
            ab = module.schedule.alpha_bar[t]
            prediction = module.parametrisation.predict(output, x_t, mask, alpha_bar=ab)
            predicted, target = module.parametrisation.loss_pair(
                prediction, x0=x0, noise=eps, sigma=sigma
            )
            total += noise_loss(predicted, target, mask).item()
            count += 1
    return total / count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", help="processed dataset .npz (default: the first config's)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.out:
        ensure_writable_file(args.out, what="--out")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = load_module(args.checkpoints[0]).config
    overrides = {"maximumNumResidues": args.max_length, "numWorkers": 0}
    if args.data:
        overrides["dataDirectory"] = args.data
    cfg = type(first)(**{**first.__dict__, **overrides, "useProgressiveTraining": False})
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    results = []
    for path in args.checkpoints:
        module = load_module(path)
        loss = score(module, datamodule, draws=args.draws, device=device)
        results.append({"checkpoint": path, "name": module.config.name, "val_noise_loss": loss})
        print(f"{module.config.name:>12}  val noise loss {loss:.4f}  ({path})")
    if args.out:
        Path(args.out).write_text(json.dumps({"max_length": args.max_length, "results": results}))


if __name__ == "__main__":
    sys.exit(run_command(main))
