"""Per-chain random draws of the denoising objective: each chain's timestep t and noise ε come
from a generator of its own.

A chain's generator is seeded from ``(seed, epoch, item, stream)``: ``item`` is the chain's
position in its dataset (``batch["items"]``), ``epoch`` the epoch its batch sampler shared it
out in (``batch["epochs"]``), ``stream`` tells training from validation draws. So the draws of a
chain do not depend on the batch it lands in, on its padding, on the rank that trains it or on
the number of accumulation steps: a run of R ranks × accumulation A draws what one process at
the effective batch draws, and the same seed redraws them on a resumed run. ε is drawn for the
chain's own residues only (zero at padding); with sequence parallelism every shard can draw a
chain's whole ε and keep its own residues.

Dropout masks are not drawn here: they come from each rank's global stream
(:class:`~genie.training.callbacks.BatchSeedCallback`).
"""

from __future__ import annotations

import numpy as np
import torch

TRAIN_STREAM = 0  # training draws of epoch e
VALIDATION_STREAM = 1  # validation draws: epoch 0 always, the same at every validation pass


def chain_seed(*, seed: int, epoch: int, item: int, stream: int) -> int:
    """The 64-bit seed of one chain's generator."""
    state = np.random.SeedSequence([seed, epoch, item, stream]).generate_state(1, np.uint64)
    return int(state[0])


def draw_chain_noise(
    *,
    lengths: torch.Tensor,
    items: torch.Tensor,
    epochs: torch.Tensor,
    seed: int,
    stream: int,
    num_timesteps: int,
    n: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Timesteps and noise of a batch, chain by chain.

    Args:
        lengths: ``[b]`` residues of each chain (its real residues come first).
        items, epochs: ``[b]`` dataset position and epoch of each chain.
        seed: the run's seed.
        stream: :data:`TRAIN_STREAM` or :data:`VALIDATION_STREAM`.
        num_timesteps: T; t is uniform in 1..T.
        n: padded length of the batch.

    Returns:
        ``t [b]`` long, ``noise [b, n, 3]`` (standard normal on each chain's residues, 0 at
        padding).
    """
    b = lengths.shape[0]
    t = torch.empty(b, dtype=torch.long, device=device)
    noise = torch.zeros(b, n, 3, dtype=dtype, device=device)
    for i, (length, item, epoch) in enumerate(
        zip(lengths.tolist(), items.tolist(), epochs.tolist(), strict=True)
    ):
        generator = torch.Generator(device=device)
        generator.manual_seed(chain_seed(seed=seed, epoch=epoch, item=item, stream=stream))
        t[i] = torch.randint(1, num_timesteps + 1, (1,), generator=generator, device=device)[0]
        noise[i, :length] = torch.randn(
            (length, 3), generator=generator, dtype=dtype, device=device
        )  # [length, 3]
    return t, noise
