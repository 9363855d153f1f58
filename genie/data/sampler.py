"""Length-bucketed, optionally cluster-balanced batches of a ``CaDataset``, shared out to ranks.

Notation: ``b`` batch (per rank), ``R`` data-parallel ranks, ``A`` gradient-accumulation steps;
crop lengths in residues. The batch order of an epoch is a function of ``(seed, epoch)``; with
groups (sequence clusters) the epoch's one-item-per-group draw comes from
``(seed, epoch, 0, CLUSTER_STREAM)``, a stream no crop (``(seed, epoch, i)``) or concatenation
(``(seed, epoch, i, CONCAT_STREAM)``) of :mod:`genie.data.dataset` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from genie.data.clusters import one_per_cluster
from genie.data.dataset import CONCAT_STREAM, CaDataset
from genie.data.shares import rank_micro_batches, step_shares

CLUSTER_STREAM = CONCAT_STREAM + 1  # tag of the per-epoch draw of one item per cluster


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of items of similar crop length, reshuffled every epoch, shared out to ranks.

    Shuffled mode (training) forms the epoch's *steps*, the chains of one optimiser step over all
    ranks (``S = b·R·A`` of them): items are permuted with ``(seed, epoch)``, cut into pools of
    ``S * pool_batches`` items, sorted by crop length within each pool and cut into steps; the
    full steps are permuted, a smaller one (the epoch's remainder) comes last. Each step is split
    into the micro-batches of the ranks and accumulation steps (:mod:`genie.data.shares`): every
    chain of the epoch once on one rank, every rank the same number of micro-batches (of at most
    ``b``), a step's chains on the ranks in the order Lightning accumulates them. So the chains
    of an optimiser step do not depend on how many ranks and accumulation steps share them: one
    process at batch size ``S`` steps through the same chains. Larger pools give more
    homogeneous steps (less padding), smaller pools more randomness. With ``groups`` (e.g.
    sequence clusters, :mod:`genie.data.clusters`) a shuffled epoch holds one item per group,
    drawn anew every epoch from ``(seed, epoch)``.

    Unshuffled mode (validation): one global sort, cut into batches of ``b`` in a fixed order
    (groups ignored), dealt round-robin to the ranks: every chain once, ranks may differ by one
    batch (``even=False``; a DDP validation step communicates nothing), or shared out like one
    step per ``R`` batches (``even=True``, for strategies whose forward communicates, FSDP).

    Crop lengths are read from the dataset at every ``__iter__``, so ``set_max_length`` on the
    dataset changes the buckets of the next epoch. Batches are lists of ``(item, epoch,
    max_length)`` keys (see :meth:`CaDataset.__getitem__`). With ``epoch_source`` (e.g. the
    trainer's current epoch) the epoch is read when iteration starts, so an iterator that a
    framework creates before calling ``set_epoch`` (as Lightning does on resume) is still right.
    With ``skip_source`` (the batches of the epoch already trained, e.g. by a run resumed from a
    checkpoint written in the middle of an epoch) iteration starts after them: the epoch's
    remaining batches are exactly those the uninterrupted epoch would have gone on with; ``len``
    stays the epoch's full count.

    Use it with ``Trainer(use_distributed_sampler=False)``.
    """

    def __init__(
        self,
        dataset: CaDataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        accumulation: int = 1,
        even: bool = True,
        pool_batches: int = 32,
        epoch_source: Callable[[], int] | None = None,
        skip_source: Callable[[], int] | None = None,
        groups: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """
        Args:
            dataset: the dataset whose items (positions ``0..len-1``) are batched.
            batch_size: items per batch (per rank).
            shuffle: random pools and step order per epoch (training) or a fixed sort.
            seed: base seed; the epoch's order comes from ``(seed, epoch)``.
            drop_last: drop a final step (shuffled) or batch (unshuffled) smaller than full.
            num_replicas: number of data-parallel ranks sharing the batches.
            rank: this rank, ``0..num_replicas-1``.
            accumulation: micro-batches per rank of one optimiser step (shuffled mode).
            even: unshuffled mode: every rank gets the same number of batches.
            pool_batches: steps per sorting pool.
            epoch_source: returns the current epoch; read at every ``__iter__`` when given.
            skip_source: returns how many of this rank's batches of the epoch to skip (already
                trained); read at every ``__iter__`` when given.
            groups: ``[len(dataset)]`` integer group label per item: a shuffled epoch takes
                one item per group; None = every item.
        """
        if batch_size < 1 or pool_batches < 1 or accumulation < 1:
            raise ValueError("batch_size, accumulation and pool_batches must be >= 1")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got {rank}, {num_replicas}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.accumulation = accumulation if shuffle else 1
        self.even = even or shuffle
        self.pool_batches = pool_batches
        self.epoch = 0
        self.epoch_source = epoch_source
        self.skip_source = skip_source
        self.groups = None
        if groups is not None:
            self.groups = np.asarray(groups, dtype=np.int64)
            if self.groups.shape != (len(dataset),):
                raise ValueError(
                    f"groups has shape {self.groups.shape}, expected ({len(dataset)},): one "
                    "label per dataset item"
                )

    @property
    def sampler(self) -> LengthBucketBatchSampler:
        """This sampler: Lightning calls ``dataloader.batch_sampler.sampler.set_epoch(epoch)``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle and the dataset's random crops."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    @property
    def step_size(self) -> int:
        """Chains of a full step: ``b`` × ranks × accumulation (shuffled), ``b`` × ranks (even
        unshuffled), ``b`` (unshuffled, dealt round-robin)."""
        if not self.even:
            return self.batch_size
        return self.batch_size * self.num_replicas * self.accumulation

    def items_per_epoch(self) -> int:
        """Items per epoch: one per group in shuffled mode with groups, else all."""
        if self.shuffle and self.groups is not None:
            return len(np.unique(self.groups))
        return len(self.dataset)

    def _epoch_items(self) -> np.ndarray:
        """Positions of this epoch's items in the dataset."""
        if self.shuffle and self.groups is not None:
            rng = np.random.default_rng((self.seed, self.epoch, 0, CLUSTER_STREAM))
            return one_per_cluster(self.groups, rng)
        return np.arange(len(self.dataset))

    def _step_sizes(self) -> list[int]:
        """Sizes of the epoch's steps (constant over epochs: the item count is)."""
        full, rest = divmod(self.items_per_epoch(), self.step_size)
        return [self.step_size] * full + ([rest] if rest and not self.drop_last else [])

    def left_out_per_epoch(self) -> int:
        """Chains of an epoch that no rank gets: the remainder that cannot be shared out evenly
        (:mod:`genie.data.shares`; at most ranks − 1), or that ``drop_last`` drops."""
        sizes = self._step_sizes()
        dropped = self.items_per_epoch() - sum(sizes)
        if not self.even or not sizes:
            return dropped
        return dropped + step_shares(sizes[-1], batch_size=self.batch_size,
                                     ranks=self.num_replicas)[1]  # fmt: skip

    def fewest_batches(self) -> int:
        """The fewest batches any rank gets in an epoch (0: some rank would have none)."""
        if not self.even:
            return len(self._step_sizes()) // self.num_replicas
        return len(self)

    def __len__(self) -> int:
        sizes = self._step_sizes()
        if not self.even:
            batches = len(sizes)
            return len(range(self.rank, batches, self.num_replicas))
        shares = [step_shares(m, batch_size=self.batch_size, ranks=self.num_replicas)[0]
                  for m in sizes]  # fmt: skip
        return sum(shares)

    def global_steps(self) -> list[list[int]]:
        """All steps of this epoch (unshuffled, not even: all batches), before the share-out."""
        items = self._epoch_items()
        lengths = self.dataset.crop_lengths[items]
        n, size = len(lengths), self.step_size
        if self.shuffle:
            rng = np.random.default_rng((self.seed, self.epoch))
            order = rng.permutation(n)
            pool = size * self.pool_batches
            pools = [order[i : i + pool] for i in range(0, n, pool)]
            order = np.concatenate(
                [p[np.argsort(lengths[p], kind="stable")] for p in pools] or [order]
            )
        else:
            order = np.argsort(lengths, kind="stable")
        order = items[order]
        steps = [order[i : i + size].tolist() for i in range(0, n, size)]
        last = steps.pop() if steps and len(steps[-1]) < size else None
        if self.shuffle:
            steps = [steps[i] for i in rng.permutation(len(steps))]
        if last is not None and not self.drop_last:
            steps.append(last)  # the smaller step last: accumulation windows stay aligned
        return steps

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        if self.epoch_source is not None:
            self.set_epoch(self.epoch_source())
        steps = self.global_steps()
        if self.even:
            batches = rank_micro_batches(
                steps, batch_size=self.batch_size, ranks=self.num_replicas, rank=self.rank
            )
        else:
            batches = steps[self.rank :: self.num_replicas]
        if self.skip_source is not None:
            batches = batches[self.skip_source() :]
        epoch, max_length = self.epoch, self.dataset.max_length
        for batch in batches:
            yield [(i, epoch, max_length) for i in batch]
