"""Op counting against hand-computed values on tiny layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.efficiency import ENERGY_PER_AC_PJ, ENERGY_PER_MAC_PJ, count_ops
from harness.models import create_model, make_lif


class TwoLayer(nn.Module):
    """A linear layer on analog input, then one on a fixed spike pattern."""

    def __init__(self, spikes: torch.Tensor) -> None:
        super().__init__()
        self.analog = nn.Linear(3, 5)
        self.spiking = nn.Linear(4, 2)
        self.spikes = spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.analog(x)
        return self.spiking(self.spikes)


def test_linear_acs_and_macs_per_step() -> None:
    # [T=2, B=2, 4] spikes: step 1 has 3 active inputs in all, step 2 has 1.
    spikes = torch.tensor([[[1, 0, 1, 0], [0, 0, 0, 1]], [[0, 0, 0, 0], [1, 0, 0, 0]]], dtype=torch.float32)
    model = TwoLayer(spikes)
    with count_ops(model, 2) as counts:
        counts.batch = counts.samples = 2
        model(torch.randn(2, 2, 3) + 0.5)
    # ACs: each active input reaches 2 outputs; MACs: 3 x 5 per sample per step.
    assert counts.acs.tolist() == [3 * 2, 1 * 2]
    assert counts.macs.tolist() == [2 * 15, 2 * 15]
    summary = counts.summary(2)
    assert summary["acs"] == pytest.approx((6 + 2) / 2)
    assert summary["macs"] == pytest.approx(60 / 2)
    assert summary["energy_uj"] == pytest.approx((4 * ENERGY_PER_AC_PJ + 30 * ENERGY_PER_MAC_PJ) * 1e-6)
    assert counts.summary(1)["acs"] == pytest.approx(3)


def test_conv_acs_equal_active_synapses() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = (torch.rand(4, 2, 5, 5) > 0.7).float()
    with count_ops(conv, 1) as counts:
        counts.batch = counts.samples = 4
        conv(x)
    # Brute force: every active input pixel feeds out_channels x (kernel positions that land inside).
    ones = torch.ones(1, 1, 5, 5)
    fan_out = nn.functional.conv2d(ones, torch.ones(1, 1, 3, 3), padding=1)[0, 0]  # same for stride 1
    expected = (x.sum(dim=1) * fan_out).sum().item() * 3
    assert counts.acs.sum().item() == pytest.approx(expected)
    assert counts.macs.sum().item() == 0


def test_spiking_network_counts() -> None:
    torch.manual_seed(0)
    # Batch statistics (train mode) keep every stage firing, so the pooled rates are analog.
    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_shape=8, activation=make_lif())
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad(), count_ops(net, 4) as counts:
        counts.batch = counts.samples = 6
        net(x, 4)
    one, four = counts.summary(1), counts.summary(4)
    stem_macs = 8 * 8 * 4 * 9  # the stem runs once per sample
    classifier_macs = 4 * 16 * 10  # pooled rates are analog: every step
    assert four["macs"] == pytest.approx(stem_macs + classifier_macs)
    assert one["macs"] == pytest.approx(stem_macs + classifier_macs / 4)
    assert 0 < four["firing_rate"] < 1
    assert four["acs"] > one["acs"] > 0
    assert set(k for k in four if k.startswith("firing_rate/")) == {
        "firing_rate/stem_act",
        *(f"firing_rate/body.stage{s}.0.act{a}" for s in (1, 2, 3) for a in (1, 2)),
    }


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(2, 1, 1), (1, 0, 1), (2, 0, 2), (3, 2, 1)], ids=str)
def test_conv_acs_match_a_brute_force_count(stride: int, padding: int, dilation: int) -> None:
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=padding, dilation=dilation, bias=False)
    x = (torch.rand(5, 3, 9, 11) > 0.6).float() * 0.5  # spikes of a converted neuron (θ = 0.5)
    with count_ops(conv, 1) as counts:
        counts.batch = counts.samples = 5
        conv(x)
    # Brute force: each output position sums the active inputs in its receptive field.
    ones = torch.ones(1, 3, 3, 3)
    active = nn.functional.conv2d((x != 0).float(), ones, stride=stride, padding=padding, dilation=dilation)
    assert counts.acs.sum().item() == pytest.approx(active.sum().item() * 4)
