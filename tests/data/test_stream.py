"""The streaming path (`dataset.loader: stream`, `harness.data.stream`): the same images, the
same batches and the same results as the tensor path, on a fake image folder and a fake CIFAR
folder written in their own formats; `auto` streams only what would not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.contract import TRAIN_SECONDS
from harness.data import load_dataset
from harness.data.stream import STREAM, TENSOR, StreamedImages, batches_of, choose_loader
from harness.training import shuffled_batches
from harness.trial import train


def test_streamed_splits_hold_the_tensor_paths_images_exactly(image_folder: Path) -> None:
    tensors = load_dataset("imagefolder", root=image_folder, loader="tensor")
    streamed = load_dataset("imagefolder", root=image_folder, loader="stream")
    assert tensors.loader == TENSOR and streamed.loader == STREAM
    for part in ("train_x", "val_x", "test_x"):
        held, read = getattr(tensors, part), getattr(streamed, part)
        assert isinstance(read, StreamedImages) and read.shape == held.shape and len(read) == len(held)
        assert torch.equal(read[:], held)
        assert torch.equal(read[3:9], held[3:9])
        index = torch.tensor([5, 0, 7, 7])
        assert torch.equal(read[index], held[index])
    assert tensors.digests == streamed.digests and tensors.mean == streamed.mean
    assert torch.equal(tensors.train_y, streamed.train_y)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_dataloader_delivers_the_epochs_batches_in_order(image_folder: Path, workers: int) -> None:
    tensors = load_dataset("imagefolder", root=image_folder, loader="tensor")
    streamed = load_dataset("imagefolder", root=image_folder, loader="stream", workers=workers)
    order = shuffled_batches(len(tensors.train_x), 16, torch.Generator().manual_seed(3))
    read = list(batches_of(streamed.train_x, order))
    held = list(batches_of(tensors.train_x, order))
    assert len(read) == len(order) and all(torch.equal(a, b) for a, b in zip(read, held, strict=True))


def _metrics(make_config, teacher_cache: Path, loader: str, **overrides) -> dict[str, float]:
    config = make_config(**{"dataset.loader": loader, "train.epochs": 2, "train.batch_size": 16, **overrides})
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    return {key: value for key, value in metrics.items() if key != TRAIN_SECONDS}  # all but the clock


def test_kd_on_an_image_folder_gives_the_same_results_streamed(make_config, teacher_cache, image_folder) -> None:
    folder = {"dataset.name": "imagefolder", "dataset.root": str(image_folder), "student.width": 4}
    folder |= {"teacher.width": 4, "teacher.epochs": 2, "eval.noise": {"gaussian": [0.1]}}
    held = _metrics(make_config, teacher_cache, "tensor", method="kd", **folder)
    streamed = _metrics(make_config, teacher_cache, "stream", method="kd", **folder, **{"dataset.workers": 1})
    assert held.keys() == streamed.keys() and "noise/gaussian/0.1" in held
    assert streamed == pytest.approx(held, abs=1e-6)


def test_direct_training_on_a_cifar_folder_gives_the_same_results_streamed(
    make_config, teacher_cache, fake_cifar10
) -> None:
    cifar = {"dataset.name": "cifar10", "dataset.root": str(fake_cifar10.root), "student.width": 4}
    held = _metrics(make_config, teacher_cache, "tensor", method="direct", **cifar)
    streamed = _metrics(make_config, teacher_cache, "stream", method="direct", **cifar)
    assert streamed == pytest.approx(held, abs=1e-6)


def test_auto_streams_only_what_would_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.data.stream as stream

    cpu = torch.device("cpu")
    monkeypatch.setattr(stream, "free_memory", lambda device: 1000)
    assert choose_loader("auto", 400, cpu) == TENSOR
    assert choose_loader("auto", 600, cpu) == STREAM  # more than half of what is free
    assert choose_loader("tensor", 10**12, cpu) == TENSOR  # asked for: kept
    monkeypatch.setattr(stream, "free_memory", lambda device: 0)  # unknown: the tensor path
    assert choose_loader("auto", 10**12, cpu) == TENSOR
    assert load_dataset("digits", loader="auto").loader == TENSOR  # on this machine
