"""Torch dataset of cropped Cα segments, length-bucketed batching, padding and train/val splits.

Notation: ``b`` batch, ``n`` residues (of one item, or the longest item of a batch); coordinates
in Å.

Reproducible randomness: a training crop of segment ``i`` is drawn from
``np.random.default_rng((seed, epoch, i))`` (``i`` = global segment index), so it depends on the
seed, the epoch and the segment only, not on the number of DataLoader workers or the order in
which items are fetched. The epoch reaches the dataset through
``LengthBucketBatchSampler.set_epoch``, which Lightning calls each epoch (it calls
``batch_sampler.sampler.set_epoch``; the sampler is its own ``.sampler``). Workers get a copy of
the dataset when an epoch's iterator starts, so keep ``persistent_workers=False`` for
``set_epoch``/``set_max_length`` to reach them.

Concatenation (``concatenate=True``, for crop lengths beyond the real chains): an item whose
segment is shorter than the crop length is filled up to exactly the crop length with further real
segments of the same dataset, placed apart in space, the joins marked in ``breaks`` and by a jump of
the residue index (:mod:`genie.data.concat`; the joins are artificial). Its random stream is
``np.random.default_rng((seed, epoch, i, CONCAT_STREAM))``; validation items always use epoch 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from genie.data.clusters import one_per_cluster
from genie.data.concat import concatenate_pieces, draw_pieces, joined_name
from genie.data.dataset_file import CaDatasetArrays

CONCAT_STREAM = 1  # tag of the concatenation's random stream (the crop's stream has no tag)
CLUSTER_STREAM = 2  # tag of the batch sampler's per-epoch draw of one item per cluster


class CaDataset(Dataset):
    """Cα segments of a :class:`CaDatasetArrays` subset, cropped to ``max_length`` residues.

    Items are dicts: ``coords`` float32 ``[n, 3]`` (Å, centred on the crop's Cα centroid),
    ``residue_index`` long ``[n]`` (0..n-1 for one segment), ``breaks`` bool ``[n]`` (first
    residue always False), ``name`` str; n = min(segment length, max_length), or exactly
    max_length with ``concatenate`` (then shorter segments are joined to others: breaks at the
    joins, residue index +``join_residue_gap`` across each, name ``a+b+...``).
    """

    def __init__(
        self,
        *,
        arrays: CaDatasetArrays,
        indices: Sequence[int] | np.ndarray | None = None,
        max_length: int,
        random_crop: bool,
        seed: int = 0,
        concatenate: bool = False,
        join_residue_gap: int = 64,
        join_clearance: float = 5.0,
    ) -> None:
        """
        Args:
            arrays: all segments.
            indices: segments of this dataset (global indices into ``arrays``); None = all.
            max_length: crop length; longer segments are cropped to a window of this length.
            random_crop: a random window (training) or the centred window (validation).
            seed: base seed of the random crops.
            concatenate: fill items shorter than ``max_length`` with further segments of this
                dataset (artificial joins, marked).
            join_residue_gap: residue-index step across a join (>= 1).
            join_clearance: minimum Cα distance between joined pieces (Å, >= 0).
        """
        super().__init__()
        self.arrays = arrays
        self.indices = np.arange(len(arrays)) if indices is None else np.asarray(indices, np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(arrays)):
            raise IndexError("indices out of range of the dataset arrays")
        self.random_crop = random_crop
        self.seed = int(seed)
        if join_residue_gap < 1 or join_clearance < 0:
            raise ValueError(
                f"join_residue_gap must be >= 1 and join_clearance >= 0 Å, got "
                f"{join_residue_gap}, {join_clearance}"
            )
        if concatenate and self.indices.size == 0:
            raise ValueError("concatenate=True needs at least one segment")
        self.concatenate = bool(concatenate)
        self.join_residue_gap = int(join_residue_gap)
        self.join_clearance = float(join_clearance)
        self.epoch = 0
        self._lengths = arrays.lengths[self.indices]  # [len(self)]
        self.max_length = 0
        self.set_max_length(max_length)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def set_max_length(self, max_length: int) -> None:
        """Change the crop length (e.g. progressive training); takes effect for new iterators."""
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops to draw."""
        self.epoch = int(epoch)

    @property
    def lengths(self) -> np.ndarray:
        """``[len(self)]`` full segment lengths."""
        return self._lengths

    @property
    def crop_lengths(self) -> np.ndarray:
        """``[len(self)]`` item lengths under the current ``max_length`` (all ``max_length``
        with ``concatenate``)."""
        if self.concatenate:
            return np.full(len(self), self.max_length, dtype=np.int64)
        return np.minimum(self._lengths, self.max_length)

    def crop_window(
        self, item: int, *, epoch: int | None = None, max_length: int | None = None
    ) -> tuple[int, int]:
        """``(start, stop)`` of the crop of item ``item`` within its segment (epoch and crop
        length default to the dataset's current ones)."""
        epoch = self.epoch if epoch is None else epoch
        max_length = self.max_length if max_length is None else max_length
        length = int(self._lengths[item])
        if length <= max_length:
            return 0, length
        slack = length - max_length
        if self.random_crop:
            rng = np.random.default_rng((self.seed, epoch, int(self.indices[item])))
            start = int(rng.integers(0, slack + 1))
        else:
            start = slack // 2
        return start, start + max_length

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, Any]:
        """``key``: an item index, or ``(item, epoch, max_length)`` as the batch sampler sends
        them, so that worker processes (which hold a copy of the dataset made when the epoch's
        iterator started) crop for the right epoch and length whatever their copy says."""
        item, epoch, max_length = key if isinstance(key, tuple) else (key, None, None)
        max_length = self.max_length if max_length is None else int(max_length)
        if self.concatenate and self._lengths[item] < max_length:
            epoch = self.epoch if epoch is None else epoch
            return self._concatenated(item, epoch=epoch, max_length=max_length)
        segment = int(self.indices[item])
        start, stop = self.crop_window(item, epoch=epoch, max_length=max_length)
        xyz = self.arrays.segment(segment)[start:stop].astype(np.float64)  # [n, 3]
        xyz -= xyz.mean(axis=0, keepdims=True)
        breaks = self.arrays.segment_breaks(segment)[start:stop].copy()  # [n]
        breaks[0] = False
        n = stop - start
        return {
            "coords": torch.from_numpy(xyz.astype(np.float32)),
            "residue_index": torch.arange(n, dtype=torch.long),
            "breaks": torch.from_numpy(breaks),
            "name": str(self.arrays.names[segment]),
        }

    def _concatenated(self, item: int, *, epoch: int, max_length: int) -> dict[str, Any]:
        """Item ``item`` filled up to ``max_length`` residues with further segments."""
        segment = int(self.indices[item])
        rng = np.random.default_rng(
            (self.seed, epoch if self.random_crop else 0, segment, CONCAT_STREAM)
        )
        pieces = draw_pieces(
            first=segment,
            pool=self.indices,
            lengths=self.arrays.lengths,
            target_length=max_length,
            rng=rng,
        )
        xyz, residue_index, breaks = concatenate_pieces(
            self.arrays,
            pieces,
            residue_gap=self.join_residue_gap,
            clearance=self.join_clearance,
            rng=rng,
        )
        return {
            "coords": torch.from_numpy(xyz.astype(np.float32)),
            "residue_index": torch.from_numpy(residue_index),
            "breaks": torch.from_numpy(breaks),
            "name": joined_name([str(self.arrays.names[p.segment]) for p in pieces]),
        }


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
            rng = np.random.default_rng((self.seed, self.epoch, CLUSTER_STREAM))
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
        epoch, max_length = self.epoch, self.dataset.max_length
        for batch in batches:
            yield [(i, epoch, max_length) for i in batch]


