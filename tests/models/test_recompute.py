"""`train.checkpoint_activations`: recomputing blocks in the backward pass changes nothing but
memory (same outputs, gradients, BatchNorm statistics and neuron state, fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from spikingjelly.activation_based import functional

from harness.config.sections import TrainConfig
from harness.methods import TrialContext, create_method
from harness.models import create_model, make_lif
from harness.trial import load_trial_data


def _train_steps(arch: str, depth: int, checkpoint: bool, steps: int = 2) -> dict[str, object]:
    torch.manual_seed(0)
    net = create_model(arch, depth=depth, width=8, in_channels=1, num_classes=10, image_shape=8, activation=make_lif())
    net.checkpoint_activations = checkpoint
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 1, 8, 8, generator=generator)
        y = torch.randint(0, 10, (16,), generator=generator)
        logits, features = net(x, 3, return_features=True)
        loss = torch.nn.functional.cross_entropy(logits.mean(0), y) + features["pool"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
        losses.append(loss.detach())
    return {"losses": losses, "state": {k: v.clone() for k, v in net.state_dict().items()}}


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 14), ("vgg", 7)])
def test_same_training_with_and_without_recomputation(arch: str, depth: int) -> None:
    plain = _train_steps(arch, depth, checkpoint=False)
    recomputed = _train_steps(arch, depth, checkpoint=True)
    assert all(torch.equal(a, b) for a, b in zip(plain["losses"], recomputed["losses"], strict=True))
    for key, value in plain["state"].items():  # weights after two steps and BN running statistics
        torch.testing.assert_close(recomputed["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_evaluation_and_no_grad_skip_recomputation() -> None:
    torch.manual_seed(0)
    net = create_model("resnet", depth=8, width=8, in_channels=1, num_classes=10, image_shape=8, activation=make_lif())
    x = torch.randn(4, 1, 8, 8)
    net.eval()
    with torch.no_grad():
        expected = net(x, 2)
        functional.reset_net(net)
        net.checkpoint_activations = True
        assert torch.equal(net(x, 2), expected)


def test_config_field_is_validated() -> None:
    assert TrainConfig().checkpoint_activations is False
    assert TrainConfig(checkpoint_activations=True).checkpoint_activations is True
    with pytest.raises(ValidationError, match="checkpoint_activations"):
        TrainConfig(checkpoint_activations="sometimes")


@pytest.mark.slow
def test_trial_epoch_is_the_same_with_recomputation(make_config) -> None:
    """One epoch of the real direct-training step (digits) with and without the option."""
    losses = []
    for flag in (False, True):
        config = make_config("direct", **{"train.checkpoint_activations": flag, "train.epochs": 1})
        data = load_trial_data(config, torch.device("cpu"))
        method = create_method("direct", TrialContext(config, data, torch.device("cpu"), Path("unused"), print))
        assert method.network().checkpoint_activations is flag
        losses.append(method.train_one_epoch(1)["train_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
