"""What a plugin's network returns, checked once where it enters the harness (`harness.context.check_network`)."""

from __future__ import annotations

import pytest
import torch

from harness.context import TrialContext, network_for
from harness.errors import PluginError
from harness.models import make_lif
from harness.trial import load_trial_data

WRONG_FAMILIES = '''
from harness.models.resnet import ResNetArgs


class Flat(ResNetArgs):
    """Time-averaged logits [B, K] instead of [T, B, K]."""

    def build(self, **kwargs):
        net = super().build(**kwargs)
        forward = net.forward

        def averaged(x, time_steps=1, return_features=False):
            return forward(x, time_steps).mean(0)

        net.forward = averaged
        return net


class Wide(ResNetArgs):
    """One class too many."""

    def build(self, *, num_classes, **kwargs):
        return super().build(num_classes=num_classes + 1, **kwargs)
'''

WRONG_ENCODER = """
from harness.models.encoders import Encoder


class Flattened(Encoder):
    def forward(self, images, time_steps):
        return images.flatten(1).unsqueeze(0)  # [1, B, C*H*W]
"""


@pytest.fixture
def ctx(make_config, teacher_cache) -> callable:
    def make(**overrides) -> TrialContext:
        config = make_config("direct", **overrides)
        data = load_trial_data(config, torch.device("cpu"))
        return TrialContext(config, data, torch.device("cpu"), teacher_cache, lambda _: None)

    return make


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("flat", r"returns \[2, 10\] for 2 images at T = 2; expected \[T, B, K\] logits = \[2, 2, 10\]"),
        ("wide", r"returns \[2, 2, 11\] for 2 images at T = 2; expected \[T, B, K\] logits = \[2, 2, 10\]"),
    ],
)
def test_a_family_that_returns_other_than_t_b_k_logits_is_named(
    install_plugin, ctx, family: str, expected: str
) -> None:
    install_plugin(
        "wrong-families",
        {"models": {"flat": "wrong_families:Flat", "wide": "wrong_families:Wide"}},
        {"wrong_families.py": WRONG_FAMILIES},
    )
    trial = ctx(**{"student.arch": family})
    with pytest.raises(
        PluginError, match=rf"^model family '{family}' \(entry point '{family}' .* of wrong-families 0.1\) "
    ):
        network_for(trial, trial.config.student, make_lif())
    with pytest.raises(PluginError, match=expected):
        network_for(trial, trial.config.student, make_lif())


def test_an_encoding_that_returns_another_layout_is_named(install_plugin, ctx) -> None:
    install_plugin(
        "wrong-encoder", {"encoders": {"flattened": "wrong_encoder:Flattened"}}, {"wrong_encoder.py": WRONG_ENCODER}
    )
    trial = ctx(**{"encoding.name": "flattened"})
    with pytest.raises(PluginError) as info:
        network_for(trial, trial.config.student, make_lif())
    message = str(info.value)
    assert message.startswith("input encoding 'flattened' (entry point 'flattened' (wrong_encoder:Flattened) of wrong-")
    assert "encodes [2, 1, 8, 8] inputs at T = 2 as [1, 2, 64]; expected [1 or T, B, C, H, W]" in message


def test_the_check_leaves_the_network_and_the_random_numbers_as_they_were(ctx) -> None:
    trial = ctx(**{"encoding.name": "poisson"})  # draws from torch's generator
    spec = trial.config.student
    net = network_for(trial, spec, make_lif(), seed=5)  # seeds, builds, checks
    after_the_check = torch.rand(3)
    torch.manual_seed(5)
    built = spec.build(in_channels=1, num_classes=10, image_shape=(8, 8), activation=make_lif(), pool="max")
    assert torch.equal(torch.rand(3), after_the_check)  # the check drew nothing from the trial's generator
    assert net.training
    weights = zip(net.state_dict().values(), built.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)  # BatchNorm statistics included: untouched
