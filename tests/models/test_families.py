from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional

from harness.errors import HarnessInputError
from harness.models import create_model, list_models, make_lif, relu


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 8), ("resnet", 14), ("resnet", 18), ("vgg", 5), ("vgg", 11)])
@pytest.mark.parametrize(("size", "channels"), [(8, 1), (28, 1), (32, 3)])
def test_families_fit_every_input_size(arch: str, depth: int, size: int, channels: int) -> None:
    net = create_model(
        arch, depth=depth, width=4, in_channels=channels, num_classes=7, image_size=size, activation=make_lif()
    )
    out, features = net(torch.rand(3, channels, size, size), 4, return_features=True)
    assert out.shape == (4, 3, 7)
    assert set(features) == {*net.feature_channels()}
    for name, channels_of_tap in net.feature_channels().items():
        assert features[name].shape[:3] == (4, 3, channels_of_tap)


def test_ann_is_the_one_step_case() -> None:
    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_size=8, activation=relu)
    assert net(torch.rand(5, 1, 8, 8)).shape == (1, 5, 10)


def test_spiking_network_is_causal() -> None:
    """Output at t never depends on later steps: the time-step curve of one run at T_max
    equals separate runs at each T (what the final evaluation relies on)."""
    torch.manual_seed(0)
    net = create_model(
        "resnet", depth=8, width=8, in_channels=1, num_classes=10, image_size=8, activation=make_lif()
    ).eval()
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        long = net(x, 8)
        functional.reset_net(net)
        short = net(x, 3)
        functional.reset_net(net)
    torch.testing.assert_close(long[:3], short)


def test_student_spikes_are_binary() -> None:
    net = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=10, image_size=28, activation=make_lif())
    _, features = net(torch.randn(2, 1, 28, 28), 3, return_features=True)
    block = features["block1"]
    assert torch.all((block == 0) | (block == 1))


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 9), ("resnet", 4), ("vgg", 12)])
def test_unsupported_depths_are_input_errors(arch: str, depth: int) -> None:
    with pytest.raises(HarnessInputError, match=f"{arch} depth {depth} is not supported"):
        create_model(arch, depth=depth, width=4, in_channels=1, num_classes=10, image_size=8, activation=relu)


def test_registry_lists_families() -> None:
    assert {"resnet", "vgg"} <= set(list_models())
