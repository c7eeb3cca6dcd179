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
        arch, depth=depth, width=4, in_channels=channels, num_classes=7, image_shape=size, activation=make_lif()
    )
    out, features = net(torch.rand(3, channels, size, size), 4, return_features=True)
    assert out.shape == (4, 3, 7)
    assert set(features) == {*net.feature_channels()}
    for name, channels_of_tap in net.feature_channels().items():
        assert features[name].shape[:3] == (4, 3, channels_of_tap)


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 8), ("resnet", 18), ("vgg", 5), ("vgg", 11)])
@pytest.mark.parametrize("shape", [(12, 20), (20, 12), (3, 40), (1, 9)])
def test_families_fit_non_square_inputs_downsampling_each_axis_it_can(arch: str, depth: int, shape) -> None:
    net = create_model(arch, depth=depth, width=4, in_channels=3, num_classes=5, image_shape=shape, activation=relu)
    out, features = net(torch.rand(2, 3, *shape), 1, return_features=True)
    assert out.shape == (1, 2, 5)
    last = features[list(net.body)[-1]]
    # Each axis is halved where it can be and never below one pixel: a 3 x 40 map keeps
    # downsampling its width after its height has reached 1.
    assert 1 <= last.shape[-2] <= shape[0] and 1 <= last.shape[-1] <= shape[1]
    assert last.shape[-1] < shape[1] or shape[1] == 1
    if shape == (3, 40):
        assert last.shape[-2] == 1 and last.shape[-1] <= 10  # 40 halved at least twice


def test_a_square_shape_given_as_an_int_or_a_pair_builds_the_same_network() -> None:
    torch.manual_seed(0)
    by_int = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=3, image_shape=8, activation=relu)
    torch.manual_seed(0)
    by_pair = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=3, image_shape=(8, 8), activation=relu)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(by_int(x), by_pair(x))


def test_ann_is_the_one_step_case() -> None:
    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_shape=8, activation=relu)
    assert net(torch.rand(5, 1, 8, 8)).shape == (1, 5, 10)


def test_spiking_network_is_causal() -> None:
    """Output at t never depends on later steps: the time-step curve of one run at T_max
    equals separate runs at each T (what the final evaluation relies on)."""
    torch.manual_seed(0)
    net = create_model(
        "resnet", depth=8, width=8, in_channels=1, num_classes=10, image_shape=8, activation=make_lif()
    ).eval()
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        long = net(x, 8)
        functional.reset_net(net)
        short = net(x, 3)
        functional.reset_net(net)
    torch.testing.assert_close(long[:3], short)


def test_student_spikes_are_binary() -> None:
    net = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=10, image_shape=28, activation=make_lif())
    _, features = net(torch.randn(2, 1, 28, 28), 3, return_features=True)
    block = features["block1"]
    assert torch.all((block == 0) | (block == 1))


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 9), ("resnet", 4), ("vgg", 12)])
def test_unsupported_depths_are_input_errors(arch: str, depth: int) -> None:
    with pytest.raises(HarnessInputError, match=f"{arch} depth {depth} is not supported"):
        create_model(arch, depth=depth, width=4, in_channels=1, num_classes=10, image_shape=8, activation=relu)


def test_registry_lists_families() -> None:
    assert {"resnet", "vgg"} <= set(list_models())
