"""A batch of chains of mixed lengths sampled together, each with its own random stream.

Chains are padded to the longest (``n_max``) and masked. Every chain draws its start x_T and all
the noise of its reverse steps from its own generator, seeded with its own seed, and only for its
own residues: a chain's sample therefore does not depend on what else is in its batch, so it can
be regenerated alone from its seed. Each chain's draws are scaled by its noise scale σ (Å; 1 for
Genie's unit noise, :mod:`genie.diffusion.noise_scale`), so x_T ~ N(0, σ² I).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


class ChainBatch:
    """Mask and per-chain noise streams of ``b`` chains padded to ``n_max`` residues."""

    def __init__(
        self,
        *,
        lengths: Sequence[int],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
        scales: Sequence[float] | None = None,
    ) -> None:
        """
        Args:
            lengths: residues of each chain (each ≥ 3).
            seeds: one integer seed per chain.
            device: where the mask and the noise live.
            scales: the noise scale σ of each chain, Å (> 0; default 1 for every chain).
        """
        if len(lengths) != len(seeds):
            raise ValueError(f"one seed per length is needed, got {len(lengths)} lengths and "
                             f"{len(seeds)} seeds")  # fmt: skip
        scales = [1.0] * len(lengths) if scales is None else [float(s) for s in scales]
        if len(scales) != len(lengths) or not all(s > 0 for s in scales):
            raise ValueError(f"one noise scale > 0 per chain is needed, got {scales}")
        if not lengths:
            raise ValueError("lengths is empty: give at least one chain length")
        if min(lengths) < 3:
            raise ValueError(f"every length must be at least 3 residues, got {min(lengths)}")
        self.lengths = [int(n) for n in lengths]
        self.seeds = [int(s) for s in seeds]
        self.scales = scales
        self.device = torch.device(device)
        self.n_max = max(self.lengths)
        self._generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        mask = torch.zeros(len(self.lengths), self.n_max)
        for i, n in enumerate(self.lengths):
            mask[i, :n] = 1.0
        self.mask = mask.to(self.device)  # [b, n_max]

    def __len__(self) -> int:
        return len(self.lengths)

    def normal(self) -> torch.Tensor:
        """The next normal draw of every chain, σ_i z with z standard normal, ``[b, n_max, 3]``
        Å (zero at padding).

        Drawn on the CPU from each chain's generator (so results do not depend on the device's
        random number generator), then moved to the batch's device.
        """
        out = torch.zeros(len(self.lengths), self.n_max, 3)
        for i, (n, gen, sigma) in enumerate(
            zip(self.lengths, self._generators, self.scales, strict=True)
        ):
            z = torch.randn(n, 3, generator=gen)
            out[i, :n] = z if sigma == 1.0 else sigma * z
        return out.to(self.device)

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """``x [b, n_max, 3]`` Å with each chain's Cα centroid moved to the origin (zero at
        padding). The centroid is summed in float64, so that sums split over sequence shards
        (:class:`genie.sampling.sharded.ShardedChains`) round to the same result."""
        return centred_rows(x, self.mask)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [b, n_max, 3]`` -> one float32 CPU tensor ``[n_i, 3]`` per chain (padding cut)."""
        return [x[i, :n].float().cpu() for i, n in enumerate(self.lengths)]


def centred_rows(
    x: torch.Tensor,
    mask: torch.Tensor,
    total: Callable[[torch.Tensor], torch.Tensor] = lambda sums: sums,
) -> torch.Tensor:
    """Rows ``x [b, m, 3]`` Å (``mask [b, m]``) minus each chain's Cα centroid, zero at padding;
    ``total`` adds the float64 sums ``[b, 4]`` (coordinates, count) of these rows to those of the
    chain's other rows (another process's shard; default: none, the rows are the whole chain)."""
    m = mask.double()[..., None]  # [b, m, 1]
    sums = total(torch.cat([(x.double() * m).sum(1), m.sum(1)], dim=-1))  # [b, 4]
    return ((x.double() - (sums[:, :3] / sums[:, 3:])[:, None]) * m).to(x.dtype)


def sample_seed(seed: int, length: int, index: int) -> int:
    """A seed for sample ``index`` of ``length``, independent of batching."""
    return int(np.random.SeedSequence([seed, length, index]).generate_state(1)[0])
