"""torchvision's classifiers as teachers: `teacher.arch: torchvision/<name>`, weights from a local file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from pydantic import ValidationError

from harness.config.resolve import trial_config
from harness.data import load_dataset
from harness.errors import HarnessInputError
from harness.methods import TrialContext
from harness.models import create_model, relu
from harness.teacher import load_or_train_teacher
from tests.conftest import TINY

# TINY without its teacher's family arguments (they are resnet's, not torchvision's).
BASE = {k: v for k, v in TINY.items() if not k.startswith("teacher.")}


def _config(**overrides):
    return trial_config({**BASE, "method": "kd", "teacher.arch": "torchvision/resnet18", **overrides})


def _torchvision_file(path: Path, in_channels: int = 1, classes: int = 10) -> Path:
    """A resnet18 state dict in torchvision's own keys (`conv1.weight`, `fc.bias`, ...), as a user
    saves one: `torch.save(model.state_dict(), path)`."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=classes)
    if in_channels != 3:
        model.conv1 = torch.nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    torch.save(model.state_dict(), path)
    return path


def test_a_torchvision_model_runs_in_the_harness_layout_with_feature_taps() -> None:
    net = create_model("torchvision/resnet18", in_channels=1, num_classes=10, image_shape=(8, 8), activation=relu)
    logits, features = net.eval()(torch.rand(3, 1, 8, 8), 2, return_features=True)
    assert logits.shape == (2, 3, 10)
    torch.testing.assert_close(logits[0], logits[1])  # an ANN: the same at every step
    assert features["pool"].shape == (2, 3, 512) and features["layer1"].shape[:3] == (2, 3, 64)
    assert net.feature_channels() == {"pool": 512, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}


def test_names_outside_torchvision_and_spiking_uses_are_refused() -> None:
    with pytest.raises(ValidationError, match="torchvision's .* image classifiers.*'torchvision/resnet19'"):
        _config(**{"teacher.arch": "torchvision/resnet19"})
    with pytest.raises(ValidationError, match="vgg has no variants"):
        _config(**{"teacher.arch": "vgg/16"})
    with pytest.raises(ValidationError, match=r"student.arch\n.*builds ANNs only"):
        _config(**{"student.arch": "torchvision/resnet18"})
    with pytest.raises(ValueError, match="is an ANN"):
        create_model("torchvision/resnet18", in_channels=3, num_classes=10, image_shape=8, activation=torch.nn.Tanh)


def test_a_torchvision_checkpoint_is_the_teacher_and_trains_nothing(tmp_path: Path) -> None:
    path = _torchvision_file(tmp_path / "resnet18-digits.pth")
    config = _config(**{"teacher.checkpoint": str(path), "teacher.epochs": 0})
    lines: list[str] = []
    ctx = TrialContext(config, load_dataset("digits"), torch.device("cpu"), tmp_path / "cache", lines.append)
    record = load_or_train_teacher(ctx)
    saved = torch.load(path, weights_only=True)
    for key, tensor in record.model.net.state_dict().items():  # the file's weights, untouched
        torch.testing.assert_close(tensor, saved[key])
    assert not any(line.startswith("teacher epoch") for line in lines)
    assert 0.0 <= record.metrics["teacher_test_accuracy"] <= 1.0 and record.metrics["teacher_macs"] > 0


def test_a_checkpoint_with_another_head_or_input_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    imagenet = _torchvision_file(tmp_path / "imagenet.pth", in_channels=3, classes=1000)
    config = _config(**{"teacher.checkpoint": str(imagenet), "teacher.epochs": 0})
    ctx = TrialContext(config, load_dataset("digits"), torch.device("cpu"), tmp_path / "cache", lambda _: None)
    with pytest.raises(HarnessInputError, match=r"has 'net.conv1.weight' of shape \[64, 3, 7, 7\]"):
        load_or_train_teacher(ctx)
