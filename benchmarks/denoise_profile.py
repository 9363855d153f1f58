"""How close a trained model's x̂0 is to the real chain at each timestep: a denoising profile.

    python benchmarks/denoise_profile.py CKPT [CKPT ...] [--data FILE.npz] [--length 256]
        [--timesteps 1,10,50,...,1000] [--out FILE.json]

Every checkpoint sees the same held-out chains (the validation split of the first checkpoint's
config, rebuilt from ``--data``, crops of at most ``--length`` residues), noised to each timestep
t with the model's own noise scale σ (x_t = √ᾱ_t x0 + √(1−ᾱ_t) σ ε, one ε per chain, the same
for every t and model), and its x̂0 (:mod:`genie.diffusion.parametrisation`; a self-conditioned
model predicts twice, the second time conditioned on the first x̂0, as in training) is compared
with x0 in x0's own frame (x_t is made from x0, so no alignment is needed):

- ``rmsd``: √(mean over residues of ‖x̂0 − x0‖²), Å. ``rg`` is x0's radius of gyration, which is
  the rmsd of predicting every residue at the centroid: above it, x̂0 is worse than nothing.
- ``rg_ratio``: Rg(x̂0) / Rg(x0) (< 1: the prediction is shrunken, > 1: expanded).
- ``bond``: mean consecutive Cα–Cα distance of x̂0 within unbroken stretches (real: 3.80 Å).

Each figure is the mean over chains. It measures two readings of docs/QUALITY.md's long-chain
results: that ε prediction's x̂0 = (x_t − √(1−ᾱ_t) σ ε̂)/√ᾱ_t amplifies ε̂'s error at large t
(issue 15's hypothesis), and that an under-trained x0 model predicts shrunken chains there.
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

from genie.diffusion.noise_scale import ca_std  # noqa: E402
from genie.diffusion.parametrisation import centred  # noqa: E402
from genie.training.module import load_module  # noqa: E402
from genie.training.run import build_datamodule  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import UserInputError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402

TIMESTEPS = (1, 10, 50, 100, 200, 400, 600, 800, 900, 950, 1000)


def radius_of_gyration(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[b, n, 3]`` Å and ``[b, n]`` -> ``[b]`` Rg of each chain's real residues, Å
    (√3 times the per-axis Cα standard deviation, :func:`genie.diffusion.noise_scale.ca_std`)."""
    return math.sqrt(3) * ca_std(x, mask)


def profile_figures(
    x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, breaks: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-chain figures of a prediction (module docstring).

    Args:
        x0_hat: ``[b, n, 3]`` predicted clean chains, Å, in the frame of ``x0``.
        x0: ``[b, n, 3]`` the real chains, Å.
        mask: ``[b, n]`` real residues.
        breaks: ``[b, n]`` True where a chain break comes before residue i.

    Returns:
        ``rmsd``, ``rg``, ``rg_ratio``, ``bond``: each ``[b]`` (Å, Å, unitless, Å).
    """
    m = mask.to(x0.dtype)
    sq = ((x0_hat - x0) ** 2).sum(-1) * m  # [b, n]
    rmsd = (sq.sum(-1) / m.sum(-1).clamp_min(1.0)).sqrt()
    rg = radius_of_gyration(x0, mask)
    ratio = radius_of_gyration(x0_hat, mask) / rg.clamp_min(1e-6)
    pair = m[:, 1:] * m[:, :-1] * (~breaks[:, 1:].bool()).to(x0.dtype)  # [b, n-1]
    length = (x0_hat[:, 1:] - x0_hat[:, :-1]).norm(dim=-1)
    bond = (length * pair).sum(-1) / pair.sum(-1).clamp_min(1.0)
    return {"rmsd": rmsd, "rg": rg, "rg_ratio": ratio, "bond": bond}


@torch.no_grad()
def predict_x0(module, x_t: torch.Tensor, t: torch.Tensor, batch: dict) -> torch.Tensor:
    """The module's x̂0 for ``x_t`` (twice, self-conditioned on the first, where it was trained
    so), Å."""
    mask, index = batch["mask"], batch["residue_index"]
    alpha_bar = module.schedule.alpha_bar[t]
    extra = {}
    passes = 2 if module.model.self_conditioning else 1
    for _ in range(passes):
        output = module.model(x_t, t, mask, index, **extra).float()
        x0_hat = module.parametrisation.predict(output, x_t, mask, alpha_bar=alpha_bar).x0
        extra = {"self_condition": centred(x0_hat, mask)}
    return x0_hat


def profile(module, batches: Sequence[dict], timesteps: Sequence[int], *, seed: int,
            device: torch.device) -> list[dict]:  # fmt: skip
    """One row per timestep: the mean of each figure over the chains of ``batches``."""
    module = module.to(device).eval()
    rows = []
    for t_value in timesteps:
        sums: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(batches):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            x0, mask = batch["coords"], batch["mask"]
            gen = torch.Generator(device=device).manual_seed(seed + i)
            eps = torch.randn(x0.shape, device=device, generator=gen) * mask[..., None]
            t = torch.full((x0.shape[0],), t_value, device=device, dtype=torch.long)
            sigma = module.parametrisation.noise.training(x0, mask)  # [b] Å
            x_t = module.schedule.add_noise(x0, t, eps * sigma[:, None, None])
            x0_hat = predict_x0(module, x_t, t, batch)
            figures = profile_figures(x0_hat, x0, mask, batch["breaks"])
            for name, values in figures.items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
            count += x0.shape[0]
        rows.append({"t": t_value, **{k: v / count for k, v in sums.items()}})
    return rows


def parse_timesteps(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserInputError(f"--timesteps takes comma-separated integers, got {text}") from None
    if not values:
        raise UserInputError("--timesteps: give at least one timestep")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", help="processed dataset .npz (default: the first config's)")
    parser.add_argument("--length", type=int, default=256, help="crop length (residues)")
    parser.add_argument("--timesteps", default=",".join(map(str, TIMESTEPS)))
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    timesteps = parse_timesteps(args.timesteps)
    for path in args.checkpoints:
        if not Path(path).is_file():
            raise UserInputError(f"checkpoint not found: {path}")
    if args.out:
        ensure_writable_file(args.out, what="--out")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = load_module(args.checkpoints[0]).config
    overrides = {"maximumNumResidues": args.length, "numWorkers": 0,
                 "useProgressiveTraining": False}  # fmt: skip
    if args.data:
        overrides["dataDirectory"] = args.data
    datamodule = build_datamodule(type(first)(**{**first.__dict__, **overrides}))
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = list(datamodule.val_dataloader())
    results = []
    for path in args.checkpoints:
        module = load_module(path)
        num_timesteps = module.schedule.num_timesteps
        if max(timesteps) > num_timesteps or min(timesteps) < 1:
            raise UserInputError(f"--timesteps must lie in 1..{num_timesteps} for {path}")
        rows = profile(module, batches, timesteps, seed=args.seed, device=device)
        what = module.parametrisation.describe()
        results.append({"checkpoint": path, "name": module.config.name, "what": what,
                        "rows": rows})  # fmt: skip
        print(f"\n{module.config.name} ({what}; {path})")
        print("     t   rmsd Å   Rg(x0) Å   Rg ratio   Cα–Cα Å")
        for r in rows:
            print(f"{r['t']:>6} {r['rmsd']:>8.2f} {r['rg']:>10.2f} {r['rg_ratio']:>10.3f} "
                  f"{r['bond']:>9.2f}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"length": args.length, "results": results},
                                             indent=1))  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_command(main))
