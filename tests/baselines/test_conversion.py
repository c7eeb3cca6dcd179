"""The conversion baseline through the trial loop and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from harness.cli import main
from harness.trial import train


@pytest.mark.parametrize("variant", ["qcfs", "max", "percentile"])
def test_conversion_trial_reports_the_curve_and_its_ann(variant: str, make_config, teacher_cache: Path) -> None:
    config = make_config(
        "conversion",
        **{
            "conversion.variant": variant,
            "train.epochs": 3,
            "eval.time_steps": [1, 2, 4, 8, 16],
            "eval.reference_time_steps": 8,
        },
    )
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert {"ann_test_accuracy", "test_accuracy", "timestep/1", "timestep/16", "energy_uj", "firing_rate"} <= set(
        metrics
    )
    assert "teacher_test_accuracy" not in metrics  # no teacher for conversion
    assert metrics["test_accuracy"] == metrics["timestep/8"]  # measured at eval.reference_time_steps
    assert metrics["ann_test_accuracy"] > 0.5  # the ANN learned
    ann_noise = {f"ann_noise/{n}/{level:g}" for n, levels in config.eval.noise.items() for level in levels}
    assert ann_noise <= set(metrics) and all(0.0 < metrics[k] <= 1.0 for k in ann_noise)
    assert metrics["timestep/16"] >= metrics["timestep/1"]
    assert metrics["acs"] > 0  # converted neurons' spikes are counted as accumulates


MAXPOOL_VGG = """
from harness.models.vgg import VGG, VGGArgs


class MaxPoolVGG(VGGArgs):
    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max"):
        return VGG(self.depth, self.width, in_channels, num_classes, image_shape, activation, pool="max")
"""


@pytest.fixture
def maxpool_family(install_plugin) -> str:
    """A family the conversion cannot handle: VGG that keeps max-pooling whatever it is asked."""
    install_plugin(
        "maxpool-vgg", {"models": {"maxpool_vgg": "maxpool_vgg:MaxPoolVGG"}}, {"maxpool_vgg.py": MAXPOOL_VGG}
    )
    return "maxpool_vgg"


def test_unconvertible_architecture_exits_2_before_training(
    maxpool_family: str, tiny_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "train",
        "--space",
        str(tiny_space),
        "--method",
        "conversion",
        "--set",
        f"student.arch={maxpool_family}",
        "--set",
        "student.depth=5",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "MaxPool2d" in err and "body.block1" in err and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("conversion.levels=0", "--set conversion.levels"),
        ("conversion.percentile=150", "--set conversion.percentile"),
        ("conversion.percentile=0", "--set conversion.percentile"),
        ("conversion.variant=exact", "--set conversion.variant"),
    ],
)
def test_bad_conversion_keys_exit_2(
    tiny_space: Path, tmp_path: Path, monkeypatch, capsys, override: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--space", str(tiny_space), "--method", "conversion", "--set", override]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_unsupported_activation_is_named(tmp_path: Path) -> None:
    from baselines.conversion_core import check_convertible
    from harness.errors import HarnessInputError
    from harness.models import create_model

    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_shape=8, activation=nn.GELU)
    with pytest.raises(HarnessInputError, match="stem_act"):
        check_convertible(net)


@pytest.mark.slow
def test_default_space_conversion_on_digits_matches_its_ann(train_default_space_on_digits) -> None:
    """The issue's acceptance command: at the largest T the SNN is within 2 points of its ANN."""
    _, metrics = train_default_space_on_digits("conversion", 5, "eval.time_steps=[1, 4, 32]")
    assert metrics["ann_test_accuracy"] > 0.8
    assert abs(metrics["timestep/32"] - metrics["ann_test_accuracy"]) <= 0.02
