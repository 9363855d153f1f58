"""The typed sampling configuration: every key, its default, type and range; the model itself
comes from the checkpoint."""

from __future__ import annotations

import dataclasses
import re

from genie.config.checks import check_paths
from genie.config.fields import (
    COMPILE_MODES,
    MAX_COUNT,
    MAX_LAYERS,
    MAX_RESIDUES,
    MAX_SEED,
    MAX_STEPS,
    NAME_PATTERN,
    NAME_RULE,
    ConfigError,
    check_fields,
    option,
)

# Keys of a sampling config that override the model's training keys of the same name.
SAMPLING_MODEL_KEYS = (
    "triangleChunkSize",
    "axialRowChunkSize",
    "axialColChunkSize",
    "triangleAttentionChunkSize",
    "sparseChunkSize",
    "knnChunkSize",
    "ipaChunkSize",
    "triangleKernel",
)

# One item of sampleLengths: a length (64) or a range start-stop with an optional step (64-256:64).
_LENGTHS_ITEM = re.compile(r"([0-9]{1,30})(?:-([0-9]{1,30})(?::([0-9]{1,30}))?)?")


def _chunk(meaning: str):
    """A model chunk-size key of the sampling config (module comment above its uses)."""
    return option(None, f"{meaning} while sampling (None = the checkpoint's)", min=1,
                  max=MAX_RESIDUES)  # fmt: skip


