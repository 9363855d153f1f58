"""Cα data pipeline: structure I/O, cached dataset files, torch datasets and the data module.

Names are imported lazily (PEP 562), so ``import genie.data.structure_io`` or the preprocessing
command line and its worker processes do not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CaSegment": "structure_io",
    "StructureReadError": "structure_io",
    "read_ca_segments": "structure_io",
    "write_ca_structure": "structure_io",
    "CaDatasetArrays": "dataset_file",
    "FORMAT_VERSION": "dataset_file",
    "default_dataset_path": "dataset_file",
    "load_dataset_file": "dataset_file",
    "save_dataset_file": "dataset_file",
    "BuildSummary": "preprocess",
    "build_dataset": "preprocess",
    "collect_structure_files": "preprocess",
    "CaDataset": "dataset",
    "LengthBucketBatchSampler": "sampler",
    "collate_ca_batch": "dataset",
    "split_train_val": "dataset",
    "CaDataModule": "datamodule",
}

__all__ = [
    "BuildSummary",
    "CaDataModule",
    "CaDataset",
    "CaDatasetArrays",
    "CaSegment",
    "FORMAT_VERSION",
    "LengthBucketBatchSampler",
    "StructureReadError",
    "build_dataset",
    "collate_ca_batch",
    "collect_structure_files",
    "default_dataset_path",
    "load_dataset_file",
    "read_ca_segments",
    "save_dataset_file",
    "split_train_val",
    "write_ca_structure",
]

if TYPE_CHECKING:
    from genie.data.datamodule import CaDataModule
    from genie.data.dataset import CaDataset, collate_ca_batch, split_train_val
    from genie.data.dataset_file import (
        FORMAT_VERSION,
        CaDatasetArrays,
        default_dataset_path,
        load_dataset_file,
        save_dataset_file,
    )
    from genie.data.preprocess import BuildSummary, build_dataset, collect_structure_files
    from genie.data.sampler import LengthBucketBatchSampler
    from genie.data.structure_io import (
        CaSegment,
        StructureReadError,
        read_ca_segments,
        write_ca_structure,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genie.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"genie.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
