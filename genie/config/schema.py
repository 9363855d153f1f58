"""The typed training configuration: every key, its default, type and range (the sampling
configuration is in :mod:`genie.config.sampling`, the checks across keys in
:mod:`genie.config.checks`).

Key names follow Genie's `.config` files (camelCase) so that a key reads the same in a file, on
the command line (``--set key=value``), in a checkpoint and in code. Genie's own spellings that
differ from ours are accepted through :data:`ALIASES`.
"""

from __future__ import annotations

import dataclasses

from genie.config.checks import check_compatible
from genie.config.distributed import DistributedKeys, check_distributed
from genie.config.fields import (
    COMPILE_MODES,
    MAX_COUNT,
    MAX_ITEMS,
    MAX_LAYERS,
    MAX_RESIDUES,
    MAX_SEED,
    MAX_STEPS,
    NAME_PATTERN,
    NAME_RULE,
    check_fields,
    option,
)
from genie.config.model_keys import ModelKeys

# Genie's spellings (and the seed's) that we accept for our keys, with a one-line notice.
ALIASES: dict[str, str] = {
    "numEpoches": "numEpochs",
    "warmupEpoches": "warmupEpochs",
    "checkpointEveryEpoches": "checkpointEveryEpochs",
    "numStructureLayers": "structureEncoderDepth",
    "ipaNumHeads": "structureEncoderHeads",
}

LOG_SAMPLES_LENGTH = 128  # residues of the training-time picture samples when not set (at most)


@dataclasses.dataclass
class RunKeys:
    """Run, data and diffusion keys (a part of :class:`GenieConfig`)."""

    # --- run and data -------------------------------------------------------------------------
    name: str = option(
        "genie",
        "run name: the run folder is logDirectory/name/version_N",
        pattern=NAME_PATTERN,
        rule=NAME_RULE,
    )
    seed: int = option(
        100, "global seed (data split, crops, noise, initialisation)", min=0, max=MAX_SEED
    )
    logDirectory: str = option("runs", "folder for TensorBoard logs, checkpoints, configs")
    dataDirectory: str = option(
        "bundled",
        "training structures: 'bundled' (the packaged TS50 Cα set), comma-separated folders, "
        "files or globs of PDB/mmCIF files (.gz allowed), or one processed .npz dataset file",
    )
    datasetNames: list[str] = option(
        [], "optional sub-folders of dataDirectory to read (Genie key); empty = the folder itself"
    )
    datasetSize: int | None = option(
        None, "use at most this many training segments (None = all)", min=1, max=MAX_ITEMS
    )
    cacheDirectory: str = option(
        ".genie_cache", "where processed datasets are cached (rebuilt when inputs change)"
    )
    minimumNumResidues: int = option(
        20, "drop segments shorter than this (residues)", min=3, max=MAX_RESIDUES
    )
    maximumNumResidues: int = option(
        256,
        "crop longer segments to a random window of this many residues",
        min=3,
        max=MAX_RESIDUES,
    )
    splitChainBreaks: bool = option(
        True, "split chains at breaks into segments (False: keep them, with a break mask)"
    )
    chainBreakDistance: float = option(
        4.2, "consecutive Cα farther apart than this (Å) mark a chain break", min=3.8
    )
    validationFraction: float = option(
        0.1,
        "fraction of segments held out for validation (whole sequences)",
        min=0.0,
        max=0.5,
        min_exclusive=True,
    )
    validationSize: int | None = option(
        None, "use at most this many validation segments (None = all)", min=1, max=MAX_ITEMS
    )
    concatenateChains: bool = option(
        False,
        "fill items shorter than the crop length with further real segments, joins marked "
        "(breaks, residue-index gap) and pieces kept apart: artificial joins (docs/DATA.md)",
    )
    joinResidueGap: int = option(
        64,
        "residue-index step across a join of concatenated segments (> relativePositionK)",
        min=1,
        max=MAX_RESIDUES,
    )
    joinClearance: float = option(
        5.0, "minimum Cα distance (Å) between concatenated segments", min=0.0
    )
    sampleByCluster: bool = option(
        False,
        "cluster segments by sequence (shared 3-mers, clusterSimilarity), keep whole clusters on "
        "one side of the train/val split, and train on one segment per cluster per epoch",
    )
    clusterSimilarity: float = option(
        0.3,
        "sequence-cluster threshold: chance-corrected fraction of shared 3-mers (0.3 ≈ 67 % "
        "identity, 0.5 ≈ 80 %)",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )
    numWorkers: int = option(2, "data-loader worker processes", min=0, max=MAX_LAYERS)

    # --- diffusion ----------------------------------------------------------------------------
    numTimesteps: int = option(1000, "diffusion steps T", min=2, max=MAX_STEPS)
    schedule: str = option("cosine", "noise schedule", choices=("cosine",))
    lossType: str = option(
        "l2",
        "l2: Genie's per-residue ‖ε̂−ε‖ averaged over residues (‖x̂0−x0‖/σ with predictionTarget "
        "x0); mse: its square",
        choices=("l2", "mse"),
    )
    noiseScale: str = option(
        "unit",
        "σ of the noise x_t = √ᾱ x0 + √(1−ᾱ) σ ε: unit = Genie's σ 1 Å; fixed = noiseSigma; "
        "length = the chain's own Cα standard deviation in training, σ(L) = 1.55·L^0.357 Å (a fit "
        "to real chains) at sampling (docs/QUALITY.md)",
        choices=("unit", "fixed", "length"),
    )
    noiseSigma: float = option(
        10.0, "σ (Å) of noiseScale fixed, in training and sampling", min=0, min_exclusive=True
    )
    predictionTarget: str = option(
        "epsilon",
        "what the structure module's frames predict: epsilon = Genie's ε̂ = x_t − trans(T̂); x0 = "
        "the clean structure, x̂0 = trans(T̂) (loss on x̂0/σ)",
        choices=("epsilon", "x0"),
    )


