"""The samples a sampling config asks for: lengths (``sampleLengths``), one
:class:`SampleJob` per backbone with its seed from (seed, L, i) and its output stem."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genie.config import ConfigError, SampleConfig
from genie.data.structure_io import PDB_MAX_RESIDUES
from genie.sampling.chains import sample_seed
from genie.sampling.writer import with_suffix


@dataclass(frozen=True)
class SampleJob:
    """One backbone to sample: its length, index within its length, seed and output stem."""

    length: int
    index: int
    seed: int
    stem: Path  # output path without suffix

    def done(self) -> bool:
        """Whether the structure file (written last) exists: the sample is complete."""
        return any(with_suffix(self.stem, s).exists() for s in (".pdb", ".cif"))

    def remove_files(self) -> None:
        """Delete this sample's structure, fragment, trajectory and diverged files."""
        for suffix in (".pdb", ".cif", ".trajectory.npz", ".diverged.npz"):
            with_suffix(self.stem, suffix).unlink(missing_ok=True)
        for fragment in self.stem.parent.glob(f"{self.stem.name}_frag*"):
            fragment.unlink(missing_ok=True)


def parse_lengths(items: Sequence[str]) -> list[int]:
    """``["64", "100-200:50"]`` -> ``[64, 100, 150, 200]`` (ranges include both ends)."""
    lengths: list[int] = []
    for item in items:
        try:
            if "-" in item:
                span, _, step = item.partition(":")
                start, stop = (int(v) for v in span.split("-", 1))
                lengths.extend(range(start, stop + 1, int(step) if step else 1))
            else:
                lengths.append(int(item))
        except ValueError:
            raise ConfigError(
                f"sampleLengths: cannot read '{item}' (use 64,128 or ranges like 64-256:64)"
            ) from None
    bad = [n for n in lengths if n < 3]
    if bad or not lengths:
        raise ConfigError(f"sampleLengths: every length must be at least 3, got {bad or lengths}")
    return lengths


def plan_jobs(cfg: SampleConfig) -> list[SampleJob]:
    """Every sample the config asks for, in config order; checks that the format can hold them.

    Raises:
        ConfigError: ``outputFormat pdb`` with a length above 9,999 residues.
    """
    lengths = parse_lengths(cfg.sampleLengths)
    if cfg.outputFormat == "pdb" and max(lengths) > PDB_MAX_RESIDUES:
        raise ConfigError(
            f"outputFormat pdb holds at most {PDB_MAX_RESIDUES} residues but sampleLengths has "
            f"{max(lengths)}: use outputFormat auto (mmCIF above {PDB_MAX_RESIDUES}) or cif, "
            "and saveFragments True for PDB pieces"
        )
    out = Path(cfg.outputDirectory)
    return [
        SampleJob(
            length, i, sample_seed(cfg.seed, length, i), out / f"{cfg.name}_L{length}_{i:04d}"
        )
        for length in lengths
        for i in range(cfg.samplesPerLength)
    ]
