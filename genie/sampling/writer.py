"""Writing one sampled backbone: the structure file, optional fragments and trajectory.

Every file is written atomically, and the structure file ``STEM.pdb``/``STEM.cif`` is written
last: its presence means the sample is complete (a re-run skips it when its provenance record
matches, :mod:`genie.sampling.provenance`), so an interruption never leaves a sample that looks
finished but lacks its fragments or trajectory.

Fragments (``saveFragments``): a chain longer than the fragment length F is also written as
consecutive pieces ``STEM_frag000.pdb``, ``STEM_frag001.pdb``, ...: fragment k holds residues
k·F + 1 ... min((k + 1)·F, n) of the chain (no overlap; the last one may be shorter), in the
chain's own coordinate frame, numbered from 1 within the fragment. F ≤ 9,999, so each fits PDB
columns; a fragment whose coordinates exceed the PDB coordinate columns (beyond −999.999 or
9999.999 Å, a diverged sample) is written as mmCIF ``STEM_fragKKK.cif`` instead, with a warning.

Trajectory (``saveTrajectory``): ``STEM.trajectory.npz`` with ``coords`` ``[frames, n, 3]``
float32 Å (oldest first, the last frame is the final structure) and ``timesteps`` ``[frames]``
(frame j is x_t at t = timesteps[j]).

Diverged samples (:func:`coordinate_problem`): a backbone with a NaN or infinite coordinate, or
one that ``outputFormat pdb`` cannot hold (beyond the PDB coordinate columns), is never written
as ``STEM.pdb``/``STEM.cif``, so a re-run does not count it as done; on request
(``saveDivergedSamples``) its coordinates go to ``STEM.diverged.npz`` (:func:`write_diverged`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genie.data.atomic import atomic_open
from genie.data.structure_io import PDB_COORD_RANGE, PDB_MAX_RESIDUES, write_ca_structure

log = logging.getLogger("genie.sample")


def with_suffix(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix`` (unlike ``Path.with_suffix``, a dot inside the name is kept)."""
    return stem.with_name(stem.name + suffix)


def fragment_bounds(n: int, fragment_length: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` 0-based half-open residue ranges of the fragments of n residues."""
    if not 1 <= fragment_length <= PDB_MAX_RESIDUES:
        raise ValueError(
            f"fragmentLength must be in 1..{PDB_MAX_RESIDUES} (PDB), got {fragment_length}"
        )
    return [(s, min(s + fragment_length, n)) for s in range(0, n, fragment_length)]


def coordinate_problem(coords: torch.Tensor, *, fmt: str = "auto") -> str | None:
    """Why the backbone ``coords`` ``[n, 3]`` (Å) cannot be written as a valid structure file of
    format ``fmt``, or None when it can: NaN or infinite coordinates (any format), or coordinates
    beyond the PDB columns for ``fmt="pdb"`` (``auto`` writes mmCIF then, which holds any finite
    value)."""
    finite = torch.isfinite(coords).all(dim=-1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        return f"{bad} of {coords.shape[0]} residues have NaN or infinite coordinates"
    low, high = PDB_COORD_RANGE
    if fmt == "pdb" and (float(coords.min()) < low or float(coords.max()) > high):
        return (
            f"coordinates span [{float(coords.min()):.0f}, {float(coords.max()):.0f}] Å, beyond "
            f"the PDB columns [{low}, {high}] of outputFormat pdb (auto or cif would write mmCIF)"
        )
    return None


def write_diverged(
    stem: Path,
    coords: torch.Tensor,
    *,
    reason: str,
    trajectory: Sequence[torch.Tensor] = (),
    frame_timesteps: Sequence[int] = (),
) -> Path:
    """Keep a diverged sample as ``STEM.diverged.npz`` (atomically): ``coords`` ``[n, 3]``
    float32 Å as sampled (NaN included), ``reason`` and, when kept, the trajectory
    (``trajectory`` ``[frames, n, 3]``, ``timesteps``). Not a structure file: a re-run samples
    it again."""
    path = with_suffix(stem, ".diverged.npz")
    arrays = {"coords": coords.float().cpu().numpy(), "reason": np.asarray(reason)}
    if len(trajectory):
        arrays["trajectory"] = torch.stack(list(trajectory)).float().cpu().numpy()
        arrays["timesteps"] = np.asarray(frame_timesteps, dtype=np.int64)
    with atomic_open(path, binary=True) as handle:
        np.savez_compressed(handle, **arrays)
    return path


@dataclass
class WrittenSample:
    """Paths of one sample's files."""

    structure: Path
    fragments: list[Path] = field(default_factory=list)
    trajectory: Path | None = None


def write_sample(
    stem: Path,
    coords: torch.Tensor,
    *,
    fmt: str = "auto",
    fragment_length: int | None = None,
    trajectory: Sequence[torch.Tensor] = (),
    frame_timesteps: Sequence[int] = (),
) -> WrittenSample:
    """Write one backbone.

    Args:
        stem: output path without suffix.
        coords: ``[n, 3]`` Cα coordinates, Å.
        fmt: ``pdb``, ``cif`` or ``auto`` (PDB up to 9,999 residues and within PDB columns).
        fragment_length: also write fragments of this many residues when n exceeds it (None:
            no fragments).
        trajectory: kept frames ``[n, 3]`` each (empty: no trajectory file).
        frame_timesteps: the timestep of each frame.

    Returns:
        the paths written.

    Raises:
        ValueError: a backbone that :func:`coordinate_problem` rejects (nothing is written).
    """
    problem = coordinate_problem(coords, fmt=fmt)
    if problem is not None:
        raise ValueError(f"{stem.name}: not written: {problem}")
    n = int(coords.shape[0])
    stem.parent.mkdir(parents=True, exist_ok=True)
    written_traj = None
    if len(trajectory):
        if len(frame_timesteps) != len(trajectory):
            raise ValueError(f"{len(trajectory)} frames but {len(frame_timesteps)} timesteps")
        written_traj = with_suffix(stem, ".trajectory.npz")
        with atomic_open(written_traj, binary=True) as handle:
            np.savez_compressed(
                handle,
                coords=torch.stack(list(trajectory)).float().numpy(),
                timesteps=np.asarray(frame_timesteps, dtype=np.int64),
            )
    fragments: list[Path] = []
    if fragment_length is not None and n > fragment_length:
        bounds = fragment_bounds(n, fragment_length)
        width = max(3, len(str(len(bounds) - 1)))
        for k, (start, stop) in enumerate(bounds):
            path = write_ca_structure(
                with_suffix(stem, f"_frag{k:0{width}d}.pdb"), coords[start:stop], fmt="auto"
            )
            if path.suffix == ".cif":
                log.warning("%s: coordinates beyond PDB columns; wrote mmCIF", path.name)
            fragments.append(path)
    suffix = ".cif" if fmt == "cif" else ".pdb"
    path = write_ca_structure(with_suffix(stem, suffix), coords, fmt=fmt)
    if path.suffix == ".cif" and fmt == "auto" and n <= PDB_MAX_RESIDUES:
        log.warning(
            "%s: coordinates span [%.0f, %.0f] Å, beyond PDB columns; wrote mmCIF (an "
            "undertrained model often diverges like this)",
            path.name,
            float(coords.min()),
            float(coords.max()),
        )
    return WrittenSample(path, fragments, written_traj)
