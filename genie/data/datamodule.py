"""Lightning data module: cached Cα dataset -> seeded train/val split -> length-bucketed batches.

Notation: ``b`` batch, ``n`` residues (longest item of the batch); coordinates in Å.

Batches (see :func:`genie.data.dataset.collate_ca_batch`): ``coords`` float32 ``[b, n, 3]``,
``mask`` float32 ``[b, n]``, ``residue_index`` long ``[b, n]``, ``breaks`` bool ``[b, n]``,
``lengths`` long ``[b]``, ``names`` list of b str.

Several processes: the batch sampler shares the chains of each optimiser step out to the
data-parallel ranks and the trainer's accumulation steps itself (every chain of an epoch once,
every rank the same number of batches; :mod:`genie.data.shares`), so train with
``Trainer(use_distributed_sampler=False)`` (Lightning cannot inject its own sampler into a
custom batch sampler and says so). With sequence parallelism, the ``sequence_shards``
consecutive ranks of one chain read the same batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ParallelStrategy
from torch.utils.data import DataLoader

from genie.data.clusters import cluster_sequences
from genie.data.dataset import CaDataset, collate_ca_batch, split_train_val
from genie.data.dataset_file import CaDatasetArrays, default_dataset_path, load_dataset_file
from genie.data.preprocess import build_dataset
from genie.data.sampler import LengthBucketBatchSampler
from genie.utils.errors import DataError


def uses_cache(sources: Sequence[str] | None) -> bool:
    """Whether data from ``sources`` goes through the cache folder: structure files do; the
    bundled set (None or empty) and one processed ``.npz`` file are read as they are."""
    return bool(sources) and not (len(sources) == 1 and str(sources[0]).endswith(".npz"))


class CaDataModule(pl.LightningDataModule):
    """Cα backbone segments from PDB/mmCIF sources, or the bundled TS50 set when none are given.

    ``prepare_data`` (rank 0) builds or reuses the cache; ``setup`` loads it, drops segments
    shorter than ``min_length``, splits train/val by exact sequence identity (identical chains
    never straddle the split) and builds the datasets. With ``cluster_sampling`` segments are
    clustered by sequence (:mod:`genie.data.clusters`), whole clusters go to one side of the
    split, and every training epoch draws one segment per cluster. Training crops are random
    windows of ``max_length`` residues, validation crops centred windows. With ``concatenate``
    every item is ``max_length`` residues long: shorter segments are joined to further segments
    of their own side of the split (:mod:`genie.data.concat`; artificial joins, marked).
    """

    def __init__(
        self,
        *,
        sources: Sequence[str] | None = None,
        cache_dir: str | Path,
        min_length: int,
        max_length: int,
        batch_size: int,
        val_fraction: float,
        seed: int,
        num_workers: int,
        split_chain_breaks: bool = True,
        chain_break_distance: float = 4.2,
        dataset_size: int | None = None,
        validation_size: int | None = None,
        concatenate: bool = False,
        join_residue_gap: int = 64,
        join_clearance: float = 5.0,
        cluster_sampling: bool = False,
        cluster_similarity: float = 0.3,
        sequence_shards: int = 1,
        even_validation: bool = False,
    ) -> None:
        """
        Args:
            sources: folders/files/globs of structures, or one processed ``.npz`` dataset file;
                None or empty = bundled default dataset.
            cache_dir: folder of the processed ``.npz`` cache (unused for the default dataset).
            min_length: minimum segment length (residues).
            max_length: crop length (residues); changeable with :meth:`set_max_length`.
            batch_size: items per batch (per rank).
            val_fraction: fraction of segments for validation, in (0, 1).
            seed: split, shuffling and crop seed.
            num_workers: DataLoader workers, also the parsing processes of the build.
            split_chain_breaks: split chains at breaks (else keep them whole, breaks marked).
            chain_break_distance: Cα distance (Å) that counts as a break.
            dataset_size: cap on the number of training segments (seeded subset); None = all.
            validation_size: cap on the number of validation segments (seeded subset, drawn
                after the split); None = all.
            concatenate: fill items shorter than ``max_length`` with further segments.
            join_residue_gap: residue-index step across a join (>= 1).
            join_clearance: minimum Cα distance between joined pieces (Å).
            cluster_sampling: split by sequence cluster and train on one segment per cluster
                per epoch (an epoch then has as many items as training clusters).
            cluster_similarity: chance-corrected shared-3-mer threshold of the clustering,
                in (0, 1] (0.3 ≈ 67 % identity).
            sequence_shards: consecutive ranks that share one chain (sequence parallelism);
                data-parallel ranks = world size / sequence_shards.
            even_validation: every rank runs the same number of validation batches (needed
                where a forward communicates, as FSDP's does); else every validation chain is
                dealt once and ranks may differ by one batch.
        """
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if min_length < 1 or max_length < 1 or batch_size < 1:
            raise ValueError("min_length, max_length and batch_size must be >= 1")
        for key, size in (("dataset_size", dataset_size), ("validation_size", validation_size)):
            if size is not None and size < 1:
                raise ValueError(f"{key} must be >= 1 or None, got {size}")
        self.save_hyperparameters()
        self.sources = list(sources or [])
        self.cache_dir = Path(cache_dir)
        self.min_length = min_length
        self.max_length = max_length
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.split_chain_breaks = split_chain_breaks
        self.chain_break_distance = chain_break_distance
        self.dataset_size = dataset_size
        self.validation_size = validation_size
        self.concatenate = concatenate
        self.join_residue_gap = join_residue_gap
        self.join_clearance = join_clearance
        if not 0.0 < cluster_similarity <= 1.0:
            raise ValueError(f"cluster_similarity must be in (0, 1], got {cluster_similarity}")
        self.cluster_sampling = cluster_sampling
        self.cluster_similarity = cluster_similarity
        if sequence_shards < 1:
            raise ValueError(f"sequence_shards must be >= 1, got {sequence_shards}")
        self.sequence_shards = sequence_shards
        self.even_validation = even_validation
        self.train_groups: np.ndarray | None = None
        self._warned: set[tuple[str, int]] = set()
        self.arrays: CaDatasetArrays | None = None
        self.train_dataset: CaDataset | None = None
        self.val_dataset: CaDataset | None = None
        self.dataset_path: Path | None = None  # the dataset file read by setup
        self._prepared: Path | None = None  # the path prepare_data found, in this process

    def _dataset_path(self, *, progress: bool) -> Path:
        if not self.sources:
            return default_dataset_path()
        if not uses_cache(self.sources):
            path = Path(self.sources[0])  # a dataset file made by `python -m genie.data.preprocess`
            if not path.is_file():
                raise FileNotFoundError(f"processed dataset not found: {path}")
            return path
        return build_dataset(
            self.sources,
            cache_dir=self.cache_dir,
            min_length=self.min_length,
            chain_break_distance=self.chain_break_distance,
            split_chain_breaks=self.split_chain_breaks,
            num_workers=max(1, self.num_workers),
            progress=progress,
        )

    def prepare_data(self) -> None:
        """Build or reuse the cache (Lightning runs this on one process per node); the path is
        kept for this process's :meth:`setup` (the others look it up again)."""
        self._prepared = self._dataset_path(progress=True)

    def setup(self, stage: str | None = None) -> None:
        """Load the dataset, split it and build the train/val datasets (idempotent)."""
        if self.train_dataset is not None:
            return
        path = self._prepared or self._dataset_path(progress=False)
        where = f"{path}" if not uses_cache(self.sources) else f"{path} (from {self.sources})"
        arrays = load_dataset_file(path)
        usable = np.flatnonzero(arrays.lengths >= self.min_length)
        if len(usable) < 2:
            raise DataError(
                f"{where} has {len(usable)} segments of >= {self.min_length} residues; a "
                "train/val split needs at least 2"
            )
        sequences = [arrays.sequences[i] for i in usable]
        groups = sequences
        if self.cluster_sampling:
            groups = cluster_sequences(sequences, similarity=self.cluster_similarity).tolist()
        try:
            train_pos, val_pos = split_train_val(
                len(usable), val_fraction=self.val_fraction, seed=self.seed, groups=groups
            )
        except ValueError as error:  # e.g. every segment one sequence (cluster): no training
            raise DataError(f"{where}: {error}") from error
        if self.dataset_size is not None and self.dataset_size < len(train_pos):
            rng = np.random.default_rng((self.seed, 1))
            train_pos = np.sort(rng.choice(train_pos, size=self.dataset_size, replace=False))
        train_idx, val_idx = usable[train_pos], usable[val_pos]
        if self.cluster_sampling:
            self.train_groups = np.asarray(groups, dtype=np.int64)[train_pos]
        if self.validation_size is not None and self.validation_size < len(val_idx):
            rng = np.random.default_rng((self.seed, 2))
            val_idx = np.sort(rng.choice(val_idx, size=self.validation_size, replace=False))
        if len(val_idx) > len(train_idx):
            warnings.warn(
                f"validation ({len(val_idx)} segments) is larger than training "
                f"({len(train_idx)}): raise dataset_size or lower val_fraction",
                stacklevel=2,
            )
        self.arrays, self.dataset_path = arrays, path
        joins = dict(
            concatenate=self.concatenate,
            join_residue_gap=self.join_residue_gap,
            join_clearance=self.join_clearance,
        )
        self.train_dataset = CaDataset(
            arrays=arrays,
            indices=train_idx,
            max_length=self.max_length,
            random_crop=True,
            seed=self.seed,
            **joins,
        )
        self.val_dataset = CaDataset(
            arrays=arrays,
            indices=val_idx,
            max_length=self.max_length,
            random_crop=False,
            seed=self.seed,
            **joins,
        )

    def summary(self) -> dict[str, Any]:
        """What the data module serves (after :meth:`setup`): the sources (``"bundled"`` for
        the packaged set), the dataset file and its cache key (the fingerprint in a cache
        file's name ``ca_dataset_<key>.npz``; None for the bundled set or a given ``.npz``),
        the segments of the file and those long enough, and the segments, chains and residues
        of the training and validation sides (and the training clusters with cluster
        sampling)."""
        train, val = self._require(self.train_dataset), self._require(self.val_dataset)
        arrays, path = self.arrays, self.dataset_path
        assert arrays is not None and path is not None

        def side(indices: np.ndarray) -> dict[str, int]:
            chains = {str(arrays.names[i]).rsplit("_", 1)[0] for i in indices}
            residues = int(arrays.lengths[indices].sum())
            return {"segments": len(indices), "chains": len(chains), "residues": residues}

        cached = uses_cache(self.sources)
        return {
            "sources": list(self.sources) or "bundled",
            "dataset_file": str(path.resolve()),
            "cache_key": path.stem.removeprefix("ca_dataset_") if cached else None,
            "segments_in_file": len(arrays),
            "segments_usable": int((arrays.lengths >= self.min_length).sum()),
            "min_length": self.min_length,
            "train": {**side(train.indices), "clusters": self.num_train_clusters},
            "validation": side(val.indices),
        }

    @property
    def num_train(self) -> int:
        """Training segments (after :meth:`setup`)."""
        return len(self._require(self.train_dataset))

    @property
    def num_val(self) -> int:
        """Validation segments (after :meth:`setup`)."""
        return len(self._require(self.val_dataset))

    @staticmethod
    def _require(dataset: CaDataset | None) -> CaDataset:
        if dataset is None:
            raise RuntimeError("call setup() first")
        return dataset

    def set_max_length(self, max_length: int) -> None:
        """Change the crop length of both datasets; the next epoch's batches use it."""
        self.max_length = int(max_length)
        for dataset in (self.train_dataset, self.val_dataset):
            if dataset is not None:
                dataset.set_max_length(max_length)

    def _replicas(self) -> tuple[int, int, int]:
        """``(data-parallel ranks, this process's data-parallel rank, accumulation steps)``
        from the trainer (1, 0, 1 without one). A parallel strategy names its data-parallel
        ranks (Lightning's ``ModelParallelStrategy``: its mesh's data dimension, so the
        processes of a sequence group read the same batches); with ``sequence_shards`` given
        here, ranks ``g`` of one chain's sequence group share ``g // sequence_shards``, as in
        the ``(data, sequence)`` device mesh."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0, 1
        accumulation = int(trainer.accumulate_grad_batches)
        strategy = getattr(trainer, "strategy", None)
        if isinstance(strategy, ParallelStrategy) and self.sequence_shards == 1:
            kwargs = strategy.distributed_sampler_kwargs
            return int(kwargs["num_replicas"]), int(kwargs["rank"]), accumulation
        world, rank = int(trainer.world_size), int(trainer.global_rank)
        if world % self.sequence_shards:
            raise ValueError(f"{self.sequence_shards} sequence shards in a world of {world}")
        shards = self.sequence_shards
        return world // shards, rank // shards, accumulation

    @property
    def num_train_clusters(self) -> int | None:
        """Sequence clusters among the training segments (None without cluster sampling)."""
        self._require(self.train_dataset)
        return None if self.train_groups is None else len(np.unique(self.train_groups))

    def _loader(
        self, dataset: CaDataset, *, shuffle: bool, groups: np.ndarray | None = None
    ) -> DataLoader:
        num_replicas, rank, accumulation = self._replicas()
        sampler = LengthBucketBatchSampler(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
            accumulation=accumulation,
            even=shuffle or self.even_validation,
            epoch_source=self._current_epoch if shuffle else None,
            skip_source=self._batches_done if shuffle else None,
            groups=groups,
        )
        what = "training" if shuffle else "validation"
        if sampler.fewest_batches() == 0:
            raise DataError(
                f"{sampler.items_per_epoch()} {what} chain(s) per epoch cannot give each of the "
                f"{num_replicas} data-parallel rank(s) a batch: use more data or fewer ranks"
            )
        left_out = sampler.left_out_per_epoch()
        if left_out and rank == 0 and (what, left_out) not in self._warned:
            self._warned.add((what, left_out))
            total = sampler.items_per_epoch()
            warnings.warn(
                f"{left_out} of {total} {what} chain(s) per epoch are left out: "
                f"the last step's chains cannot be shared out to {num_replicas} rank(s) with "
                f"non-empty batches of at most {self.batch_size} (the epoch's shuffle leaves out "
                "other chains each epoch); a chain count per epoch that divides evenly avoids it",
                stacklevel=2,
            )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_ca_batch,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def _current_epoch(self) -> int:
        """The epoch the trainer is about to run (0 without a trainer), read by the sampler at
        each ``__iter__``: the fit loop's count of processed epochs, which Lightning also gives
        to samplers (``current_epoch`` lags behind it when resuming an end-of-epoch checkpoint).
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def _batches_done(self) -> int:
        """Training batches of the current epoch already trained when its iterator starts: 0,
        except in a run resumed from a checkpoint written in the middle of an epoch (a
        time-budget or Ctrl-C stop, :mod:`genie.training.last_checkpoint`), which Lightning
        restores before it creates that epoch's iterator. Read from the fit loop: between two
        epochs (a new epoch's iterator, also after an epoch-end checkpoint) no epoch is in
        progress or its batch count was reset; a restored epoch in progress counts its
        processed batches (all of them after a checkpoint written at its end: nothing is left,
        and Lightning fetches nothing more of that epoch)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        epochs = trainer.fit_loop.epoch_progress.current
        if epochs.started <= epochs.processed:  # between epochs
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, length-bucketed, random crops; the epoch is read from the trainer."""
        dataset = self._require(self.train_dataset)
        return self._loader(dataset, shuffle=True, groups=self.train_groups)

    def val_dataloader(self) -> DataLoader:
        """Fixed order (sorted by length), centred crops."""
        return self._loader(self._require(self.val_dataset), shuffle=False)
