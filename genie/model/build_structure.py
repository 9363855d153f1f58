"""The model builder's structure stack (:mod:`genie.model.build` builds the rest, and calls
:func:`structure_net`): the structure layers' attention and the trunk around it, from the config.

    attn  = IPA | FlashIPA | FlashIPA + local edge attention      _attention
    trunk = StructureNet(structure layers around attn, mHC)       structure_net
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from genie.config import GenieConfig
from genie.model.layers.transition import Transition
from genie.model.protocols import StructureAttention
from genie.model.sharing import LayerSharing
from genie.model.structure.flash_ipa import FlashIPA
from genie.model.structure.hyper_connections import HyperConnectionOptions
from genie.model.structure.hyper_layer import HyperStructureLayer
from genie.model.structure.ipa import InvariantPointAttention
from genie.model.structure.layer import StructureLayer
from genie.model.structure.local_attention import LocalEdgeAttention, SparseFlashIPA
from genie.model.structure.stack import StructureNet
from genie.utils.checkpointing import LayerCheckpointing


def uses_factor_transitions(cfg: GenieConfig) -> bool:
    """``useFactorTransitions`` (None: on for FlashIPA models)."""
    if cfg.useFactorTransitions is None:
        return cfg.useFlashMode
    return cfg.useFactorTransitions


def _attention(cfg: GenieConfig, c_pair: int) -> Callable[[], StructureAttention]:
    """A function that builds one structure layer's attention: FlashIPA over the pair factors
    (``useFlashMode``; with ``useSparseKNN`` over factors pooled from the edges, plus the local
    edge attention of ``useLocalEdgeBias``), or dense IPA over dense or factorised pairs
    (``ipaChunkSize``)."""
    sizes = dict(
        c_s=cfg.singleFeatureDimension,
        c_hidden=cfg.ipaHiddenDimension,
        n_heads=cfg.structureEncoderHeads,
        n_qk_points=cfg.ipaNumQkPoints,
        n_v_points=cfg.ipaNumVPoints,
    )
    if not cfg.useFlashMode:
        return lambda: InvariantPointAttention(c_p=c_pair, chunk_size=cfg.ipaChunkSize, **sizes)

    def flash() -> FlashIPA:
        return FlashIPA(
            c_f=c_pair, rank=cfg.zFactorRank, qk_dtype=cfg.flashQKDtype,
            backend=cfg.flashBackend, use_fa3=cfg.useFlashAttn3, **sizes,
        )  # fmt: skip

    if not cfg.useSparseKNN:
        return flash

    def sparse() -> SparseFlashIPA:
        local = None  # built before FlashIPA (the construction order of the weights)
        if cfg.useLocalEdgeBias:
            local = LocalEdgeAttention(
                c_s=sizes["c_s"], c_p=cfg.pairFeatureDimension, c_hidden=sizes["c_hidden"],
                n_heads=sizes["n_heads"],
                spatial_range=cfg.spatialBiasRange if cfg.useSpatialBias else None,
            )  # fmt: skip
        return SparseFlashIPA(flash=flash(), local=local, chunk_size=cfg.sparseChunkSize)

    return sparse


def structure_net(
    cfg: GenieConfig, c_pair: int, checkpointing: LayerCheckpointing, sharing: LayerSharing
) -> StructureNet:
    """``structureEncoderDepth`` layers (mHC hyper-connections with ``useMHCMode``), applied
    ``numStructureBlocks`` times, with factor transitions between them
    (``useFactorTransitions``); the transitions share weights with the layers' grouping."""
    n_layers = cfg.structureEncoderDepth
    transitions = None
    if uses_factor_transitions(cfg):
        transitions = sharing.layers(
            lambda i: Transition(c=c_pair, expansion=cfg.pairTransitionN), n_layers - 1
        )
    make_attention = _attention(cfg, c_pair)
    layer_sizes = dict(
        c_s=cfg.singleFeatureDimension,
        ipa_dropout=cfg.ipaDropout,
        n_transition_layers=cfg.numStructureTransitionLayers,
        transition_dropout=cfg.structureTransitionDropout,
    )
    hyper = None
    if cfg.useMHCMode:
        hyper = HyperConnectionOptions(expansion_rate=cfg.mhcExpansionRate,
                                       sinkhorn_iters=cfg.mhcSinkhornIters,
                                       alpha_init=cfg.mhcAlphaInit)  # fmt: skip

        def make_layer(i: int) -> nn.Module:
            return HyperStructureLayer(ipa=make_attention(), hyper=hyper, layer_index=i,
                                       **layer_sizes)  # fmt: skip
    else:

        def make_layer(i: int) -> nn.Module:
            return StructureLayer(ipa=make_attention(), **layer_sizes)

    return StructureNet(
        layers=sharing.layers(make_layer, n_layers),
        c_p=c_pair,
        n_blocks=cfg.numStructureBlocks,
        expansion_rate=hyper.expansion_rate if hyper else None,
        factor_transitions=transitions,
        checkpointing=checkpointing,
    )
