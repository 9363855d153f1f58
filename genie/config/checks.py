"""Checks of a training config that involve more than one key, and reading configs stored by
earlier versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genie.config.fields import ConfigError

if TYPE_CHECKING:
    from genie.config.schema import GenieConfig


def check_paths(**paths: str) -> None:
    """Path keys (``key=value``) must name something: an empty value (an unset shell variable
    in ``--set dataDirectory=$DATA``, say) is an error, not a silent default."""
    for key, value in paths.items():
        if not value.strip():
            raise ConfigError(f"{key} is empty: give a path")


def check_compatible(cfg: GenieConfig) -> None:
    """Checks that involve more than one key (each message names the keys)."""
    check_paths(logDirectory=cfg.logDirectory, cacheDirectory=cfg.cacheDirectory,
                dataDirectory=cfg.dataDirectory)  # fmt: skip
    sources = [s.strip() for s in cfg.dataDirectory.split(",")]
    if any(not s for s in sources):
        raise ConfigError(
            f"dataDirectory = {cfg.dataDirectory!r} has an empty entry: give comma-separated "
            "folders, files or globs, each non-empty"
        )
    if len(sources) > 1 and "bundled" in (s.lower() for s in sources):
        raise ConfigError(
            f"dataDirectory = {cfg.dataDirectory!r}: 'bundled' (the packaged set) cannot be "
            "combined with other sources; give either bundled or your folders"
        )
    if cfg.minimumNumResidues > cfg.maximumNumResidues:
        raise ConfigError(
            f"minimumNumResidues ({cfg.minimumNumResidues}) is larger than maximumNumResidues "
            f"({cfg.maximumNumResidues})"
        )
    triangle_ops = cfg.includeTriangularMultiplicativeUpdate or cfg.includeTriangularAttention
    if cfg.useFactorizedPairs and triangle_ops and not cfg.useFactorizedTriangleOps:
        raise ConfigError(
            "useFactorizedPairs is True but useFactorizedTriangleOps is False: dense triangle "
            "operations would materialise the n×n pair tensor. Set useFactorizedTriangleOps "
            "True, or includeTriangularMultiplicativeUpdate and includeTriangularAttention False"
        )
    if cfg.useFactorizedTriangleOps and not cfg.useFactorizedPairs:
        raise ConfigError("useFactorizedTriangleOps needs useFactorizedPairs True")
    if cfg.useFlashMode and not (cfg.useFactorizedPairs or cfg.useSparseKNN):
        raise ConfigError(
            "useFlashMode needs useFactorizedPairs True (or useSparseKNN True): FlashIPA takes "
            "its pair bias and pair output from pair factors (zFactorRank, pairFactorDim)"
        )
    if cfg.useSparseKNN:
        if cfg.useFactorizedPairs:
            raise ConfigError(
                "useSparseKNN and useFactorizedPairs are both True: choose one pair "
                "representation (sparse k-NN edges or factors)"
            )
        if not cfg.useFlashMode:
            raise ConfigError(
                "useSparseKNN needs useFlashMode True: the single track attends globally through "
                "FlashIPA, whose factors are pooled from the edges (dense IPA would need n×n pairs)"
            )
    if cfg.useKnnEnvironmentFeatures and not cfg.useFactorizedPairs:
        raise ConfigError(
            "useKnnEnvironmentFeatures is a feature of factorised pairs (useFactorizedPairs "
            "True); sparse pairs (useSparseKNN) see their neighbours through the edges"
        )
    if cfg.useFactorTransitions and not (cfg.useFactorizedPairs or cfg.useSparseKNN):
        raise ConfigError(
            "useFactorTransitions updates pair factors: it needs useFactorizedPairs True or "
            "useSparseKNN True (dense pairs have no factors)"
        )
    if cfg.useAxialAttention and cfg.useFactorizedPairs:
        raise ConfigError(
            "useAxialAttention works on dense pairs or sparse edges (useSparseKNN), not on "
            "factorised pairs (useFactorizedPairs)"
        )
    if cfg.triangleKernel == "cuequivariance":
        check_fused_triangle_kernels(cfg)
    bad = sorted(set(cfg.checkpointModules) - {"pair", "structure"})
    if bad:
        raise ConfigError(
            f"checkpointModules: unknown kind(s) {', '.join(bad)} (allowed: pair, structure)"
        )
    if cfg.useProgressiveTraining:
        if cfg.progressiveStartLength > cfg.progressiveEndLength:
            raise ConfigError(
                f"progressiveStartLength ({cfg.progressiveStartLength}) is larger than "
                f"progressiveEndLength ({cfg.progressiveEndLength})"
            )
        if cfg.progressiveEndLength > cfg.maximumNumResidues:
            raise ConfigError(
                f"progressiveEndLength ({cfg.progressiveEndLength}) exceeds maximumNumResidues "
                f"({cfg.maximumNumResidues}); raise maximumNumResidues or lower the end length"
            )
    has_graph = cfg.useSparseKNN or (
        cfg.useFactorizedPairs
        and (cfg.useFlashMode if cfg.useKnnEnvironmentFeatures is None
             else cfg.useKnnEnvironmentFeatures)
    )  # fmt: skip
    if cfg.selfConditionGraph and not (cfg.selfConditioning and has_graph):
        raise ConfigError(
            "selfConditionGraph builds the k-NN graph from the self-conditioned x̂0: it needs "
            "selfConditioning True and a model with a k-NN graph (useSparseKNN True, or "
            "factorised pairs with useKnnEnvironmentFeatures)"
        )
    if cfg.randomNeighbors and not has_graph:
        raise ConfigError(
            f"randomNeighbors = {cfg.randomNeighbors} adds edges to the k-NN graph, but this "
            "model has none: set useSparseKNN True (or factorised pairs with "
            "useKnnEnvironmentFeatures), or randomNeighbors 0"
        )
    if cfg.useMHCLoss and len(cfg.mhcWeights) < cfg.mhcNumScales:
        raise ConfigError(
            f"mhcWeights has {len(cfg.mhcWeights)} values but mhcNumScales is "
            f"{cfg.mhcNumScales}: give one weight per scale"
        )


def check_fused_triangle_kernels(cfg: GenieConfig) -> None:
    """``triangleKernel cuequivariance`` needs dense triangle layers of sizes the fused kernels
    take (whether the package imports and a GPU is there is checked when the model is built)."""
    key = "triangleKernel cuequivariance"
    if cfg.useFactorizedPairs or cfg.useSparseKNN:
        which = "useFactorizedPairs" if cfg.useFactorizedPairs else "useSparseKNN"
        raise ConfigError(
            f"{key}: the fused kernels serve dense pairs' triangle layers; with {which} True the "
            "pair layers have no dense pair tensor for them (set triangleKernel auto or reference)"
        )
    attention = cfg.includeTriangularAttention or cfg.useAxialAttention
    if cfg.numPairTransformLayers == 0 or not (
        cfg.includeTriangularMultiplicativeUpdate or attention
    ):
        raise ConfigError(
            f"{key}: the model has no triangle multiplicative update, triangle attention or "
            "axial attention for the fused kernels to run (set triangleKernel auto or reference)"
        )
    hidden = cfg.triangularMultiplicativeHiddenDimension
    if cfg.includeTriangularMultiplicativeUpdate and hidden % 32:
        raise ConfigError(
            f"{key}: the fused multiplicative update needs triangularMultiplicativeHiddenDimension "
            f"a multiple of 32, got {hidden}"
        )
    head = cfg.triangularAttentionHiddenDimension
    if attention and (head % 8 or head > 128):
        raise ConfigError(
            f"{key}: the fused attention needs triangularAttentionHiddenDimension a multiple of 8 "
            f"and at most 128, got {head}"
        )


# The diffusion and graph keys of issue 15, with the value that every checkpoint written
# before them was trained with (whatever the defaults of later versions).
_BEFORE_ISSUE_15 = {
    "noiseScale": "unit",
    "predictionTarget": "epsilon",
    "selfConditioning": False,
    "selfConditionGraph": False,
    "randomNeighbors": 0,
}


def upgrade_stored_config(values: dict) -> dict:
    """A config dict stored by an earlier version, in today's meaning (a copy).

    Before ``useDistributed`` existed, ``devices`` > 1 meant Lightning's DDP: such configs get
    ``useDistributed True`` (and ``distributedBackend gloo`` with ``accelerator cpu``).
    Before ``useKnnEnvironmentFeatures`` existed (no such key stored), the k-NN environment
    features of FlashIPA models on factorised pairs searched the coordinate graph whatever
    ``knnStrategy`` said; such checkpoints get ``knnStrategy coordinate``, which no other part
    of a factorised model reads.

    Before ``noiseScale`` and the other keys of :data:`_BEFORE_ISSUE_15` existed, every model was
    trained on Genie's unit noise, predicting ε, without self-conditioning or random edges: a
    stored config without them gets those values.
    """
    values = dict(values)
    if "useDistributed" not in values and values.get("devices", 1) > 1:
        # before the distributed keys existed, devices > 1 trained with Lightning's default
        # strategy (DDP) and the backend that suits the accelerator
        values["useDistributed"] = True
        if values.get("accelerator") == "cpu":
            values["distributedBackend"] = "gloo"
    for key, value in _BEFORE_ISSUE_15.items():
        values.setdefault(key, value)
    legacy = "useKnnEnvironmentFeatures" not in values
    if legacy and values.get("useFlashMode") and values.get("useFactorizedPairs"):
        values["knnStrategy"] = "coordinate"
    return values
