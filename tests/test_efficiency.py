"""Op counting against hand-computed values on tiny layers, a brute-force count of every multiply of
a tiny spiking transformer, and NeuroBench's SynOps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.efficiency import ENERGY_PER_AC_PJ, ENERGY_PER_MAC_PJ, ActivationProduct, count_ops
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


@pytest.mark.parametrize("groups", [2, 6], ids=["grouped", "depthwise"])
def test_grouped_convolutions_count_each_input_channels_own_group(groups: int) -> None:
    """A grouped (or depthwise: torchvision's MobileNets) convolution: an input channel feeds only
    its group's `out_channels / groups` outputs, and an output sums `in_channels / groups` inputs."""
    conv = nn.Conv2d(6, 12, 3, padding=1, groups=groups, bias=False)
    x = (torch.rand(4, 6, 7, 7) > 0.5).float()
    with count_ops(conv, 1) as counts:
        counts.batch = counts.samples = 4
        conv(x)
    active = nn.functional.conv2d(x, torch.ones(6, 1, 3, 3), padding=1, groups=6)  # per input channel
    assert counts.acs.sum().item() == pytest.approx(active.sum().item() * 12 / groups)
    with count_ops(conv, 1) as counts:
        counts.batch = counts.samples = 4
        conv(x * 0.3 + 0.1)  # analog: every multiply
    assert counts.macs.sum().item() == 4 * 12 * 7 * 7 * (6 // groups) * 9


# --- Products of two activations (a spiking transformer's attention) -------------------------


class Product(nn.Module):
    """One `ActivationProduct` of two fixed operands."""

    def __init__(self) -> None:
        super().__init__()
        self.product = ActivationProduct()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.product(a, b)


def test_a_product_of_spikes_costs_one_ac_per_pair_of_non_zero_entries_that_meet() -> None:
    # [T=2, B=1, heads=1, 2, 2] @ [2, 1, 1, 2, 2]; step 1: a = [[1, 0], [1, 1]], b = [[1, 1], [0, 1]].
    a = torch.tensor([[[[[1.0, 0.0], [1.0, 1.0]]]], [[[[0.0, 0.0], [0.0, 1.0]]]]])
    b = torch.tensor([[[[[1.0, 1.0], [0.0, 1.0]]]], [[[[1.0, 1.0], [1.0, 1.0]]]]])
    model = Product()
    with count_ops(model, 2) as counts:
        counts.batch = counts.samples = 1
        model(a, b)
    # k = 0: column 0 of a has 2 non-zeros, row 0 of b 2: 4 pairs; k = 1: 1 x 1. Step 2: 0 x 2 + 1 x 2.
    assert counts.acs.tolist() == [5, 2] and counts.macs.tolist() == [0, 0]
    with count_ops(model, 2) as counts:
        counts.batch = counts.samples = 1
        model(a * 0.5 + (a == 0) * 0.25, b)  # an analog side: every multiply, 2 x 2 x 2 per matrix
    assert counts.acs.tolist() == [0, 0] and counts.macs.tolist() == [8, 8]


def test_a_product_needs_the_multi_step_layout() -> None:
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\., M, K\]"):
        ActivationProduct()(torch.ones(2, 3, 4), torch.ones(2, 4, 3))


def _is_spikes_by_the_rule(values: list[float]) -> bool:
    """The rule, restated: every non-zero entry has one and the same positive value."""
    nonzero = {v for v in values if v != 0}
    return len(nonzero) <= 1 and all(v > 0 for v in nonzero)


def _flat(x: torch.Tensor) -> list[float]:
    return x.flatten().tolist()


def _brute_force_conv(conv: nn.Conv2d, x: torch.Tensor, batch: int, tally: dict[str, list[int]]) -> None:
    """Every multiply of a convolution, padding positions included (a dense convolution multiplies
    them: MACs when the input is analog); with spikes, one AC per multiply of a non-zero input."""
    rows, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    spikes = _is_spikes_by_the_rule(_flat(x))
    values = x.tolist()
    for r in range(rows):
        step = r // batch
        for _o in range(conv.out_channels):
            for oy in range(out_h):
                for ox in range(out_w):
                    for c in range(channels):
                        for i in range(kh):
                            for j in range(kw):
                                iy, ix = oy * sh - ph + i * dh, ox * sw - pw + j * dw
                                inside = 0 <= iy < height and 0 <= ix < width
                                if not spikes:
                                    tally["layer_macs"][step] += 1
                                elif inside and values[r][c][iy][ix] != 0:
                                    tally["layer_acs"][step] += 1


def _brute_force_linear(linear: nn.Linear, x: torch.Tensor, batch: int, tally: dict[str, list[int]]) -> None:
    values = x.reshape(-1, linear.in_features).tolist()
    spikes = _is_spikes_by_the_rule(_flat(x))
    for r, row in enumerate(values):
        for _o in range(linear.out_features):
            for value in row:
                if not spikes:
                    tally["layer_macs"][r // batch] += 1
                elif value != 0:
                    tally["layer_acs"][r // batch] += 1


def _brute_force_product(a: torch.Tensor, b: torch.Tensor, tally: dict[str, list[int]]) -> None:
    """`a @ b` over `[T, B, ..., M, K]` x `[T, B, ..., K, N]` (same leading shape): every multiply
    `a[m, k] * b[k, n]`; an AC when both operands are spikes and both entries non-zero, a MAC
    for every multiply when either operand is analog."""
    m_, k_, n_ = a.shape[-2], a.shape[-1], b.shape[-1]
    spikes = _is_spikes_by_the_rule(_flat(a)) and _is_spikes_by_the_rule(_flat(b))
    a_steps = a.reshape(a.shape[0], -1, m_, k_).tolist()
    b_steps = b.reshape(b.shape[0], -1, k_, n_).tolist()
    for step, (a_mats, b_mats) in enumerate(zip(a_steps, b_steps, strict=True)):
        for am, bm in zip(a_mats, b_mats, strict=True):
            for m in range(m_):
                for n in range(n_):
                    for k in range(k_):
                        if not spikes:
                            tally["product_macs"][step] += 1
                        elif am[m][k] != 0 and bm[k][n] != 0:
                            tally["product_acs"][step] += 1


def _brute_force_counts(calls: list[tuple[nn.Module, tuple[torch.Tensor, ...]]], batch: int, time_steps: int):
    tally = {key: [0] * time_steps for key in ("layer_acs", "layer_macs", "product_acs", "product_macs")}
    for module, inputs in calls:
        if isinstance(module, nn.Conv2d):
            _brute_force_conv(module, inputs[0], batch, tally)
        elif isinstance(module, nn.Linear):
            _brute_force_linear(module, inputs[0], batch, tally)
        else:
            _brute_force_product(*inputs, tally)
    return tally


def _recording(net: nn.Module) -> tuple[list[tuple[nn.Module, tuple[torch.Tensor, ...]]], list]:
    """Every Conv2d, Linear and ActivationProduct call of `net`, with copies of its inputs."""
    calls: list[tuple[nn.Module, tuple[torch.Tensor, ...]]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        calls.append((module, tuple(t.detach().clone() for t in inputs)))

    handles = [
        m.register_forward_hook(record)
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear | ActivationProduct)
    ]
    return calls, handles


def _tiny_spikformer() -> nn.Module:
    torch.manual_seed(0)
    net = create_model(
        "spikformer", embed_dim=8, heads=2, depth=1, patch_size=2, in_channels=1, num_classes=10, image_shape=8,
        activation=make_lif(),
    )  # fmt: skip
    # Train mode (batch statistics) and BN gains of 3: every stage fires within these few steps,
    # the attention's output too, so a residual sum of spikes (0, 1, 2) reaches the MLP.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 3.0)
    return net.train()


def test_count_ops_equals_a_brute_force_count_of_every_multiply_of_a_tiny_spikformer() -> None:
    net, batch, steps = _tiny_spikformer(), 2, 3
    calls, handles = _recording(net)
    with torch.no_grad(), count_ops(net, steps) as counts:
        counts.batch = counts.samples = batch
        net(torch.rand(batch, 1, 8, 8) * 2, steps)
    for handle in handles:
        handle.remove()
    tally = _brute_force_counts(calls, batch, steps)
    # Every kind occurs at every step: ACs of layers on spikes, MACs of layers on analog inputs
    # (the image once, the residual sum of spikes, the pooled rates), the attention's Q K^T of
    # two spike trains in ACs, attn V (integer counts times spikes) in MACs.
    assert all(count > 0 for key in tally for count in tally[key][1:]), tally
    assert tally["layer_macs"][1] > 160  # more than the classifier's 2 x 8 x 10: the MLP's first layer
    assert sum(isinstance(m, ActivationProduct) for m, _ in calls) == 2
    acs = [a + b for a, b in zip(tally["layer_acs"], tally["product_acs"], strict=True)]
    macs = [a + b for a, b in zip(tally["layer_macs"], tally["product_macs"], strict=True)]
    assert counts.acs.tolist() == acs
    assert counts.macs.tolist() == macs


def test_count_ops_agrees_with_neurobench_synops_on_the_convolutions_and_linear_layers() -> None:
    """NeuroBench (Yik et al., 2025) counts Conv/Linear layers only: its effective ACs are ours
    there (by the brute force above, which splits layers from products). Its effective MACs skip
    zero inputs and padding, where ours count every multiply of a dense layer: never more."""
    pytest.importorskip("neurobench")
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    net, batch, steps = _tiny_spikformer(), 2, 3

    class Steps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x, steps)

    model = TorchModel(Steps())
    net.train()  # TorchModel puts it in eval mode
    model.register_hooks()
    calls, handles = _recording(net)
    x = torch.rand(batch, 1, 8, 8) * 2
    with torch.no_grad():
        preds = model(x)
    for handle in handles:
        handle.remove()
    synops = SynapticOperations()(model, preds, (x, torch.zeros(batch)))
    model.cleanup_hooks()
    tally = _brute_force_counts(calls, batch, steps)
    assert sum(tally["layer_acs"]) > 0
    assert synops["Effective_ACs"] * batch == pytest.approx(sum(tally["layer_acs"]))
    assert 0 < synops["Effective_MACs"] * batch <= sum(tally["layer_macs"])


def test_an_ann_spikformer_costs_every_multiply_in_macs_its_attention_included() -> None:
    """The teacher's count: a ReLU network is analog everywhere, so each layer and each product
    costs all of its multiplies (8x8 image, 16 tokens, 2 heads of 4 channels)."""
    net = create_model(
        "spikformer", embed_dim=8, heads=2, depth=1, patch_size=2, in_channels=1, num_classes=10, image_shape=8,
        activation=nn.ReLU,
    )  # fmt: skip
    with torch.no_grad(), count_ops(net.eval(), 1) as counts:
        counts.batch = counts.samples = 3
        net(torch.rand(3, 1, 8, 8), 1)
    layers = (
        1 * 9 * 8 * 64  # stem: 3x3, 1 -> 8 channels, 8x8
        + 8 * 4 * 8 * 16  # patches: 2x2, 8 -> 8 channels, 16 tokens
        + 4 * 8 * 8 * 16  # Q, K, V and the projection: token-wise 8 -> 8
        + 2 * 8 * 16 * 16  # the MLP: 8 -> 16 -> 8
        + 8 * 10  # the classifier
    )
    products = 2 * (16 * 4 * 16) + 2 * (16 * 16 * 4)  # per head: Q K^T, then attn V
    assert counts.summary(1)["macs"] == layers + products and counts.summary(1)["acs"] == 0
