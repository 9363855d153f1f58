"""Torch dataset of cropped Cα segments, padding and train/val splits (batches: ``sampler.py``).

Notation: ``b`` batch, ``n`` residues (of one item, or the longest item of a batch); coordinates
in Å.

Reproducible randomness: a training crop of segment ``i`` is drawn from
``np.random.default_rng((seed, epoch, i))`` (``i`` = global segment index), so it depends on the
seed, the epoch and the segment only, not on the number of DataLoader workers or the order in
which items are fetched. The epoch reaches the dataset through the batch sampler's
``set_epoch`` (:mod:`genie.data.sampler`), which Lightning calls each epoch (it calls
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

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.data.concat import concatenate_pieces, draw_pieces, joined_name
from genie.data.dataset_file import CaDatasetArrays

CONCAT_STREAM = 1  # tag of the concatenation's random stream (the crop's stream has no tag)


class CaDataset(Dataset):
    """Cα segments of a :class:`CaDatasetArrays` subset, cropped to ``max_length`` residues.

    Items are dicts: ``coords`` float32 ``[n, 3]`` (Å, centred on the crop's Cα centroid),
    ``residue_index`` long ``[n]`` (0..n-1 for one segment), ``breaks`` bool ``[n]`` (first
    residue always False), ``name`` str, ``item`` int (its position in this dataset) and
    ``epoch`` int (of its crop); n = min(segment length, max_length), or exactly max_length
    with ``concatenate`` (then shorter segments are joined to others: breaks at the joins,
    residue index +``join_residue_gap`` across each, name ``a+b+...``).
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
        epoch = self.epoch if epoch is None else int(epoch)
        if self.concatenate and self._lengths[item] < max_length:
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
            "item": int(item),
            "epoch": epoch,
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
            "item": int(item),
            "epoch": epoch,
        }


def collate_ca_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad items to the longest item of this batch.

    Args:
        items: dataset items (see :class:`CaDataset`).

    Returns:
        ``coords`` float32 ``[b, n, 3]`` (0 at padding), ``mask`` float32 ``[b, n]`` (1 = real
        residue), ``residue_index`` long ``[b, n]`` (0 at padding), ``breaks`` bool ``[b, n]``,
        ``lengths`` long ``[b]``, ``names`` list of b str, and where the items carry them
        ``items``, ``epochs`` long ``[b]`` (dataset position and epoch of each item: the keys
        of its random draws, :mod:`genie.training.draws`); n = max(lengths).
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
    batch = {
        "coords": coords,
        "mask": mask,
        "residue_index": residue_index,
        "breaks": breaks,
        "lengths": lengths,
        "names": [item["name"] for item in items],
    }
    if all("item" in item for item in items):
        batch["items"] = torch.tensor([item["item"] for item in items], dtype=torch.long)
        batch["epochs"] = torch.tensor([item["epoch"] for item in items], dtype=torch.long)
    return batch


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
