"""Tests of genie.data.clusters and cluster-balanced sampling (batch sampler, data module)."""

from __future__ import annotations

import numpy as np
import pytest

from genie.data.clusters import (
    NUM_KMERS,
    cluster_sequences,
    kmer_similarity,
    one_per_cluster,
)
from genie.data.datamodule import CaDataModule
from genie.data.dataset import CaDataset
from genie.data.dataset_file import CaDatasetArrays, save_dataset_file
from genie.data.sampler import LengthBucketBatchSampler

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def _random_sequence(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(AMINO, size=n))


def _mutant(rng: np.random.Generator, seq: str, fraction: float) -> str:
    """``seq`` with ``fraction`` of its positions replaced by random residues."""
    chars = np.array(list(seq))
    sites = rng.choice(len(seq), size=round(fraction * len(seq)), replace=False)
    chars[sites] = rng.choice(AMINO, size=len(sites))
    return "".join(chars)


def test_similarity_hand_computed():
    # 3-mers {ACD, CDA, DAC} and {ACD, CDE, DEF}: one of three shared, both sets of size 3
    chance = 3 / NUM_KMERS
    expected = (1 / 3 - chance) / (1 - chance)
    assert kmer_similarity("ACDAC", "ACDEF") == pytest.approx(expected)
    assert kmer_similarity("ACDEFGH", "ACDEFGH") == pytest.approx(1.0)
    assert kmer_similarity("AC", "ACDEF") == 0.0  # no 3-mer at all


def test_families_mutants_fragments_and_unrelated():
    rng = np.random.default_rng(0)
    parents = [_random_sequence(rng, 150) for _ in range(5)]
    sequences, family = [], []
    for f, parent in enumerate(parents):
        sequences += [parent, parent, _mutant(rng, parent, 0.03), parent[40:120]]
        family += [f] * 4
    # a long unrelated chain holds ~17 % of all 3-mers: chance must not pull short chains in
    sequences.append(_random_sequence(rng, 2000))
    family.append(99)
    labels = cluster_sequences(sequences, similarity=0.3)
    family = np.array(family)
    for f in np.unique(family):
        assert len(np.unique(labels[family == f])) == 1, f"family {f} split"
    assert len(np.unique(labels)) == len(np.unique(family))
    assert labels[0] == 0 and set(labels) == set(range(labels.max() + 1))  # numbered by appearance


def test_similarity_threshold_orders_identity():
    rng = np.random.default_rng(1)
    parent = _random_sequence(rng, 300)
    close, far = _mutant(rng, parent, 0.1), _mutant(rng, parent, 0.6)
    assert kmer_similarity(parent, close) > 0.5 > 0.1 > kmer_similarity(parent, far)
    labels = cluster_sequences([parent, close, far], similarity=0.5)
    assert labels[0] == labels[1] != labels[2]
    with pytest.raises(ValueError, match="similarity"):
        cluster_sequences([parent], similarity=0.0)


def test_one_per_cluster_draws_every_member_over_epochs():
    labels = np.array([0, 0, 0, 1, 2, 2])
    seen = set()
    for epoch in range(50):
        picked = one_per_cluster(labels, np.random.default_rng(epoch))
        assert sorted(labels[picked].tolist()) == [0, 1, 2]
        seen.update(picked.tolist())
    assert seen == set(range(6))


def _arrays(sequences: list[str]) -> CaDatasetArrays:
    lengths = np.array([len(s) for s in sequences])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    coords = np.zeros((offsets[-1], 3), dtype=np.float32)
    coords[:, 0] = np.arange(offsets[-1]) * 3.8
    return CaDatasetArrays(
        coords=coords,
        offsets=offsets,
        names=np.array([f"s{i}" for i in range(len(sequences))]),
        sequences=tuple(sequences),
        breaks=np.zeros(offsets[-1], dtype=bool),
    )


def test_batch_sampler_one_item_per_group_per_epoch():
    rng = np.random.default_rng(2)
    arrays = _arrays([_random_sequence(rng, int(n)) for n in rng.integers(40, 90, size=12)])
    dataset = CaDataset(arrays=arrays, max_length=64, random_crop=True)
    groups = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 5])
    sampler = LengthBucketBatchSampler(dataset, batch_size=4, shuffle=True, seed=0, groups=groups)
    draws = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        items = [key[0] for batch in sampler for key in batch]
        assert len(list(sampler)) == len(sampler) == 2  # 6 groups / batch 4
        assert sorted(groups[items].tolist()) == list(range(6))
        draws.append(tuple(sorted(items)))
    assert len(set(draws)) > 1  # a fresh draw per epoch
    validation = LengthBucketBatchSampler(
        dataset, batch_size=4, shuffle=False, seed=0, groups=groups
    )
    assert sum(len(b) for b in validation) == 12  # unshuffled mode ignores groups
    with pytest.raises(ValueError, match="groups"):
        LengthBucketBatchSampler(dataset, batch_size=4, shuffle=True, seed=0, groups=groups[:5])


def test_datamodule_splits_by_cluster_and_balances(tmp_path):
    rng = np.random.default_rng(3)
    sequences, family = [], []
    for f in range(8):  # families of 1..8 near-identical members
        parent = _random_sequence(rng, 80)
        for _ in range(f + 1):
            sequences.append(_mutant(rng, parent, 0.02))
            family.append(f)
    family = np.array(family)
    path = save_dataset_file(tmp_path / "families.npz", _arrays(sequences))

    def data_module(**clusters) -> CaDataModule:
        module = CaDataModule(
            sources=[str(path)], cache_dir=tmp_path, min_length=40, max_length=64, batch_size=2,
            val_fraction=0.2, seed=0, num_workers=0, **clusters,
        )  # fmt: skip
        module.setup("fit")
        return module

    module = data_module(cluster_sampling=True)
    train_fams = set(family[module.train_dataset.indices])
    val_fams = set(family[module.val_dataset.indices])
    assert not train_fams & val_fams  # no family straddles the split
    assert module.num_train_clusters == len(train_fams)
    names = [name for batch in module.train_dataloader() for name in batch["names"]]
    picked = family[[int(name[1:]) for name in names]]
    assert sorted(picked.tolist()) == sorted(train_fams)  # exactly one segment per cluster
    plain = data_module()
    assert plain.num_train_clusters is None
    assert sum(len(b["names"]) for b in plain.train_dataloader()) == plain.num_train
