"""The model builder: with :mod:`genie.model.build_structure` (the structure stack), the one
place of :mod:`genie.model` that reads the config.

Every model toggle of :class:`~genie.config.GenieConfig` is interpreted here, once, and turned
into keyword arguments of the parts; the parts never see the config. ``docs/ARCHITECTURE.md``
lists every key with the function below that reads it.

    s       = SingleFeatureNet(residue index, t)                    _single_features
    encoder = Dense | Factor | Sparse PairEncoder                  _pair_encoder
              (features, PairStack of that representation's layers)
    attn    = IPA | FlashIPA | FlashIPA + local edge attention      build_structure._attention
    trunk   = StructureNet(structure layers around attn, mHC)       build_structure.structure_net

One layer-checkpointing policy and one weight-sharing rule serve every stack of a model.
Parts are constructed in a fixed order (single features, pair encoder, structure), so a seed
gives the same initial weights as in every earlier version of this builder.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
from torch import nn

from genie.config import ConfigError, GenieConfig
from genie.diffusion.noise_scale import NoiseScale
from genie.diffusion.parametrisation import Parametrisation
from genie.diffusion.schedule import DiffusionSchedule
from genie.model.build_structure import structure_net
from genie.model.denoiser import GenieDenoiser
from genie.model.dense.encoder import DensePairEncoder
from genie.model.dense.features import PairFeatureNet
from genie.model.dense.fused_kernels import (
    CUEQ_EXTRA_HINT,
    FusedTriangleKernels,
    cuequivariance_unavailable,
)
from genie.model.dense.layer import PairTransformLayer
from genie.model.encoder import GraphOptions, PairEncoder
from genie.model.factor.encoder import FactorPairEncoder
from genie.model.factor.environment import KnnEnvironmentFeatures
from genie.model.factor.features import PairFactorNet
from genie.model.factor.layer import FactorPairLayer
from genie.model.layers.single_features import SingleFeatureNet
from genie.model.memory import ModelSizes
from genie.model.self_condition import (
    DenseSelfCondition,
    EdgeSelfCondition,
    LocalSelfCondition,
)
from genie.model.sharing import LayerSharing
from genie.model.sparse.encoder import SparsePairEncoder
from genie.model.sparse.features import EdgeFeatureNet, EdgePooling
from genie.model.sparse.layer import SparsePairLayer
from genie.model.stack import PairStack
from genie.utils.checkpointing import (
    AdaptiveCheckpointing,
    LayerCheckpointing,
    SelectiveCheckpointing,
    UniformCheckpointing,
)

log = logging.getLogger(__name__)


def build_schedule(cfg: GenieConfig) -> DiffusionSchedule:
    """The diffusion schedule the denoiser is trained and sampled with (``numTimesteps``,
    ``schedule``: cosine, the only one)."""
    return DiffusionSchedule(num_timesteps=cfg.numTimesteps, kind=cfg.schedule)


def build_parametrisation(cfg: GenieConfig) -> Parametrisation:
    """What the denoiser's output means and the noise scale it is trained and sampled with
    (``noiseScale``, ``noiseSigma``, ``predictionTarget``)."""
    return Parametrisation(
        noise=NoiseScale(kind=cfg.noiseScale, sigma=cfg.noiseSigma), target=cfg.predictionTarget
    )


def build_denoiser(cfg: GenieConfig, *, announce: bool = True) -> GenieDenoiser:
    """The denoiser a config describes; its parameter count is logged unless ``announce`` is
    False (models built only to be measured, e.g. on the meta device)."""
    single = _single_features(cfg)
    checkpointing = layer_checkpointing(cfg)  # one policy for every stack
    sharing = layer_sharing(cfg)
    pair_encoder, c_pair = _pair_encoder(cfg, checkpointing, sharing)
    structure = structure_net(cfg, c_pair, checkpointing, sharing)
    model = GenieDenoiser(single_features=single, pair_encoder=pair_encoder, structure=structure)
    if announce:
        log.info("model: %s distinct trainable parameters", f"{model.num_parameters():,}")
    return model


def model_sizes(cfg: GenieConfig) -> ModelSizes:
    """The sizes the memory estimate (:mod:`genie.model.memory`) needs, with the parameter count
    of the model built on the ``meta`` device (no memory is allocated)."""
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_denoiser(cfg, announce=False).parameters())
    representation = (
        "sparse" if cfg.useSparseKNN else "factor" if cfg.useFactorizedPairs else "dense"
    )
    return ModelSizes(
        representation=representation, parameters=parameters, c_s=cfg.singleFeatureDimension,
        c_p=cfg.pairFeatureDimension, c_hidden_mul=cfg.triangularMultiplicativeHiddenDimension,
        pair_layers=cfg.numPairTransformLayers, ipa_heads=cfg.structureEncoderHeads,
        triangle_layers=_triangle_layer_count(cfg),
        structure_layers=cfg.structureEncoderDepth * cfg.numStructureBlocks,
        streams=cfg.mhcExpansionRate if cfg.useMHCMode else 1,
        ipa_chunk=cfg.ipaChunkSize, dense_ipa=not cfg.useFlashMode, rank=cfg.zFactorRank,
        c_f=cfg.pairFactorDim, k=cfg.kNeighbors + cfg.randomNeighbors,
        sparse_chunk=cfg.sparseChunkSize,
    )  # fmt: skip


# --- toggles that other keys switch on by default ------------------------------------------------


def uses_knn_environment_features(cfg: GenieConfig) -> bool:
    """``useKnnEnvironmentFeatures`` (None: on for FlashIPA models on factorised pairs)."""
    if cfg.useKnnEnvironmentFeatures is None:
        return cfg.useFlashMode and cfg.useFactorizedPairs
    return cfg.useKnnEnvironmentFeatures


# --- shared policies ---------------------------------------------------------------------------


def layer_checkpointing(cfg: GenieConfig) -> LayerCheckpointing:
    """``useGradientCheckpointing``, ``checkpointingStrategy``, ``checkpointEveryNLayers``,
    ``checkpointModules``, ``adaptiveCheckpointFraction``."""
    if not cfg.useGradientCheckpointing:
        return LayerCheckpointing()
    strategy = cfg.checkpointingStrategy
    if strategy == "uniform":
        return UniformCheckpointing(every=cfg.checkpointEveryNLayers)
    if strategy == "selective":
        return SelectiveCheckpointing(kinds=cfg.checkpointModules)
    return AdaptiveCheckpointing(fraction=cfg.adaptiveCheckpointFraction)


def layer_sharing(cfg: GenieConfig) -> LayerSharing:
    """``useModelCompression``, ``compressionStrategy``, ``compressionRatio``."""
    if not cfg.useModelCompression:
        return LayerSharing()
    return LayerSharing(strategy=cfg.compressionStrategy, ratio=cfg.compressionRatio)


# --- single features and pair encoders ---------------------------------------------------------


def _single_features(cfg: GenieConfig) -> SingleFeatureNet:
    return SingleFeatureNet(
        c_s=cfg.singleFeatureDimension,
        c_pos_emb=cfg.positionalEmbeddingDimension,
        c_timestep_emb=cfg.timestepEmbeddingDimension,
    )


def _pair_encoder(
    cfg: GenieConfig, checkpointing: LayerCheckpointing, sharing: LayerSharing
) -> tuple[PairEncoder, int]:
    """The encoder of the pair representation (``useSparseKNN``, ``useFactorizedPairs``, else
    dense) and the channel count of the pairs the structure stack reads."""
    if cfg.useSparseKNN:
        return _sparse_encoder(cfg, checkpointing, sharing), cfg.pairFactorDim
    if cfg.useFactorizedPairs:
        return _factor_encoder(cfg, checkpointing, sharing), cfg.pairFactorDim
    return _dense_encoder(cfg, checkpointing, sharing), cfg.pairFeatureDimension


def _graph_options(cfg: GenieConfig) -> GraphOptions:
    """The k-NN graph of the encoders that have one (``kNeighbors``, ``knnStrategy``,
    ``knnChunkSize``, ``randomNeighbors``, ``selfConditionGraph``)."""
    return GraphOptions(k=cfg.kNeighbors, strategy=cfg.knnStrategy, chunk_size=cfg.knnChunkSize,
                        random=cfg.randomNeighbors,
                        from_self_condition=cfg.selfConditionGraph)  # fmt: skip


def _self_condition(cfg: GenieConfig, make: Callable[[], nn.Module]) -> nn.Module | None:
    """The self-conditioning features of an encoder (``selfConditioning``), or None. They draw
    no random numbers, so every other weight is the one the same seed gives without them."""
    return make() if cfg.selfConditioning else None


def _triangle_ops(cfg: GenieConfig) -> tuple[bool, bool]:
    """``includeTriangularMultiplicativeUpdate``, ``includeTriangularAttention``."""
    return cfg.includeTriangularMultiplicativeUpdate, cfg.includeTriangularAttention


def triangle_kernels(cfg: GenieConfig) -> FusedTriangleKernels | None:
    """``triangleKernel``: cuEquivariance's fused kernels for the dense triangle and axial layers
    (:mod:`genie.model.dense.fused_kernels`), or None for ours. ``auto`` takes them where they
    can run on this machine (CUDA and the package); ``cuequivariance`` without them is a
    :class:`~genie.config.ConfigError` (the sizes they need were checked with the config).
    Factorised and sparse pairs have no layer they serve."""
    if cfg.triangleKernel == "reference" or cfg.useFactorizedPairs or cfg.useSparseKNN:
        return None
    why = cuequivariance_unavailable()
    if cfg.triangleKernel == "auto":
        return None if why else FusedTriangleKernels(required=False)
    if why:
        raise ConfigError(
            f"triangleKernel cuequivariance: {why}. Set triangleKernel auto (the fused kernels "
            f"where they can run, ours elsewhere) or reference; to install them: {CUEQ_EXTRA_HINT}"
        )
    return FusedTriangleKernels(required=True)


def _triangle_layer_count(cfg: GenieConfig) -> int:
    """Pair layers that carry the triangle operations: every layer of a dense stack, the first
    ``numTriangleLayers`` of a sparse one or of a factorised one with
    ``useFactorizedTriangleOps``; none without triangle operations."""
    mul, att = _triangle_ops(cfg)
    n_layers = cfg.numPairTransformLayers
    if not (mul or att) or (cfg.useFactorizedPairs and not cfg.useFactorizedTriangleOps):
        return 0
    if cfg.useSparseKNN or cfg.useFactorizedPairs:
        return min(cfg.numTriangleLayers, n_layers)
    return n_layers


def _pair_stack(
    make_layer: Callable[[bool], nn.Module],
    *,
    n_layers: int,
    n_triangle_layers: int,
    checkpointing: LayerCheckpointing,
    sharing: LayerSharing,
) -> PairStack:
    """``n_layers`` layers, the first ``n_triangle_layers`` of them built with their triangle
    operations."""
    layers = sharing.triangle_layers(
        make_layer, n_layers=n_layers, n_triangle_layers=n_triangle_layers
    )
    return PairStack(layers=layers, checkpointing=checkpointing)


def _dense_encoder(
    cfg: GenieConfig, checkpointing: LayerCheckpointing, sharing: LayerSharing
) -> DensePairEncoder:
    """Genie's pairs: every layer carries the triangle operations (``numTriangleLayers`` is a
    key of the factorised and sparse stacks)."""
    c_p = cfg.pairFeatureDimension
    mul, att = _triangle_ops(cfg)
    kernels = triangle_kernels(cfg)
    features = PairFeatureNet(
        c_s=cfg.singleFeatureDimension, c_p=c_p, relpos_k=cfg.relativePositionK,
        template_type=cfg.templateType,
    )  # fmt: skip

    def make_layer(with_triangles: bool) -> PairTransformLayer:
        return PairTransformLayer(
            c_p=c_p, triangle_mul=mul and with_triangles, triangle_att=att and with_triangles,
            c_hidden_mul=cfg.triangularMultiplicativeHiddenDimension,
            c_hidden_att=cfg.triangularAttentionHiddenDimension,
            n_heads_att=cfg.triangularAttentionNumHeads, dropout=cfg.triangularDropout,
            transition_n=cfg.pairTransitionN, chunk_size=cfg.triangleChunkSize,
            axial=cfg.useAxialAttention, axial_row_chunk_size=cfg.axialRowChunkSize,
            axial_col_chunk_size=cfg.axialColChunkSize, kernels=kernels,
        )  # fmt: skip

    n_layers = cfg.numPairTransformLayers
    stack = _pair_stack(make_layer, n_layers=n_layers, n_triangle_layers=_triangle_layer_count(cfg),
                        checkpointing=checkpointing, sharing=sharing)  # fmt: skip
    sc = _self_condition(cfg, lambda: DenseSelfCondition(c_p))
    return DensePairEncoder(features=features, stack=stack, self_condition=sc)


def _factor_encoder(
    cfg: GenieConfig, checkpointing: LayerCheckpointing, sharing: LayerSharing
) -> FactorPairEncoder:
    """Stages 1-2: factors, optional k-NN environment features, the factor stack whose first
    ``numTriangleLayers`` layers carry the triangle ops (``useFactorizedTriangleOps``)."""
    c_f, rank = cfg.pairFactorDim, cfg.zFactorRank
    mul, att = _triangle_ops(cfg)
    knn = None
    if uses_knn_environment_features(cfg):
        knn = KnnEnvironmentFeatures(c_out=cfg.singleFeatureDimension)
    features = PairFactorNet(c_s=cfg.singleFeatureDimension, c_f=c_f, rank=rank, knn=knn)

    def make_layer(with_triangles: bool) -> FactorPairLayer:
        return FactorPairLayer(
            c_f=c_f, rank=rank, triangle_mul=mul and with_triangles,
            triangle_att=att and with_triangles, update_rank=cfg.triangleUpdateRank,
            c_hidden_att=cfg.triangularAttentionHiddenDimension,
            n_heads_att=cfg.triangularAttentionNumHeads,
            attention_chunk_size=cfg.triangleAttentionChunkSize, transition_n=cfg.pairTransitionN,
        )  # fmt: skip

    stack = _pair_stack(make_layer, n_layers=cfg.numPairTransformLayers,
                        n_triangle_layers=_triangle_layer_count(cfg), checkpointing=checkpointing,
                        sharing=sharing)  # fmt: skip
    graph = _graph_options(cfg) if knn is not None else None
    sc = _self_condition(cfg, lambda: LocalSelfCondition(cfg.singleFeatureDimension))
    return FactorPairEncoder(features=features, stack=stack, graph=graph, self_condition=sc)


def _sparse_encoder(
    cfg: GenieConfig, checkpointing: LayerCheckpointing, sharing: LayerSharing
) -> SparsePairEncoder:
    """Stages 3 V2 / 4: edges on the k-NN graph, with factors pooled for FlashIPA. The stack is
    built before the edge features (the construction order of the weights)."""
    c_p, c_s = cfg.pairFeatureDimension, cfg.singleFeatureDimension
    mul, att = _triangle_ops(cfg)

    def make_layer(with_triangles: bool) -> SparsePairLayer:
        return SparsePairLayer(
            c_p=c_p, triangle_mul=mul and with_triangles, triangle_att=att and with_triangles,
            axial=cfg.useAxialAttention, c_hidden_mul=cfg.triangularMultiplicativeHiddenDimension,
            c_hidden_att=cfg.triangularAttentionHiddenDimension,
            n_heads_att=cfg.triangularAttentionNumHeads, dropout=cfg.triangularDropout,
            transition_n=cfg.pairTransitionN, chunk_size=cfg.sparseChunkSize,
        )  # fmt: skip

    stack = _pair_stack(make_layer, n_layers=cfg.numPairTransformLayers,
                        n_triangle_layers=_triangle_layer_count(cfg),
                        checkpointing=checkpointing, sharing=sharing)  # fmt: skip
    return SparsePairEncoder(
        features=EdgeFeatureNet(c_s=c_s, c_p=c_p, relpos_k=cfg.relativePositionK),
        stack=stack,
        pooling=EdgePooling(c_s=c_s, c_p=c_p, c_f=cfg.pairFactorDim, rank=cfg.zFactorRank),
        graph=_graph_options(cfg),
        self_condition=_self_condition(cfg, lambda: EdgeSelfCondition(c_p)),
    )


# --- a named model -------------------------------------------------------------------------------


class mHCFlashDenoiser(GenieDenoiser):  # noqa: N801 - the name users import
    """The Genie denoiser with FlashIPA and mHC hyper-connections both on.

        from genie.model import mHCFlashDenoiser
        model = mHCFlashDenoiser()                                 # defaults of GenieConfig
        model = mHCFlashDenoiser(load_config("configs/train_mhc_flash.config"))
        model = mHCFlashDenoiser(mhcExpansionRate=2, zFactorRank=1)  # any config key

    It is :func:`build_denoiser` of the config with ``useFactorizedPairs``, ``useFlashMode`` and
    ``useMHCMode`` forced on (the two toggles stay independent in configs) and, unless given,
    ``includeTriangularMultiplicativeUpdate`` off; factorised triangle operations are switched on
    whenever triangle updates are asked for.
    """

    def __init__(self, config: GenieConfig | None = None, **overrides):
        """
        Args:
            config: a training config (its other keys are kept); None = all defaults.
            overrides: config keys to change, e.g. ``mhcExpansionRate=2``.
        """
        changes = dict(
            useFactorizedPairs=True,
            useFlashMode=True,
            useMHCMode=True,
            includeTriangularMultiplicativeUpdate=overrides.pop(
                "includeTriangularMultiplicativeUpdate", False
            ),
            **overrides,
        )
        if changes["includeTriangularMultiplicativeUpdate"]:
            changes.setdefault("useFactorizedTriangleOps", True)
        cfg = dataclasses.replace(config or GenieConfig(), **changes)  # re-validated
        built = build_denoiser(cfg)
        super().__init__(
            single_features=built.single_features,
            pair_encoder=built.pair_encoder,
            structure=built.structure,
        )
        self.config = cfg