@dataclasses.dataclass
class TrainingKeys:
    """Training-optimisation and trainer keys (a part of :class:`GenieConfig`)."""

    # --- stage 3: training optimisations ------------------------------------------------------
    useProgressiveTraining: bool = option(
        False, "raise the crop length in stages over the epochs (curriculum)"
    )
    progressiveStartLength: int = option(
        64, "crop length of the first curriculum stage", min=3, max=MAX_RESIDUES
    )
    progressiveEndLength: int = option(
        256, "crop length of the last stage (≤ maximumNumResidues)", min=3, max=MAX_RESIDUES
    )
    progressiveNumStages: int = option(4, "number of curriculum stages", min=1, max=MAX_COUNT)
    useMixedPrecision: bool = option(False, "train under autocast with the given precision")
    precision: str = option(
        "bf16",
        "16 = fp16 with a gradient scaler, bf16, 32 = full fp32 (useMixedPrecision)",
        choices=("16", "bf16", "32"),
    )
    useChunkedLoss: bool = option(
        False, "compute pairwise loss terms in residue chunks (no n×n tensor, also in backward)"
    )
    lossChunkSize: int = option(
        128, "residues per loss chunk (useChunkedLoss)", min=1, max=MAX_RESIDUES
    )
    useMHCLoss: bool = option(
        False,
        "multi-scale hierarchical consistency loss on predicted Cα distances "
        "(not the mHC hyper-connections)",
    )
    mhcNumScales: int = option(
        3, "scales of that loss: 8, 16, 32 Å cut-offs, in that order", min=1, max=3
    )
    mhcWeights: list[float] = option(
        [0.1, 0.1, 0.1], "weight of each scale's distance error (Å) in the total loss", min=0
    )

    # --- optimisation -------------------------------------------------------------------------
    batchSize: int = option(4, "chains per batch (per device)", min=1, max=MAX_COUNT)
    numEpochs: int = option(100, "training epochs", min=1, max=MAX_COUNT)
    maxTrainingMinutes: float | None = option(
        None,
        "stop after the training batch in which this much training time (minutes, counted over "
        "resumes: checkpoints store it) has passed, and save last.ckpt (mid-epoch: a resume "
        "goes on with the next batch); None = numEpochs only",
        min=0,
        min_exclusive=True,
    )
    learningRate: float = option(1e-4, "AdamW learning rate", min=0, min_exclusive=True)
    weightDecay: float = option(0.0, "AdamW weight decay", min=0)
    warmupEpochs: float = option(
        0.0, "linear learning-rate warm-up (epochs, fractions allowed)", min=0
    )
    gradientClipVal: float = option(1.0, "clip the gradient norm to this (0 = off)", min=0)
    logEverySteps: int = option(
        50, "log training scalars every N optimiser steps", min=1, max=MAX_ITEMS
    )
    checkpointEveryEpochs: int = option(
        1,
        "save the best and last checkpoints every N epochs; last.ckpt is also saved whenever "
        "training ends (last epoch, time budget, Ctrl-C)",
        min=1,
        max=MAX_COUNT,
    )
    validateEveryEpochs: int = option(
        1, "run the validation loop every N epochs", min=1, max=MAX_COUNT
    )
    logSamplesEveryEpochs: int = option(
        10,
        "every N epochs sample backbones (DDIM) and log contact maps, Cα traces, evaluation "
        "figures and scalars to TensorBoard (samples/*); 0 = off",
        min=0,
        max=MAX_COUNT,
    )
    logSamplesCount: int = option(
        4, "backbones per round of sample pictures", min=1, max=MAX_LAYERS
    )
    logSamplesLength: int | None = option(
        None,
        f"residues of each picture sample (None = min({LOG_SAMPLES_LENGTH}, maximumNumResidues))",
        min=3,
        max=MAX_RESIDUES,
    )
    logSamplesSkipSteps: int = option(
        20,
        "DDIM stride s of the picture samples: ⌈numTimesteps / s⌉ model calls (T = 1000: 50); "
        "capped at numTimesteps − 1",
        min=1,
        max=MAX_STEPS,
    )
    matmulPrecision: str = option(
        "high",
        "fp32 matrix products: highest = true fp32, high = TF32 tensor cores (GPU), medium = bf16",
        choices=("highest", "high", "medium"),
    )
    compileModel: str = option(
        "auto",
        "torch.compile the model in training steps: auto (default mode on CUDA, off on the "
        "CPU), off, default, reduce-overhead (also CUDA graphs) or max-autotune",
        choices=COMPILE_MODES,
    )
    compileCacheFile: str | None = option(
        None,
        "file of torch.compile's caches: loaded before training when it exists, written when "
        "training ends, so a run resumed on another machine skips most of its compilation; "
        "None = the machine's own caches only",
    )
    accelerator: str = option(
        "auto", "Lightning accelerator", choices=("auto", "cpu", "gpu", "cuda")
    )


@dataclasses.dataclass
class GenieConfig(DistributedKeys, TrainingKeys, ModelKeys, RunKeys):
    """Everything a training run needs: data, model, diffusion, optimisation and processes.

    Its keys are, in this order: :class:`RunKeys`, :class:`~genie.config.model_keys.ModelKeys`,
    :class:`TrainingKeys` and :class:`~genie.config.distributed.DistributedKeys`.
    """

    def __post_init__(self) -> None:
        check_fields(self)
        check_compatible(self)
        check_distributed(self)