@dataclasses.dataclass
class SampleConfig:
    """Everything a sampling run needs; the model itself comes from the checkpoint."""

    name: str = option(
        "samples", "run name, used in output file names", pattern=NAME_PATTERN, rule=NAME_RULE
    )
    checkpoint: str = option("", "trained model checkpoint (.ckpt) to sample from")
    outputDirectory: str = option("outputs", "folder for the sampled structures")
    sampleLengths: list[str] = option(
        ["64", "128"],
        "chain lengths: a list (64,128) and/or ranges start-stop:step (64-256:64); every length "
        f"and step ≤ {MAX_RESIDUES}",
    )
    samplesPerLength: int = option(5, "backbones per length", min=1, max=MAX_COUNT)
    batchSize: int = option(4, "backbones sampled together", min=1, max=MAX_COUNT)
    seed: int = option(
        0,
        "base seed; sample i of length L uses a seed derived from (seed, L, i)",
        min=0,
        max=MAX_SEED,
    )
    samplingStrategy: str = option(
        "ddpm",
        "ddpm: Genie's ancestral sampler, every timestep; ddim: DDIM (Song et al. 2021) on the "
        "same model and schedule, strided by skipSteps, stochasticity ddimEta; renoise: x̂0, "
        "then fresh noise to the next visited timestep (salad), strided by skipSteps",
        choices=("ddpm", "ddim", "renoise"),
    )
    skipSteps: int = option(
        0,
        "DDIM/renoise stride s: the model runs at t = T, T−s, T−2s, … ≥ 1, then steps to 0 "
        "(⌈T/s⌉ evaluations; T = 1000: 100-200 fast, 500-700 very fast); 0 = every step; must "
        "be < T; ddpm takes only 0",
        min=0,
        max=MAX_STEPS,
    )
    ddimEta: float = option(
        0.0,
        "DDIM η: 0 deterministic, 1 the DDPM posterior variance; ddpm takes only 0",
        min=0,
        max=1,
    )
    temperature: float = option(
        0.6,
        "γ: multiplies the noise injected at each reverse step, every sampler (Genie default "
        "0.6; no effect with ddim and ddimEta 0; not the model's noiseScale σ)",
        min=0,
    )
    startTimestep: int | None = option(
        None,
        "start the reverse process at this timestep, not T: its first visited one at or below "
        "it, from noise of the real-chain marginal's size (genie.sampling.start); None = T "
        "(Genie)",
        min=1,
        max=MAX_STEPS,
    )
    startSignalShare: float | None = option(
        None,
        "start the reverse process where the real-chain signal is at most this share of each "
        "chain's variance (0-1, per batch; longer chains start closer to T; "
        "genie.sampling.start); None = T, or startTimestep",
        min=0,
        min_exclusive=True,
        max=1,
    )
    recentre: bool = option(
        False,
        "after every reverse step, move each chain's Cα centroid to the origin (the model is "
        "translation-invariant: this stops the drift of x, nothing else)",
    )
    saveTrajectory: bool = option(
        False, "also write the reverse trajectory of each chain (NAME.trajectory.npz)"
    )
    trajectoryEvery: int = option(
        10, "keep every N-th reverse step in the trajectory", min=1, max=MAX_STEPS
    )
    trajectoryMaxLength: int = option(
        2000,
        "longest chain (residues) whose trajectory is saved; longer ones: warn, skip",
        min=3,
        max=MAX_RESIDUES,
    )
    outputFormat: str = option(
        "auto",
        "pdb, cif, or auto (PDB up to 9,999 residues, mmCIF above)",
        choices=("auto", "pdb", "cif"),
    )
    saveFragments: bool = option(
        False,
        "also write chains longer than fragmentLength as consecutive PDB pieces "
        "NAME_frag000.pdb, … (no overlap)",
    )
    fragmentLength: int = option(5000, "residues per fragment file", min=3, max=9999)
    device: str = option("auto", "auto, cpu or cuda", choices=("auto", "cpu", "cuda"))
    compileModel: str = option(
        "auto",
        "torch.compile the model's calls: auto (reduce-overhead = compiled and replayed as CUDA "
        "graphs on CUDA, off on the CPU), off, default, reduce-overhead or max-autotune",
        choices=COMPILE_MODES,
    )
    clearCacheEveryNSteps: int = option(
        0, "torch.cuda.empty_cache() every N reverse steps on CUDA; 0 = never", min=0, max=MAX_COUNT
    )
    knnUpdateFrequency: int = option(
        1,
        "k-NN models: rebuild the neighbour graph every N reverse steps, reuse in between",
        min=1,
        max=MAX_STEPS,
    )
    # Model chunk sizes for sampling (memory only: results equal the unchunked model's up to
    # rounding); each overrides the training key of the same name stored in the checkpoint.
    triangleChunkSize: int | None = _chunk("dense pairs: rows per triangle-op chunk")
    axialRowChunkSize: int | None = _chunk("dense pairs: rows per axial row-attention chunk")
    axialColChunkSize: int | None = _chunk("dense pairs: columns per axial column-attention chunk")
    triangleAttentionChunkSize: int | None = _chunk(
        "factorised pairs: rows per triangle-attention chunk"
    )
    sparseChunkSize: int | None = _chunk(
        "sparse pairs: residues per chunk of the edge operations and local edge attention"
    )
    knnChunkSize: int | None = _chunk("k-NN models: queries per distance block of the search")
    ipaChunkSize: int | None = _chunk("dense IPA: queries per chunk")
    # The kernels of the dense triangle layers (the same parameters, the same results up to
    # rounding), e.g. reference to sample on the CPU from a checkpoint trained with cuequivariance.
    triangleKernel: str | None = option(
        None,
        "dense pairs: triangle-layer kernels while sampling, auto, reference or cuequivariance "
        "(the training key; None = the checkpoint's)",
        choices=("auto", "reference", "cuequivariance"),
    )
    saveDivergedSamples: bool = option(
        False,
        "keep a diverged sample (NaN/inf coordinates, or beyond the PDB columns with outputFormat "
        "pdb) as NAME.diverged.npz; never as a structure file, so a re-run samples it again",
    )
    useSequenceParallelism: bool = option(
        False,
        "torchrun: split each chain by residue over numSequenceShards processes (sparse k-NN and "
        "factorised FlashIPA models predicting ε without self-conditioning or random edges; "
        "the sharded model runs eagerly)",
    )
    numSequenceShards: int = option(
        1, "ranks that share one chain (useSequenceParallelism)", min=1, max=MAX_LAYERS
    )

    def model_overrides(self) -> dict[str, int | str]:
        """The model keys this config sets for sampling (:data:`SAMPLING_MODEL_KEYS`)."""
        return {k: getattr(self, k) for k in SAMPLING_MODEL_KEYS if getattr(self, k) is not None}

    def __post_init__(self) -> None:
        check_fields(self)
        check_paths(outputDirectory=self.outputDirectory)
        if not self.sampleLengths:
            raise ConfigError("sampleLengths is empty: give at least one length, e.g. 64,128")
        for item in self.sampleLengths:
            match = _LENGTHS_ITEM.fullmatch(item)
            start, stop, step = (int(n or 1) for n in match.groups()) if match else (0, 0, 0)
            if not match or max(start, stop, step) > MAX_RESIDUES or step < 1:
                raise ConfigError(
                    f"sampleLengths: cannot read '{item}' (use 64,128 or ranges like 64-256:64 "
                    f"of ASCII digits; lengths at most {MAX_RESIDUES}, steps from 1)"
                )
        if self.samplingStrategy == "ddpm":
            for key, value in (("skipSteps", self.skipSteps), ("ddimEta", self.ddimEta)):
                if value != 0:
                    raise ConfigError(
                        f"{key} = {value} needs samplingStrategy ddim (ddpm visits every "
                        f"timestep and injects Genie's noise); set samplingStrategy ddim or "
                        f"{key} 0"
                    )
        if self.numSequenceShards > 1 and not self.useSequenceParallelism:
            raise ConfigError(
                f"numSequenceShards = {self.numSequenceShards} needs useSequenceParallelism True"
            )
        if self.startTimestep is not None and self.startSignalShare is not None:
            raise ConfigError(
                "startTimestep and startSignalShare both set: give one way to start below T"
            )
        if self.startSignalShare == 1.0:
            raise ConfigError("startSignalShare must be below 1 (1 would start at the last step)")
        if self.samplingStrategy == "renoise" and self.ddimEta != 0:
            raise ConfigError(
                f"ddimEta = {self.ddimEta} needs samplingStrategy ddim (renoise always draws "
                "fresh noise, scaled by temperature); set samplingStrategy ddim or ddimEta 0"
            )
