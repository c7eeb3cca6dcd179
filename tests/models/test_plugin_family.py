"""A plugin model family with none of the CNN keys (no `depth`, no `width`): a spiking MLP with a
flattening layer, installed as a real distribution, serves as the ANN teacher, the spiking
student of every method, and the ANN that conversion converts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.resolve import trial_config
from harness.contract import Role
from harness.run_spec import run_spec
from harness.teacher import describe_teacher, teacher_key_of
from harness.trial import train

SMLP = '''
from torch import nn

from harness.models import ModelArgs, SpikingNetwork
from harness.models.encoders import DirectEncoding


class Flat(nn.Module):
    """A reshape of the plugin's own: [T, B, C, H, W] -> [T, B, C*H*W]."""

    def forward(self, x):
        return x.flatten(2)


class MLP(SpikingNetwork):
    def __init__(self, in_channels, num_classes, image_shape, hidden, activation):
        nn.Module.__init__(self)
        self.encoder = DirectEncoding()
        self.body = nn.ModuleDict({"flat": Flat(), "drop": nn.Dropout(0.1)})
        self.hidden = nn.Linear(in_channels * image_shape[0] * image_shape[1], hidden)
        self.act = activation()
        self.tap_channels = {}
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x, time_steps=1, return_features=False):
        seq = self.encoder(x, time_steps)
        seq = seq.expand(time_steps, *seq.shape[1:])
        h = self.act(self.hidden(self.body["drop"](self.body["flat"](seq))))
        logits = self.classifier(h)
        return (logits, {"pool": h}) if return_features else logits


class SpikingMLP(ModelArgs):
    hidden: int = 32

    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max"):
        return MLP(in_channels, num_classes, image_shape, self.hidden, activation)
'''


@pytest.fixture
def smlp(install_plugin) -> str:
    install_plugin("smlp-family", {"models": {"smlp": "smlp_family:SpikingMLP"}}, {"smlp_family.py": SMLP})
    return "smlp"


@pytest.mark.parametrize("method", ["kd", "direct", "conversion"])
def test_a_family_without_cnn_keys_is_teacher_student_and_converted_ann(smlp: str, method: str, tmp_path: Path) -> None:
    config = trial_config(
        {
            "method": method,
            "dataset.name": "digits",
            "student.arch": smlp,
            "student.hidden": 24,
            "teacher.arch": smlp,
            "teacher.hidden": 48,
            "teacher.epochs": 2,
            "train.epochs": 2,
            "snn.time_steps": 2,
            "eval.time_steps": [1, 2],
            "eval.noise": {"gaussian": [0.1]},
        }
    )
    metrics = train(config, teacher_cache=tmp_path, log=lambda _: None)
    assert metrics["test_accuracy"] > 0.3  # it learns, whatever the method
    assert describe_teacher(config) == "smlp hidden=48"
    assert teacher_key_of(config)  # keyed from the family's own arguments
    params = run_spec(config, Role.TRIAL, "t0").params
    assert params["student.hidden"] == 24 and not any(key.endswith((".depth", ".width")) for key in params)
