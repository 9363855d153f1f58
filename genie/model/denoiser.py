"""The Genie denoiser: noisy Cα trace and timestep -> predicted noise (Lin & AlQuraishi 2023).

    s       = SingleFeatureNet(residue index, t)         [b, n, c_s]
    s, pair = PairEncoder(s, x_t)    dense z [b, n, n, c_p] or factors U, V [b, n, r, c_f]
    T̂       = StructureNet(s, pair, FrenetSerret(x_t))    [b, n] frames, Å
    ε̂       = x_t − trans(T̂)                            [b, n, 3]

ε̂ rotates with x_t and ignores global translations (frames are equivariant, every feature is
invariant). Coordinates are centred per chain before the frames are built (exact, since IPA is
translation-invariant, and it keeps the expanded point distances small).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from genie.geometry.frames import frenet_serret_frames
from genie.model.features import SingleFeatureNet
from genie.model.flash_ipa import FlashIPA
from genie.model.ipa import InvariantPointAttention
from genie.model.pair_encoders import build_pair_encoder
from genie.model.sharing import LayerSharing
from genie.model.sparse_attention import LocalEdgeAttention, SparseFlashIPA
from genie.model.structure_stack import StructureNet
from genie.utils.checkpointing import layer_checkpointing

log = logging.getLogger(__name__)


class GenieDenoiser(nn.Module):
    """Assembles the three stages; see :func:`build_denoiser` for the configured parts."""

    def __init__(
        self,
        *,
        single_features: SingleFeatureNet,
        pair_encoder: nn.Module,
        structure: StructureNet,
        ipa_chunk_size: int | None = None,
    ):
        super().__init__()
        self.single_features = single_features
        self.pair_encoder = pair_encoder
        self.structure = structure
        self.ipa_chunk_size = ipa_chunk_size
        log.info("GenieDenoiser: %s parameters", f"{self.num_parameters():,}")

    @property
    def triangle_chunk_size(self) -> int | None:
        """Row chunk of the pair stack's triangle operations."""
        return self.pair_encoder.chunk_size

    @triangle_chunk_size.setter
    def triangle_chunk_size(self, value: int | None) -> None:
        self.pair_encoder.chunk_size = value

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (shared tensors counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def uses_graph(self) -> bool:
        """Whether the pair encoder works on a k-NN graph (sparse pairs) that a sampler may
        build once and reuse for several steps."""
        return hasattr(self.pair_encoder, "build_graph")

    def build_graph(self, coords: torch.Tensor, mask: torch.Tensor):
        """The k-NN graph the model would build for ``coords [b, n, 3]`` Å, ``mask [b, n]``, to
        pass as ``graph=`` to later calls; None for models without a graph."""
        if not self.uses_graph:
            return None
        return self.pair_encoder.build_graph(coords, mask.bool())

    def forward(
        self,
        coords: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        *,
        graph=None,
    ) -> torch.Tensor:
        """
        Args:
            coords: ``[b, n, 3]`` noisy Cα coordinates x_t, Å.
            timesteps: ``[b]`` diffusion step t of each chain (1..T).
            mask: ``[b, n]`` 1 for real residues (a prefix of each row, at least 3).
            residue_index: ``[b, n]`` residue positions (default 0..n-1).
            graph: a k-NN graph from :meth:`build_graph` (sparse models; default: built from
                coords). Graphs do not depend on translations, so centring does not change them.

        Returns:
            ``[b, n, 3]`` predicted noise ε̂ (zero at padding).
        """
        b, n, _ = coords.shape
        mask = mask.to(coords.dtype)
        if residue_index is None:
            residue_index = torch.arange(n, device=coords.device).expand(b, n)
        centre = (coords * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]
        x = (coords - centre) * mask[..., None]  # [b, n, 3], centred

        s = self.single_features(residue_index, timesteps, mask)  # [b, n, c_s]
        if self.uses_graph:
            s, pair = self.pair_encoder(s, x, residue_index, mask.bool(), graph=graph)
        else:
            s, pair = self.pair_encoder(s, x, residue_index, mask)
        frames = frenet_serret_frames(x, mask)
        frames = self.structure(s, pair, frames, mask, chunk_size=self.ipa_chunk_size)
        return (x - frames.trans) * mask[..., None]


def attention_factory(cfg, c_pair: int):
    """A function that builds one structure layer's attention module: FlashIPA over the pair
    factors (``useFlashMode``; with ``useSparseKNN`` over factors pooled from the edges, plus the
    local edge attention), or dense IPA over dense or factorised pairs."""
    sizes = dict(
        c_s=cfg.singleFeatureDimension,
        c_hidden=cfg.ipaHiddenDimension,
        n_heads=cfg.structureEncoderHeads,
        n_qk_points=cfg.ipaNumQkPoints,
        n_v_points=cfg.ipaNumVPoints,
    )
    if cfg.useFlashMode:

        def flash():
            return FlashIPA(
                c_f=c_pair, rank=cfg.zFactorRank, qk_dtype=cfg.flashQKDtype,
                backend=cfg.flashBackend, use_fa3=cfg.useFlashAttn3, **sizes,
            )  # fmt: skip

        if not cfg.useSparseKNN:
            return flash

        def sparse():
            local = None
            if cfg.useLocalEdgeBias:
                local = LocalEdgeAttention(
                    c_s=sizes["c_s"], c_p=cfg.pairFeatureDimension, c_hidden=sizes["c_hidden"],
                    n_heads=sizes["n_heads"],
                    spatial_range=cfg.spatialBiasRange if cfg.useSpatialBias else None,
                )  # fmt: skip
            return SparseFlashIPA(flash=flash(), local=local, chunk_size=cfg.sparseChunkSize)

        return sparse
    return lambda: InvariantPointAttention(c_p=c_pair, **sizes)


def denoiser_parts(cfg) -> dict:
    """The keyword arguments of :class:`GenieDenoiser` for a config."""
    single = SingleFeatureNet(
        c_s=cfg.singleFeatureDimension,
        c_pos_emb=cfg.positionalEmbeddingDimension,
        c_timestep_emb=cfg.timestepEmbeddingDimension,
    )
    checkpointing = layer_checkpointing(cfg)  # one policy for every stack
    pair_encoder, c_pair = build_pair_encoder(cfg, checkpointing=checkpointing)
    mhc = None
    if cfg.useMHCMode:
        mhc = dict(expansion_rate=cfg.mhcExpansionRate, sinkhorn_iters=cfg.mhcSinkhornIters,
                   alpha_init=cfg.mhcAlphaInit)  # fmt: skip
    structure = StructureNet(
        c_p=c_pair,
        n_layers=cfg.structureEncoderDepth,
        n_blocks=cfg.numStructureBlocks,
        make_ipa=attention_factory(cfg, c_pair),
        mhc=mhc,
        factor_transition_n=cfg.pairTransitionN if cfg.useFlashMode else None,
        c_s=cfg.singleFeatureDimension,
        ipa_dropout=cfg.ipaDropout,
        n_transition_layers=cfg.numStructureTransitionLayers,
        transition_dropout=cfg.structureTransitionDropout,
        checkpointing=checkpointing,
        sharing=LayerSharing.from_config(cfg),
    )
    return dict(single_features=single, pair_encoder=pair_encoder, structure=structure,
                ipa_chunk_size=cfg.ipaChunkSize)  # fmt: skip


def build_denoiser(cfg) -> GenieDenoiser:
    """Build the denoiser a :class:`~genie.config.GenieConfig` describes."""
    return GenieDenoiser(**denoiser_parts(cfg))
