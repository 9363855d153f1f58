"""Length-bucketed, optionally cluster-balanced batches of a ``CaDataset``, shared out to ranks.

Notation: ``b`` batch; crop lengths in residues. The batch order of an epoch is a function of
``(seed, epoch)``; with groups (sequence clusters) the epoch's one-item-per-group draw comes from
``(seed, epoch, 0, CLUSTER_STREAM)``, a stream no crop (``(seed, epoch, i)``) or concatenation
(``(seed, epoch, i, CONCAT_STREAM)``) of :mod:`genie.data.dataset` uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from genie.data.clusters import one_per_cluster
from genie.data.dataset import CONCAT_STREAM, CaDataset

CLUSTER_STREAM = CONCAT_STREAM + 1  # tag of the per-epoch draw of one item per cluster


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of items of similar crop length, reshuffled every epoch.

    Shuffled mode: items are permuted with ``(seed, epoch)``, cut into pools of
    ``batch_size * pool_batches`` items, sorted by crop length within each pool, cut into batches,
    and the batch order is permuted. Larger pools give more homogeneous batches (less padding),
    smaller pools more randomness. Unshuffled mode (validation): one global sort, fixed order.
    With ``groups`` (e.g. sequence clusters, :mod:`genie.data.clusters`) a shuffled epoch holds
    one item per group, drawn anew every epoch from ``(seed, epoch)``; unshuffled mode ignores
    them.
    Only the last batch can be smaller than ``batch_size`` (dropped with ``drop_last``).

    Crop lengths are read from the dataset at every ``__iter__``, so ``set_max_length`` on the
    dataset changes the buckets of the next epoch. Batches are lists of ``(item, epoch,
    max_length)`` keys (see :meth:`CaDataset.__getitem__`). With ``epoch_source`` (e.g. the
    trainer's current epoch) the epoch is read when iteration starts, so an iterator that a
    framework creates before calling ``set_epoch`` (as Lightning does on resume) is still right.
    With ``skip_source`` (the batches of the epoch already trained, e.g. by a run resumed from a
    checkpoint written in the middle of an epoch) iteration starts after them: the epoch's
    remaining batches are exactly those the uninterrupted epoch would have gone on with; ``len``
    stays the epoch's full count.

    Distributed: with ``num_replicas`` > 1 the global batch list is shared out round-robin; every
    rank gets the same number of batches (without ``drop_last`` the list is padded by repeating
    its first batches, as ``DistributedSampler`` does; with it the surplus is dropped). Use it with
    ``Trainer(use_distributed_sampler=False)``.
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
        pool_batches: int = 32,
        epoch_source: Callable[[], int] | None = None,
        skip_source: Callable[[], int] | None = None,
        groups: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """
        Args:
            dataset: the dataset whose items (positions ``0..len-1``) are batched.
            batch_size: items per batch.
            shuffle: random pools and batch order per epoch (training) or a fixed sort.
            seed: base seed; the epoch's order comes from ``(seed, epoch)``.
            drop_last: drop a final batch smaller than ``batch_size``.
            num_replicas: number of ranks sharing the batches.
            rank: this rank, ``0..num_replicas-1``.
            pool_batches: batches per sorting pool.
            epoch_source: returns the current epoch; read at every ``__iter__`` when given.
            skip_source: returns how many of this rank's batches of the epoch to skip (already
                trained); read at every ``__iter__`` when given.
            groups: ``[len(dataset)]`` integer group label per item: a shuffled epoch takes
                one item per group; None = every item.
        """
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got {rank}, {num_replicas}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
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

    def _num_items(self) -> int:
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

    def _num_global_batches(self) -> int:
        n = self._num_items()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        total = self._num_global_batches()
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def global_batches(self) -> list[list[int]]:
        """All batches of this epoch, before the share-out to ranks."""
        items = self._epoch_items()
        lengths = self.dataset.crop_lengths[items]
        n = len(lengths)
        if self.shuffle:
            rng = np.random.default_rng((self.seed, self.epoch))
            order = rng.permutation(n)
            pool = self.batch_size * self.pool_batches
            pools = [order[i : i + pool] for i in range(0, n, pool)]
            order = np.concatenate(
                [p[np.argsort(lengths[p], kind="stable")] for p in pools] or [order]
            )
        else:
            order = np.argsort(lengths, kind="stable")
        order = items[order]
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        if self.epoch_source is not None:
            self.set_epoch(self.epoch_source())
        batches = self.global_batches()
        if self.num_replicas > 1 and batches:
            per_rank = len(self)
            total = per_rank * self.num_replicas
            batches = (batches * math.ceil(total / len(batches)))[:total]
            batches = batches[self.rank :: self.num_replicas]
        if self.skip_source is not None:
            batches = batches[self.skip_source() :]
        epoch, max_length = self.epoch, self.dataset.max_length
        for batch in batches:
            yield [(i, epoch, max_length) for i in batch]
