"""Sharing the chains of an optimiser step out to data-parallel ranks and accumulation steps.

Notation: ``R`` data-parallel ranks, ``A`` gradient-accumulation steps, ``b`` chains per
micro-batch (``batchSize``); a full step holds ``S = R·A·b`` chains. A step's chains are cut, in
their order (sorted by length within a pool, :mod:`genie.data.sampler`), into micro-batches
``k = 0, 1, …``; micro-batch ``k`` goes to rank ``k mod R`` as its accumulation step ``k div R``,
so the ranks' micro-batches of one accumulation step hold chains of similar length.

Every rank must run the same number of micro-batches (DDP all-reduces the gradients of every
step; a rank with fewer batches would leave the others waiting). A full step gives each rank
``A`` micro-batches of ``b``. A smaller last step of ``m`` chains gives each rank
``A' = ⌈m / (R·b)⌉`` micro-batches of near-equal size (at most ``b``), every chain once. Only
when that leaves a micro-batch empty (``m < R·A'``, e.g. ``b = 1`` and ``m`` not a multiple of
``R``) are the last ``m mod R`` chains of the step left out (at most ``R − 1`` chains of an
epoch; the epoch's shuffle picks other chains every epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def step_shares(m: int, *, batch_size: int, ranks: int) -> tuple[int, int]:
    """``(micro-batches per rank, chains left out)`` of a step of ``m`` chains."""
    if m < 1 or batch_size < 1 or ranks < 1:
        raise ValueError(f"need m, batch_size, ranks >= 1, got {m}, {batch_size}, {ranks}")
    per_rank = math.ceil(m / (ranks * batch_size))
    if m >= ranks * per_rank:
        return per_rank, 0
    kept = ranks * (m // ranks)  # every micro-batch non-empty: drop the m mod R last chains
    if kept == 0:
        return 0, m
    return math.ceil(kept / (ranks * batch_size)), m - kept


def split_step(items: Sequence[int], *, batch_size: int, ranks: int) -> list[list[int]]:
    """The micro-batches of one step, in order (micro-batch ``k`` belongs to rank ``k mod R``):
    ``R·A'`` contiguous groups of ``items`` of near-equal size, at most ``batch_size`` each.
    Chains that cannot be shared out evenly (:func:`step_shares`) are the last of ``items``."""
    per_rank, left_out = step_shares(len(items), batch_size=batch_size, ranks=ranks)
    kept = list(items[: len(items) - left_out])
    count = ranks * per_rank
    if count == 0:
        return []
    base, extra = divmod(len(kept), count)
    groups, start = [], 0
    for k in range(count):  # the first `extra` groups take one chain more
        size = base + (k < extra)
        groups.append(kept[start : start + size])
        start += size
    return groups


def rank_micro_batches(
    steps: Sequence[Sequence[int]], *, batch_size: int, ranks: int, rank: int
) -> list[list[int]]:
    """Rank ``rank``'s micro-batches of an epoch of ``steps`` (each step's chains in order)."""
    batches: list[list[int]] = []
    for step in steps:
        batches.extend(split_step(step, batch_size=batch_size, ranks=ranks)[rank::ranks])
    return batches
