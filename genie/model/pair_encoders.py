"""Pair encoders: single features + noisy trace -> the pair representation the trunk uses.

All map ``(s [b, n, c_s], x [b, n, 3] Å, residue_index [b, n], mask [b, n])`` to
``(s [b, n, c_s], pair)``: the dense one (Genie) returns ``DensePair z [b, n, n, c_p]``, the
factorised one (stages 1-2) ``PairFactors U, V [b, n, r, c_f]``, the sparse one (stages 3 V2, 4;
genie/model/sparse_encoder.py) ``SparsePair`` edges ``[b, n, k, c_p]`` with pooled factors. The
denoiser does not know which.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.factor_features import PairFactorNet
from genie.model.factor_pair_stack import FactorPairStack
from genie.model.features import PairFeatureNet
from genie.model.knn import KnnEnvironmentFeatures
from genie.model.pair_representation import DensePair, PairFactors
from genie.model.pair_stack import PairTransformNet
from genie.model.primitives import pair_mask
from genie.model.sharing import LayerSharing
from genie.model.sparse_encoder import SparsePairEncoder
from genie.model.sparse_features import EdgeFeatureNet, EdgePooling
from genie.model.sparse_pair_stack import SparsePairStack
from genie.utils.checkpointing import LayerCheckpointing


class DensePairEncoder(nn.Module):
    """Genie: dense pair features, then the pair transform stack (chunked at inference)."""

    def __init__(
        self, *, features: PairFeatureNet, stack: PairTransformNet, chunk_size: int | None
    ):
        super().__init__()
        self.features, self.stack, self.chunk_size = features, stack, chunk_size

    def forward(self, s, x, residue_index, mask) -> tuple[torch.Tensor, DensePair]:
        z = self.features(s, x, residue_index, mask)  # [b, n, n, c_p]
        z = self.stack(z, pair_mask(mask), chunk_size=self.chunk_size)
        return s, DensePair(z)


class FactorPairEncoder(nn.Module):
    """Stages 1-2: pair factors built per residue, then the factor stack."""

    def __init__(self, *, features: PairFactorNet, stack: FactorPairStack, chunk_size: int):
        super().__init__()
        self.features, self.stack, self.chunk_size = features, stack, chunk_size

    def forward(self, s, x, residue_index, mask) -> tuple[torch.Tensor, PairFactors]:
        s, factors = self.features(s, x, residue_index, mask)  # [b, n, r, c_f] each
        return s, self.stack(factors, mask, chunk_size=self.chunk_size).masked(mask)


def build_sparse_encoder(
    cfg, *, checkpointing: LayerCheckpointing | None = None
) -> tuple[nn.Module, int]:
    """Stages 3 V2 / 4: edges on the k-NN graph, with factors pooled for FlashIPA."""
    c_p, c_s = cfg.pairFeatureDimension, cfg.singleFeatureDimension
    stack = SparsePairStack(
        n_layers=cfg.numPairTransformLayers,
        n_triangle_layers=cfg.numTriangleLayers,
        triangle_mul=cfg.includeTriangularMultiplicativeUpdate,
        triangle_att=cfg.includeTriangularAttention,
        axial=cfg.useAxialAttention,
        c_p=c_p,
        c_hidden_mul=cfg.triangularMultiplicativeHiddenDimension,
        c_hidden_att=cfg.triangularAttentionHiddenDimension,
        n_heads_att=cfg.triangularAttentionNumHeads,
        dropout=cfg.triangularDropout,
        transition_n=cfg.pairTransitionN,
        checkpointing=checkpointing,
        sharing=LayerSharing.from_config(cfg),
    )
    encoder = SparsePairEncoder(
        features=EdgeFeatureNet(c_s=c_s, c_p=c_p, relpos_k=cfg.relativePositionK),
        stack=stack,
        pooling=EdgePooling(c_s=c_s, c_p=c_p, c_f=cfg.pairFactorDim, rank=cfg.zFactorRank),
        k=cfg.kNeighbors,
        strategy=cfg.knnStrategy,
        knn_chunk_size=cfg.knnChunkSize,
        chunk_size=cfg.sparseChunkSize,
    )
    return encoder, cfg.pairFactorDim


def build_pair_encoder(
    cfg, *, checkpointing: LayerCheckpointing | None = None
) -> tuple[nn.Module, int]:
    """The encoder a config asks for, and the channel count of its pair representation.

    ``checkpointing``: the model's layer-checkpointing policy (default: off); the stack's layers
    share weights as ``useModelCompression`` says."""
    if cfg.useSparseKNN:
        return build_sparse_encoder(cfg, checkpointing=checkpointing)
    if cfg.useFactorizedPairs:
        c_f, rank = cfg.pairFactorDim, cfg.zFactorRank
        knn = None
        if cfg.useFlashMode:
            knn = KnnEnvironmentFeatures(c_out=cfg.singleFeatureDimension, k=cfg.kNeighbors)
        features = PairFactorNet(c_s=cfg.singleFeatureDimension, c_f=c_f, rank=rank, knn=knn)
        stack = FactorPairStack(
            n_layers=cfg.numPairTransformLayers,
            n_triangle_layers=cfg.numTriangleLayers if cfg.useFactorizedTriangleOps else 0,
            triangle_mul=cfg.includeTriangularMultiplicativeUpdate,
            triangle_att=cfg.includeTriangularAttention,
            c_f=c_f,
            rank=rank,
            update_rank=cfg.triangleUpdateRank,
            c_hidden_att=cfg.triangularAttentionHiddenDimension,
            n_heads_att=cfg.triangularAttentionNumHeads,
            transition_n=cfg.pairTransitionN,
            checkpointing=checkpointing,
            sharing=LayerSharing.from_config(cfg),
        )
        return FactorPairEncoder(features=features, stack=stack,
                                 chunk_size=cfg.triangleAttentionChunkSize), c_f  # fmt: skip
    c_p = cfg.pairFeatureDimension
    features = PairFeatureNet(
        c_s=cfg.singleFeatureDimension, c_p=c_p, relpos_k=cfg.relativePositionK,
        template_type=cfg.templateType,
    )  # fmt: skip
    stack = PairTransformNet(
        n_layers=cfg.numPairTransformLayers, c_p=c_p,
        include_mul_update=cfg.includeTriangularMultiplicativeUpdate,
        include_tri_att=cfg.includeTriangularAttention,
        c_hidden_mul=cfg.triangularMultiplicativeHiddenDimension,
        c_hidden_att=cfg.triangularAttentionHiddenDimension,
        n_heads_att=cfg.triangularAttentionNumHeads, dropout=cfg.triangularDropout,
        transition_n=cfg.pairTransitionN, include_axial=cfg.useAxialAttention,
        axial_row_chunk_size=cfg.axialRowChunkSize, axial_col_chunk_size=cfg.axialColChunkSize,
        checkpointing=checkpointing, sharing=LayerSharing.from_config(cfg),
    )  # fmt: skip
    return DensePairEncoder(features=features, stack=stack, chunk_size=cfg.triangleChunkSize), c_p
