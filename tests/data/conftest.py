"""Fixtures that write tiny datasets in their own on-disk formats into a temporary root:
torchvision's CIFAR-10 pickles, and a folder of non-square colour PNGs (`imagefolder`)."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CIFAR_TRAIN_PER_BATCH = 20  # 5 batches -> 100 train images, 10 per class
CIFAR_TEST = 20


@dataclass
class FakeCifar:
    root: Path
    train_data: np.ndarray  # uint8 [100, 3072], CIFAR's flat CHW rows
    train_labels: np.ndarray
    test_data: np.ndarray  # uint8 [20, 3072]
    test_labels: np.ndarray


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCifar:
    """Writes `<tmp>/cifar-10-batches-py` in CIFAR-10's pickle format.

    The real files are Python 2 pickles whose byte-string keys torchvision decodes with
    `encoding="latin1"` into `"data"`, `"labels"`, `"label_names"`; a Python 3 pickle must
    therefore use str keys to be read the same way.

    torchvision verifies each file against a hard-coded md5. Rather than bypassing
    `_check_integrity`, the class's file lists are pointed at the md5s of the files written
    here, so torchvision's real integrity check runs (and passes) on them.
    """
    import torchvision.datasets

    rng = np.random.default_rng(1234)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    n_train = 5 * CIFAR_TRAIN_PER_BATCH
    train_data = rng.integers(0, 256, size=(n_train, 3072), dtype=np.uint8)
    train_labels = np.arange(n_train) % 10
    test_data = rng.integers(0, 256, size=(CIFAR_TEST, 3072), dtype=np.uint8)
    test_labels = (np.arange(CIFAR_TEST) * 3) % 10
    # A known pattern in test image 0: channel c holds 10 * (c + 1) at row c + 1, column 2c + 3
    # and 0 elsewhere, written in CIFAR's row layout (R plane, then G, then B; each row-major).
    test_data[0] = 0
    for c in range(3):
        test_data[0, c * 1024 + (c + 1) * 32 + (2 * c + 3)] = 10 * (c + 1)

    train_list = []
    for b in range(5):
        part = slice(b * CIFAR_TRAIN_PER_BATCH, (b + 1) * CIFAR_TRAIN_PER_BATCH)
        path = folder / f"data_batch_{b + 1}"
        _dump(path, {"data": train_data[part], "labels": train_labels[part].tolist()})
        train_list.append([path.name, _md5(path)])
    test_path = folder / "test_batch"
    _dump(test_path, {"data": test_data, "labels": test_labels.tolist()})
    meta_path = folder / "batches.meta"
    _dump(meta_path, {"label_names": [f"class{i}" for i in range(10)]})

    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", train_list)
    monkeypatch.setattr(cifar, "test_list", [[test_path.name, _md5(test_path)]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": _md5(meta_path)})
    return FakeCifar(tmp_path, train_data, train_labels, test_data, test_labels)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Writes `<tmp>/MNIST/raw` idx files: 100 train and 20 test 28x28 images.

    Returns:
        (root, test images [20, 28, 28], test labels [20]).
    """
    rng = np.random.default_rng(7)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_x = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    _write_idx(raw / "train-images-idx3-ubyte", train_x)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(100) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(20) % 10)
    return tmp_path, test_x, np.arange(20) % 10


# --- an image folder of your own: non-square colour PNGs -------------------------------------

HEIGHT, WIDTH = 12, 20
CLASSES = ("circle", "bar", "blank")


def _image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 12x20 RGB image of one of three easy patterns, with noise."""
    canvas = rng.integers(0, 40, size=(HEIGHT, WIDTH, 3))
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    if kind == "circle":
        canvas[(y - 6) ** 2 + (x - rng.integers(6, 14)) ** 2 <= 16] = (220, 60, 60)
    elif kind == "bar":
        canvas[:, rng.integers(3, 17)] = (60, 220, 60)
    return canvas.astype(np.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<root>/<class>/<n>.png`: 3 classes x 30 non-square colour images, no train/test folders."""
    root = tmp_path_factory.mktemp("my_images")
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (root / kind).mkdir()
        for n in range(30):
            Image.fromarray(_image(kind, rng)).save(root / kind / f"{n:03d}.png")
    return root
