"""Fit the sampling noise scale σ(L) = a · L^ν of ``noiseScale length`` on real chains.

σ of a chain is its Cα standard deviation per axis, √(Σ_i ‖x_i − x̄‖² / 3n) = Rg / √3 (Å), the
per-structure scale that ``noiseScale length`` uses in training
(:func:`genie.diffusion.noise_scale.ca_std`). The fit is least squares of log σ on log L over
whole chains (not split at gaps: a gap of missing residues does not change the chain's size) of
at least ``--min-length`` residues read from the given folders, one value per chain. 4V8R
stores 32 chains under 16 one-letter ids (two chains per id), so its chains are split at Cα gaps
instead (``--split-at-gaps``, matched by file-name prefix).

Usage (the fit in :mod:`genie.diffusion.noise_scale` came from this command)::

    python scripts/fit_noise_scale.py ../shared/data/pdb/train ../shared/data/pdb/bench/ts50 \
        ../shared/data/pdb/long
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.data.preprocess import collect_structure_files  # noqa: E402
from genie.data.structure_io import StructureReadError, read_ca_segments  # noqa: E402


def chain_scales(
    sources: Sequence[str | Path], *, min_length: int, split_at_gaps: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Lengths ``[m]`` and Cα standard deviations ``[m]`` (Å) of every chain of ``sources``."""
    lengths, scales = [], []
    for path in collect_structure_files([str(s) for s in sources]):
        split = any(path.name.upper().startswith(p.upper()) for p in split_at_gaps)
        try:
            segments = read_ca_segments(path, split_chain_breaks=split, min_length=min_length)
        except StructureReadError:
            continue  # the deliberately broken files of pdb/odd and the like
        for segment in segments:
            xyz = segment.coords.astype(np.float64)  # [n, 3]
            centred = xyz - xyz.mean(0)
            lengths.append(len(xyz))
            scales.append(np.sqrt((centred**2).sum(-1).mean() / 3))
    return np.asarray(lengths, dtype=np.float64), np.asarray(scales)


def power_law_fit(lengths: np.ndarray, scales: np.ndarray) -> tuple[float, float, float]:
    """``(a, ν, residual)``: least squares of log σ = log a + ν log L; residual = the standard
    deviation of log σ around the fit (a factor exp(residual) either way covers ~68 %)."""
    design = np.stack([np.ones_like(lengths), np.log(lengths)], axis=1)  # [m, 2]
    (log_a, nu), *_ = np.linalg.lstsq(design, np.log(scales), rcond=None)
    residual = np.log(scales) - design @ np.array([log_a, nu])
    return float(np.exp(log_a)), float(nu), float(residual.std())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="folders, files or globs of PDB/mmCIF files")
    parser.add_argument("--min-length", type=int, default=40)
    parser.add_argument("--split-at-gaps", nargs="*", default=["4V8R"], metavar="PREFIX")
    args = parser.parse_args(argv)
    lengths, scales = chain_scales(
        args.sources, min_length=args.min_length, split_at_gaps=args.split_at_gaps
    )
    a, nu, residual = power_law_fit(lengths, scales)
    print(f"chains: {len(lengths)} of {int(lengths.min())}-{int(lengths.max())} residues "
          f"({int((lengths > 1000).sum())} longer than 1,000)")  # fmt: skip
    print(f"sigma(L) = {a:.4f} * L^{nu:.4f} Å (log residual {residual:.3f}); "
          f"Rg(L) = sqrt(3) sigma = {np.sqrt(3) * a:.4f} * L^{nu:.4f} Å")  # fmt: skip
    for n in (128, 256, 512, 1024, 2048):
        print(f"  L = {n:5d}: sigma {a * n**nu:6.2f} Å, Rg {np.sqrt(3) * a * n**nu:6.2f} Å")


if __name__ == "__main__":
    main()
