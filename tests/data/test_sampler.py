"""Tests of genie.data.sampler across ranks and accumulation steps: every chain of an epoch once,
the same number of batches on every rank, an optimiser step's chains independent of how many
ranks share them; and the data module's layout from the trainer."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from genie.data.datamodule import CaDataModule
from genie.data.dataset import CaDataset
from genie.data.dataset_file import arrays_from_segments
from genie.data.sampler import LengthBucketBatchSampler
from genie.data.structure_io import CaSegment


def _dataset(n: int, seed: int = 0) -> CaDataset:
    rng = np.random.default_rng(seed)
    segments = [
        CaSegment(f"s{i}", rng.normal(size=(int(m), 3)).astype(np.float32), "A" * int(m),
                  np.zeros(int(m), dtype=bool))
        for i, m in enumerate(rng.integers(3, 300, size=n))
    ]  # fmt: skip
    return CaDataset(arrays=arrays_from_segments(segments), max_length=1000, random_crop=True)


def _shares(dataset, *, ranks, epoch=2, **kwargs) -> list[list[list[int]]]:
    """Every rank's batches (item indices) of one epoch."""
    shares = []
    for rank in range(ranks):
        sampler = LengthBucketBatchSampler(dataset, seed=5, num_replicas=ranks, rank=rank,
                                           pool_batches=2, **kwargs)  # fmt: skip
        sampler.set_epoch(epoch)
        shares.append([[key[0] for key in batch] for batch in sampler])
        assert len(shares[-1]) == len(sampler)
    return shares


@pytest.mark.parametrize(
    ("n", "b", "ranks", "accumulation"),
    [(n, b, r, a) for n, b, r, a in itertools.product([5, 37, 96, 101], [1, 3], [2, 3], [1, 2])
     if n >= r],
)  # fmt: skip
def test_every_chain_of_an_epoch_once_and_equal_batch_counts(n, b, ranks, accumulation):
    dataset = _dataset(n)
    shares = _shares(dataset, ranks=ranks, batch_size=b, shuffle=True, accumulation=accumulation)
    assert len({len(share) for share in shares}) == 1  # no rank waits for another
    flat = [i for share in shares for batch in share for i in batch]
    assert all(1 <= len(batch) <= b for share in shares for batch in share)
    assert len(flat) == len(set(flat))  # no duplicates
    sampler = LengthBucketBatchSampler(dataset, batch_size=b, shuffle=True, seed=5,
                                       num_replicas=ranks, accumulation=accumulation)  # fmt: skip
    left_out = sampler.left_out_per_epoch()
    assert len(flat) == n - left_out and left_out < ranks  # none missing but the remainder
    if b > 1 and n % (b * ranks * accumulation) >= ranks:
        assert left_out == 0


def test_a_step_holds_the_chains_of_one_process_at_the_effective_batch():
    # 2 ranks × batch 2 × 3 accumulation steps = one process at batch 12, step by step
    dataset = _dataset(101)
    shares = _shares(dataset, ranks=2, batch_size=2, shuffle=True, accumulation=3)
    (single,) = _shares(dataset, ranks=1, batch_size=12, shuffle=True)
    assert len(single) == 9  # 8 steps of 12, one of 5
    for step, chains in enumerate(single):
        window = [b for share in shares for b in share[3 * step : 3 * step + 3]]
        assert sorted(i for b in window for i in b) == sorted(chains)
    # an accumulation step's micro-batches are neighbours in the length order: similar lengths
    lengths = dataset.crop_lengths
    for first, second in zip(shares[0], shares[1], strict=True):
        spread = lengths[first + second].max() - lengths[first + second].min()
        assert spread <= lengths.max() - lengths.min()


def test_epochs_are_deterministic_and_differ():
    dataset = _dataset(40)
    first = _shares(dataset, ranks=2, batch_size=2, shuffle=True, epoch=1)
    assert _shares(dataset, ranks=2, batch_size=2, shuffle=True, epoch=1) == first
    assert _shares(dataset, ranks=2, batch_size=2, shuffle=True, epoch=2) != first


def test_cluster_sampled_epoch_is_shared_out_whole():
    dataset = _dataset(60)
    groups = np.arange(60) // 3  # 20 clusters of 3
    shares = _shares(dataset, ranks=2, batch_size=3, shuffle=True, groups=groups)
    flat = [i for share in shares for batch in share for i in batch]
    assert len(flat) == 20 and len(set(groups[flat])) == 20  # one chain of every cluster


@pytest.mark.parametrize("even", [False, True])
def test_validation_deals_every_chain_once(even):
    dataset = _dataset(23)
    shares = _shares(dataset, ranks=2, batch_size=3, shuffle=False, even=even)
    flat = [i for share in shares for batch in share for i in batch]
    assert sorted(flat) == list(range(23))
    counts = [len(share) for share in shares]
    assert (counts[0] == counts[1]) if even else (abs(counts[0] - counts[1]) <= 1)
    # the global order does not depend on the ranks: batches of a single process, dealt out
    if not even:
        (single,) = _shares(dataset, ranks=1, batch_size=3, shuffle=False)
        assert shares[0] == single[0::2] and shares[1] == single[1::2]


def test_data_module_reads_ranks_shards_and_accumulation_from_the_trainer():
    module = CaDataModule(cache_dir="unused", min_length=40, max_length=64, batch_size=2,
                          val_fraction=0.1, seed=0, num_workers=0, sequence_shards=2)  # fmt: skip
    module.setup("fit")
    names = {}
    epoch = SimpleNamespace(  # between epochs: no batch of the coming one trained yet
        epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=0, started=0))
    )
    for rank in range(4):  # 4 processes = 2 data-parallel ranks × 2 sequence shards
        module.trainer = SimpleNamespace(world_size=4, global_rank=rank, accumulate_grad_batches=2,
                                         fit_loop=epoch)  # fmt: skip
        loader = module.train_dataloader()
        sampler = loader.batch_sampler
        assert (sampler.num_replicas, sampler.rank, sampler.accumulation) == (2, rank // 2, 2)
        names[rank] = [batch["names"] for batch in loader]
    assert names[0] == names[1] and names[2] == names[3]  # one chain per sequence group
    seen = [n for rank in (0, 2) for batch in names[rank] for n in batch]
    assert len(seen) == len(set(seen)) == module.num_train  # 45 chains: steps of 8, then 5
