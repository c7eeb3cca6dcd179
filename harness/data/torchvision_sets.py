"""torchvision datasets read from `dataset.root`: `mnist`, `fashion-mnist`, `cifar10`, `cifar100`.

Each is read with its torchvision class (`train=True` for train + validation, `train=False`
for test) and its `.data` / `.targets` converted straight to arrays, without a DataLoader.
Files are fetched only with `dataset.download: true`. CIFAR trains with `crop_flip` by default
(`train.augment: auto`), the MNIST family with `shift`. The `check` of each entry looks for the
files torchvision will read, before anything is loaded, so a missing dataset fails fast with
a one-line HarnessInputError naming the folder expected under the root.

Expected layout under the root (torchvision's own):

* `mnist`: `<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`
* `fashion-mnist`: the same under `<root>/FashionMNIST/raw`
* `cifar10`: `<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`
* `cifar100`: `<root>/cifar-100-python/{train,test,meta}`

torchvision is imported only when one of these entries is checked or loaded.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torch

from harness.data.entry import DatasetEntry, RawArrays
from harness.errors import HarnessInputError

# Errors torchvision raises for missing, partial or corrupted files (and failed downloads:
# URLError is an OSError). Anything else is a bug and propagates as is.
_READ_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    EOFError,
    AssertionError,
    pickle.UnpicklingError,
)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _dataset_class(class_name: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, class_name)


def _expected_files(class_name: str, root: str) -> tuple[str, list[str], list[str]]:
    """Returns (folder, files expected in it, alternative legacy files) for a class."""
    cls = _dataset_class(class_name)
    if hasattr(cls, "base_folder"):  # CIFAR10 / CIFAR100
        folder = os.path.join(root, cls.base_folder)
        files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return folder, files, []
    # MNIST family: uncompressed idx files under <root>/<ClassName>/raw, or the legacy
    # processed tensors under <root>/<ClassName>/processed.
    folder = os.path.join(root, cls.__name__, "raw")
    files = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    legacy = [os.path.join(root, cls.__name__, "processed", name) for name in (cls.training_file, cls.test_file)]
    return folder, files, legacy


def _make_check(name: str, class_name: str, layout: str) -> Any:
    def check(root: str | None, download: bool) -> None:
        if root is None:
            raise HarnessInputError(
                f"dataset {name!r} reads files from disk: set dataset.root to the folder that "
                f"holds {layout} (or where it may be downloaded with dataset.download: true)"
            )
        if os.path.exists(root) and not os.path.isdir(root):
            raise HarnessInputError(f"dataset {name!r}: dataset.root {root} is not a folder")
        if download:
            return
        folder, files, legacy = _expected_files(class_name, root)
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if not missing or (legacy and all(os.path.isfile(p) for p in legacy)):
            return
        what = "folder not found" if not os.path.isdir(folder) else "missing " + ", ".join(missing)
        raise HarnessInputError(
            f"dataset {name!r}: files not found at {folder} ({what}); set dataset.root to the "
            f"folder that holds {layout}, or set dataset.download: true to fetch them"
        )

    return check


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.numpy()
    return np.asarray(values)


def _make_load(name: str, class_name: str, hwc: bool, num_classes: int) -> Any:
    def to_nchw(data: Any) -> np.ndarray:
        images = _as_numpy(data)
        if hwc:  # CIFAR: [N, H, W, C] -> [N, C, H, W]
            images = images.transpose(0, 3, 1, 2)
        else:  # MNIST family: [N, H, W] -> [N, 1, H, W]
            images = images[:, None, :, :]
        return np.ascontiguousarray(images, dtype=np.uint8)

    def load(root: str | None, download: bool) -> RawArrays:
        if root is None:  # check() reports this first; kept for direct callers
            raise HarnessInputError(f"dataset {name!r} needs dataset.root")
        cls = _dataset_class(class_name)
        try:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=download)
        except _READ_ERRORS as err:
            raise HarnessInputError(
                f"dataset {name!r}: torchvision could not read it under {root}: "
                f"{_one_line(err)}; fix the files, or set dataset.root / dataset.download: true"
            ) from err
        return RawArrays(
            x=to_nchw(train.data),
            y=np.asarray(_as_numpy(train.targets), dtype=np.int64),
            test_x=to_nchw(test.data),
            test_y=np.asarray(_as_numpy(test.targets), dtype=np.int64),
            num_classes=num_classes,
            scale=255.0,
        )

    return load


def _entry(name: str, class_name: str, layout: str, hwc: bool, num_classes: int) -> DatasetEntry:
    """`class_name`'s entry; `layout` (the folder under the root) is for messages, `hwc` says
    whether images are stored [N, H, W, C] (the colour sets, which train with `crop_flip`)."""
    return DatasetEntry(
        load=_make_load(name, class_name, hwc, num_classes),
        check=_make_check(name, class_name, layout),
        needs_root=True,
        augment="crop_flip" if hwc else "shift",
    )


# Registered in pyproject.toml (entry-point group snn_kd_harness.datasets).
MNIST = _entry("mnist", "MNIST", "MNIST/raw", False, 10)
FASHION_MNIST = _entry("fashion-mnist", "FashionMNIST", "FashionMNIST/raw", False, 10)
CIFAR10 = _entry("cifar10", "CIFAR10", "cifar-10-batches-py", True, 10)
CIFAR100 = _entry("cifar100", "CIFAR100", "cifar-100-python", True, 100)
