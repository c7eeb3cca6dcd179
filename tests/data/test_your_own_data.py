"""A researcher's own images end to end: a non-square colour image folder (PNG files on disk)
trains with every built-in family and every built-in method; `dataset.image_size` resizes any
dataset; a family that assumes square images is named, as bad input, before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config.resolve import trial_config
from harness.data import load_dataset
from harness.errors import PluginError
from harness.trial import train

HEIGHT, WIDTH = 12, 20  # the `image_folder` fixture's images (tests/data/conftest.py)


def test_the_folder_loads_as_non_square_splits_with_the_classes_sorted(image_folder: Path) -> None:
    data = load_dataset("imagefolder", root=image_folder)
    assert data.image_shape == (HEIGHT, WIDTH) and data.in_channels == 3 and data.num_classes == 3
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 90
    assert len(data.test_x) == 18  # the harness's stratified 20 % test split
    # Labels follow the sorted class names: bar 0, blank 1, circle 2; the "blank" images are dark.
    assert data.train_x[data.train_y == 1].mean() < data.train_x[data.train_y == 0].mean()


def test_image_size_resizes_a_shipped_set_to_a_non_square_shape() -> None:
    data = load_dataset("digits", image_size=[6, 10])
    native = load_dataset("digits")
    assert data.image_shape == (6, 10) and tuple(data.test_x.shape[1:]) == (1, 6, 10)
    assert data.digests["test"] != native.digests["test"]  # another input, another digest
    assert torch.equal(data.test_y, native.test_y)  # the same split, resized
    assert data.mean != native.mean


COMBINATIONS = [
    ("kd", "resnet", {"student.depth": 8}),
    ("kd", "vgg", {"student.depth": 5}),
    ("direct", "resnet", {"student.depth": 8}),
    ("direct", "vgg", {"student.depth": 5}),
    ("conversion", "resnet", {"student.depth": 8}),
    ("conversion", "vgg", {"student.depth": 5}),
]


@pytest.mark.parametrize(("method", "arch", "depth"), COMBINATIONS, ids=[f"{m}-{a}" for m, a, _ in COMBINATIONS])
def test_a_non_square_image_folder_trains_with_every_family_and_method(
    make_config, teacher_cache: Path, image_folder: Path, method: str, arch: str, depth: dict
) -> None:
    config = make_config(
        method,
        **{
            "dataset.name": "imagefolder",
            "dataset.root": str(image_folder),
            "student.arch": arch,
            "student.width": 4,
            **depth,
            "teacher.width": 4,
            "teacher.epochs": 2,
            "train.epochs": 2,
            "train.batch_size": 16,
        },
    )
    assert config.train.augment == "crop_flip"  # an image folder's own default
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


SQUARE_ONLY = '''
from torch import nn

from harness.models import ModelArgs, SpikingNetwork


class SquareNet(SpikingNetwork):
    """Sizes its classifier from the height alone, as if images were square."""

    def __init__(self, in_channels, num_classes, side, activation):
        super().__init__(in_channels, 4, activation)
        self.body = nn.ModuleDict()
        self.tap_channels = {}
        self.classifier = nn.Linear(4 * side * side, num_classes)

    def forward(self, x, time_steps=1, return_features=False):
        stem = self.stem(self.encoder(x, time_steps))
        h = self.stem_act(stem.expand(time_steps, *stem.shape[1:]).contiguous())
        return self.classifier(h.flatten(2))


class SquareOnly(ModelArgs):
    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max"):
        return SquareNet(in_channels, num_classes, image_shape[0], activation)
'''


def test_a_family_that_assumes_square_images_is_named_with_the_shape_before_training(
    install_plugin, teacher_cache: Path, image_folder: Path
) -> None:
    install_plugin("square-only", {"models": {"square": "square_only:SquareOnly"}}, {"square_only.py": SQUARE_ONLY})
    config = trial_config(
        {"method": "direct", "dataset.name": "imagefolder", "dataset.root": str(image_folder), "student.arch": "square"}
    )
    epochs: list[int] = []
    with pytest.raises(PluginError) as info:
        train(config, teacher_cache=teacher_cache, log=lambda _: None, report=lambda m, e, _: epochs.append(e))
    message = str(info.value)
    assert message.startswith("model family 'square' (entry point 'square' (square_only:SquareOnly) of square-only")
    assert f"cannot take 3 x {HEIGHT} x {WIDTH} (C x H x W) images" in message
    assert "\n" not in message and not epochs  # one line, and nothing trained
