"""The Genie denoiser: noisy Cα trace and timestep -> predicted noise (Lin & AlQuraishi 2023).

    s       = SingleFeatureNet(residue index, t)         [b, n, c_s]
    s, pair = PairEncoder(s, x_t)    dense z [b, n, n, c_p] or factors U, V [b, n, r, c_f]
    T̂       = StructureNet(s, pair, FrenetSerret(x_t))    [b, n] frames, Å
    ε̂       = x_t − trans(T̂)                            [b, n, 3]

ε̂ rotates with x_t and ignores global translations (frames are equivariant, every feature is
invariant). Coordinates are centred per chain before the frames are built (exact, since IPA is
translation-invariant, and it keeps the expanded point distances small).

Under sequence parallelism (:mod:`genie.model.layout`) every tensor argument holds this process's
residues; the centre, the frames and the k-NN graph are computed from the whole chain's trace
(gathered: three numbers per residue), the graph is the whole chain's.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.frames import frenet_serret_frames
from genie.geometry.graph import KnnGraph
from genie.model.encoder import PairEncoder
from genie.model.layers.single_features import SingleFeatureNet
from genie.model.layout import SequenceParallel
from genie.model.structure.stack import StructureNet


class GenieDenoiser(SequenceParallel, nn.Module):
    """Wires the three stages it is given; :func:`genie.model.build.build_denoiser` makes them
    from a config."""

    def __init__(
        self,
        *,
        single_features: SingleFeatureNet,
        pair_encoder: PairEncoder,
        structure: StructureNet,
    ):
        super().__init__()
        self.single_features = single_features
        self.pair_encoder = pair_encoder
        self.structure = structure

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (shared tensors counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def uses_graph(self) -> bool:
        """Whether the model works on a k-NN graph (sparse pairs, k-NN environment features)
        that a sampler may build once and reuse for several steps."""
        return self.pair_encoder.uses_graph

    @property
    def self_conditioning(self) -> bool:
        """Whether the model reads the previous prediction x̂0 (``self_condition=``;
        ``selfConditioning``)."""
        return self.pair_encoder.self_conditioning

    def build_graph(
        self,
        coords: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        *,
        self_condition: torch.Tensor | None = None,
        seeds: torch.Tensor | None = None,
    ) -> KnnGraph | None:
        """The k-NN graph the model would build for ``coords [b, n, 3]`` Å, ``mask [b, n]``
        (and ``residue_index [b, n]``, default 0..n-1), to pass as ``graph=`` to later calls;
        None for models without a graph. ``self_condition [b, n, 3]``: the previous x̂0
        (searched instead of coords with ``selfConditionGraph``); ``seeds [b]`` int64: of the
        random neighbours (``randomNeighbors``; None: drawn from torch's random stream)."""
        residue_index = self._residue_index(coords, residue_index)
        return self.pair_encoder.build_graph(coords, mask, residue_index,
                                             self_condition=self_condition,
                                             seeds=seeds)  # fmt: skip

    def forward(
        self,
        coords: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        *,
        graph: KnnGraph | None = None,
        self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            coords: ``[b, n, 3]`` noisy Cα coordinates x_t, Å.
            timesteps: ``[b]`` diffusion step t of each chain (1..T).
            mask: ``[b, n]`` 1 for real residues (a prefix of each row, at least 3).
            residue_index: ``[b, n]`` residue positions (default 0..n-1).
            graph: a k-NN graph from :meth:`build_graph` for the same residue index (models with
                a graph; default: built from coords). Graphs do not depend on translations, so
                centring does not change them.
            self_condition: ``[b, n, 3]`` the previous prediction x̂0, Å (models with
                ``selfConditioning``; only its distances are read); None: there is none.

        Returns:
            ``[b, n, 3]`` x̃_t − trans(T̂), x̃_t the centred input (zero at padding): the
            predicted noise ε̂ in Å (σ·ε̂) for ``predictionTarget epsilon``; what it means for
            ``x0`` is :mod:`genie.diffusion.parametrisation`'s business.
        """
        layout = self.sequence_layout
        mask = mask.to(coords.dtype)
        residue_index = self._residue_index(coords, residue_index)
        chain, real = layout.gather(coords), layout.gather(mask)  # the whole chain's trace
        centre = (chain * real[..., None]).sum(1, keepdim=True) / real.sum(1)[:, None, None]
        chain = (chain - centre) * real[..., None]  # [b, n, 3], centred
        x = layout.local(chain)

        s = self.single_features(residue_index, timesteps, mask)  # [b, n, c_s]
        s, pair = self.pair_encoder(
            s, x, residue_index, mask, graph=graph, self_condition=self_condition
        )
        frames = frenet_serret_frames(chain, real)[:, layout.own(chain.shape[1])]
        frames = self.structure(s, pair, frames, mask)
        return (x - frames.trans) * mask[..., None]

    def _residue_index(self, coords: torch.Tensor, residue_index: torch.Tensor | None):
        """``residue_index``, or the positions 0..n-1 in the chain of ``coords [b, n, 3]``."""
        if residue_index is not None:
            return residue_index
        b, m, _ = coords.shape
        n = self.sequence_layout.full_length(m)
        positions = torch.arange(n, device=coords.device)[self.sequence_layout.own(n)]
        return positions.expand(b, m)