def collate_ca_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad items to the longest item of this batch.

    Args:
        items: dataset items (see :class:`CaDataset`).

    Returns:
        ``coords`` float32 ``[b, n, 3]`` (0 at padding), ``mask`` float32 ``[b, n]`` (1 = real
        residue), ``residue_index`` long ``[b, n]`` (0 at padding), ``breaks`` bool ``[b, n]``,
        ``lengths`` long ``[b]``, ``names`` list of b str; n = max(lengths).
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([item["coords"].shape[0] for item in items], dtype=torch.long)  # [b]
    b, n = len(items), int(lengths.max())
    coords = torch.zeros(b, n, 3, dtype=torch.float32)
    mask = torch.zeros(b, n, dtype=torch.float32)
    residue_index = torch.zeros(b, n, dtype=torch.long)
    breaks = torch.zeros(b, n, dtype=torch.bool)
    for i, item in enumerate(items):
        k = int(lengths[i])
        coords[i, :k] = item["coords"]
        mask[i, :k] = 1.0
        residue_index[i, :k] = item["residue_index"]
        breaks[i, :k] = item["breaks"]
    return {
        "coords": coords,
        "mask": mask,
        "residue_index": residue_index,
        "breaks": breaks,
        "lengths": lengths,
        "names": [item["name"] for item in items],
    }


def split_train_val(
    num_segments: int,
    *,
    val_fraction: float,
    seed: int,
    groups: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split that keeps each group on one side.

    Groups are visited in a seeded random order and put in validation while they fit the target
    ``round(val_fraction * num_segments)`` (at least 1 when ``val_fraction`` > 0); large groups
    (e.g. many mutants of one protein) that do not fit stay in training. If no group fits, the
    smallest one goes to validation.

    Args:
        num_segments: S.
        val_fraction: in ``[0, 1)``.
        seed: split seed.
        groups: ``[S]`` group label per segment (e.g. its sequence: exact identity only, so
            near-identical mutants may still straddle); None = every segment its own group.

    Returns:
        ``(train_idx, val_idx)``, sorted int64 arrays.

    Raises:
        ValueError: bad arguments, or a split that would leave training empty.
    """
    if num_segments < 1:
        raise ValueError("cannot split an empty dataset")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if groups is None:
        labels = np.arange(num_segments)
    else:
        if len(groups) != num_segments:
            raise ValueError(f"groups has {len(groups)} entries for {num_segments} segments")
        ids: dict[Hashable, int] = {}
        labels = np.array([ids.setdefault(g, len(ids)) for g in groups], dtype=np.int64)
    sizes = np.bincount(labels)
    target = round(val_fraction * num_segments)
    if val_fraction > 0:
        target = max(1, target)
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(sizes), dtype=bool)
    count = 0
    for group in rng.permutation(len(sizes)):
        if count >= target:
            break
        if count + sizes[group] <= target:
            in_val[group] = True
            count += int(sizes[group])
    if target > 0 and count == 0:
        in_val[int(np.argmin(sizes))] = True
    val_mask = in_val[labels]
    if val_mask.all():
        raise ValueError(
            f"cannot split {num_segments} segments in {len(sizes)} groups with "
            f"val_fraction={val_fraction}: training would be empty"
        )
    return np.flatnonzero(~val_mask).astype(np.int64), np.flatnonzero(val_mask).astype(np.int64)
