"""Tests of genie.data.datamodule on the bundled default set, real files and a Lightning run."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from genie.data.datamodule import CaDataModule
from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.data.structure_io import write_ca_structure


def _module(**overrides) -> CaDataModule:
    settings = {
        "cache_dir": "unused-for-default",
        "min_length": 40,
        "max_length": 64,
        "batch_size": 4,
        "val_fraction": 0.1,
        "seed": 0,
        "num_workers": 0,
    }
    return CaDataModule(**{**settings, **overrides})


def test_package_exports_resolve():
    import genie.data

    assert sorted(genie.data.__all__) == sorted(genie.data._EXPORTS)
    for name in genie.data.__all__:
        assert getattr(genie.data, name) is not None
    assert genie.data.CaDataModule is CaDataModule


def test_default_dataset_batches():
    module = _module(sources=None)
    module.prepare_data()
    module.setup("fit")
    assert (module.num_train, module.num_val) == (45, 5)
    train_names = {str(module.arrays.names[i]) for i in module.train_dataset.indices}
    val_names = {str(module.arrays.names[i]) for i in module.val_dataset.indices}
    assert not train_names & val_names and len(train_names | val_names) == 50
    batches = list(module.train_dataloader())
    assert len(batches) == 12  # ceil(45 / 4)
    for batch in batches:
        b, n = batch["mask"].shape
        assert batch["coords"].shape == (b, n, 3) and batch["coords"].dtype == torch.float32
        assert batch["residue_index"].shape == (b, n) and batch["residue_index"].dtype == torch.long
        assert batch["breaks"].shape == (b, n) and batch["breaks"].dtype == torch.bool
        assert batch["lengths"].shape == (b,) and len(batch["names"]) == b
        assert n == batch["lengths"].max() <= 64  # padded per batch, cropped to max_length
        assert batch["mask"].sum(1).tolist() == batch["lengths"].tolist()
    seen = [name for batch in batches for name in batch["names"]]
    assert sorted(seen) == sorted(train_names)


def test_validation_is_deterministic_and_set_max_length():
    module = _module(max_length=100)
    module.setup()
    first = [(b["names"], b["coords"]) for b in module.val_dataloader()]
    second = [(b["names"], b["coords"]) for b in module.val_dataloader()]
    assert [names for names, _ in first] == [names for names, _ in second]
    for (_, a), (_, b) in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
    assert max(c.shape[1] for _, c in first) <= 100
    module.set_max_length(30)
    assert max(b["coords"].shape[1] for b in module.train_dataloader()) == 30
    assert max(b["coords"].shape[1] for b in module.val_dataloader()) == 30


def test_batches_do_not_depend_on_worker_count():
    loaders = []
    for workers in (0, 2):
        module = _module(num_workers=workers, max_length=48)
        module.setup()
        loader = module.train_dataloader()
        loader.batch_sampler.set_epoch(3)
        loaders.append(list(loader))
    for serial, parallel in zip(*loaders, strict=True):
        assert serial["names"] == parallel["names"]
        torch.testing.assert_close(serial["coords"], parallel["coords"])


def test_dataset_size_caps_training():
    module = _module(dataset_size=10)
    module.setup()
    assert (module.num_train, module.num_val) == (10, 5)
    again = _module(dataset_size=10)
    again.setup()
    np.testing.assert_array_equal(module.train_dataset.indices, again.train_dataset.indices)


def test_the_summary_names_the_bundled_data_and_counts_both_sides():
    module = _module(dataset_size=10)
    module.setup()
    summary = module.summary()
    whole = load_dataset_file(default_dataset_path())
    assert summary["sources"] == "bundled" and summary["cache_key"] is None
    assert summary["dataset_file"] == str(default_dataset_path().resolve())
    assert summary["segments_in_file"] == 50
    assert summary["segments_usable"] == int((whole.lengths >= 40).sum())
    train, val = summary["train"], summary["validation"]
    assert (train["segments"], val["segments"]) == (10, 5) and train["clusters"] is None
    assert (train["chains"], val["chains"]) == (10, 5)  # TS50: one segment per chain
    by_name = dict(zip(whole.names.tolist(), whole.lengths.tolist(), strict=True))
    names = [str(module.arrays.names[i]) for i in module.train_dataset.indices]
    assert train["residues"] == sum(by_name[n] for n in names)


def test_the_summary_of_a_cache_names_its_key_and_chains(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, breaks in (("a", False), ("b", True), ("c", False), ("d", True)):
        steps = rng.normal(size=(90, 3))
        trace = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
        if breaks:
            trace[45:] += 30.0  # a chain break: two segments of 45 from one chain
        write_ca_structure(tmp_path / "in" / f"{name}.pdb", trace)
    module = _module(sources=[str(tmp_path / "in")], cache_dir=tmp_path / "cache",
                     val_fraction=0.3)  # fmt: skip
    module.prepare_data()
    module.setup()
    summary = module.summary()
    (cache,) = (tmp_path / "cache").glob("ca_dataset_*.npz")
    assert summary["sources"] == [str(tmp_path / "in")]
    assert summary["cache_key"] == cache.stem.removeprefix("ca_dataset_")
    assert summary["dataset_file"] == str(cache.resolve())
    assert summary["segments_in_file"] == summary["segments_usable"] == 6
    sides = (summary["train"], summary["validation"])
    assert sum(side["segments"] for side in sides) == 6
    assert sum(side["chains"] for side in sides) == 4  # a gapped chain's pieces count once
    assert sum(side["residues"] for side in sides) == 4 * 90


def test_an_unreadable_cache_is_reported_once_and_rebuilt(tmp_path, capsys):
    for i, n in enumerate((50, 55, 60, 65)):  # other lengths: other sequences, 4 groups
        line = np.stack([np.arange(n) * 3.8, np.zeros(n), np.zeros(n)], axis=1)
        write_ca_structure(tmp_path / "in" / f"{i}.pdb", line)
    options = dict(sources=[str(tmp_path / "in")], cache_dir=tmp_path / "cache", val_fraction=0.3)
    first = _module(**options)
    first.prepare_data()
    (cache,) = (tmp_path / "cache").glob("ca_dataset_*.npz")
    with np.load(cache) as data:  # its metadata intact, an array lost
        kept = {key: data[key] for key in data.files if key != "coords"}
    with open(cache, "wb") as handle:
        np.savez(handle, **kept)
    capsys.readouterr()
    module = _module(**options)
    module.prepare_data()
    module.setup()
    out = capsys.readouterr().out
    assert out.count(f"cache {cache} unreadable") == 1 and out.count("; rebuilding") == 1
    assert module.num_train + module.num_val == 4


def test_min_length_filter_and_too_few_segments(tmp_path):
    module = _module(min_length=150)
    module.setup()
    assert module.num_train + module.num_val == int((module.arrays.lengths >= 150).sum())
    with pytest.raises(ValueError, match="at least 2"):
        _module(min_length=174).setup()
    helix_like = np.stack([np.arange(50) * 3.8, np.zeros(50), np.zeros(50)], axis=1)
    write_ca_structure(tmp_path / "one.pdb", helix_like)
    lonely = _module(sources=[str(tmp_path / "one.pdb")], cache_dir=tmp_path / "cache")
    lonely.prepare_data()
    with pytest.raises(ValueError, match="1 segments"):
        lonely.setup()
    with pytest.raises(ValueError, match="val_fraction"):
        _module(val_fraction=0.0)
    with pytest.raises(RuntimeError, match="setup"):
        _ = _module().num_train


def test_real_sources_build_the_cache(tmp_path, shared_pdb):
    module = _module(
        sources=[str(shared_pdb / "bench" / "ts50")],
        cache_dir=tmp_path,
        max_length=128,
        val_fraction=0.2,
        split_chain_breaks=True,
    )
    module.prepare_data()
    assert len(list(tmp_path.glob("ca_dataset_*.npz"))) == 1
    module.setup()
    assert (module.num_train, module.num_val) == (40, 10)
    batch = next(iter(module.train_dataloader()))
    assert batch["coords"].shape[0] == 4 and batch["coords"].shape[1] <= 128


class _Recorder(pl.LightningModule):
    """Records, per epoch, the sampler epoch seen by the dataset and the batch widths."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.epochs: list[int] = []
        self.widths: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        dataset = self.trainer.datamodule.train_dataset
        if batch_idx == 0:
            self.epochs.append(dataset.epoch)
        self.widths.setdefault(self.current_epoch, []).append(batch["coords"].shape[1])
        return (self.weight * batch["coords"].sum()).abs()

    def validation_step(self, batch, batch_idx):
        self.log("val_width", float(batch["coords"].shape[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class _GrowCrops(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            trainer.datamodule.set_max_length(32)


def test_lightning_sets_epochs_and_progressive_length():
    module = _module(max_length=16)
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[_GrowCrops()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few-workers and small-batch advice
        trainer.fit(model, datamodule=module)
    assert model.epochs == [0, 1, 2]  # Lightning's set_epoch reached the sampler and dataset
    assert max(model.widths[0]) == 16 and max(model.widths[1]) == max(model.widths[2]) == 32
    assert len(model.widths[0]) == 12


def test_processed_dataset_file_as_source(tmp_path):
    from genie.data.dataset_file import default_dataset_path

    dm = CaDataModule(
        sources=[str(default_dataset_path())], cache_dir=tmp_path, min_length=40, max_length=64,
        batch_size=4, val_fraction=0.1, seed=0, num_workers=0,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_train + dm.num_val == 50
    batch = next(iter(dm.train_dataloader()))
    assert batch["coords"].shape[-1] == 3
    missing = CaDataModule(
        sources=[str(tmp_path / "nope.npz")], cache_dir=tmp_path, min_length=40, max_length=64,
        batch_size=4, val_fraction=0.1, seed=0, num_workers=0,
    )  # fmt: skip
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        missing.prepare_data()
