"""The benchmarks' reference is the harness's network and loss, and their helpers count right.

The reference network (benchmarks/reference.py, written with spikingjelly's own layers and
LIFNode) must be the harness student's shape exactly, or the throughput ratio compares
different work: same parameter count, same tensors, and with the same weights the same
logits, loss and gradients as the harness's training step on the same seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from benchlib import Timing, interleaved, paired_ratio
from reference import SpikingResNet, load_harness_weights, make_loader, train_epoch
from spikingjelly.activation_based import functional
from sweep_efficiency import idle_split, list_schedule

from harness.methods import TrialContext, create_method
from harness.models import count_parameters, create_model, make_lif
from harness.trial import load_trial_data


@pytest.mark.parametrize(("depth", "size"), [(8, 28), (14, 8), (20, 28), (18, 32)])
def test_reference_is_the_harness_network(depth: int, size: int) -> None:
    torch.manual_seed(0)
    ours = create_model("resnet", depth=depth, width=8, in_channels=1, num_classes=10, image_shape=size,
                        activation=make_lif())  # fmt: skip
    theirs = SpikingResNet(depth, 8, 1, 10, size, T=3)
    assert count_parameters(ours) == sum(p.numel() for p in theirs.parameters())
    load_harness_weights(theirs, ours)
    x = torch.randn(4, 1, size, size)
    for train in (False, True):
        ours.train(train), theirs.train(train)
        with torch.no_grad():
            expected = ours(x, 3).mean(0)
            got = theirs(x)
        functional.reset_net(ours), functional.reset_net(theirs)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_reference_step_equals_harness_step(make_config) -> None:
    """Same seed, weights and batch: the harness's direct-training loss (FastLIFNode, stem run
    once) and the reference's (spikingjelly LIFNode, stem run T times) and their gradients."""
    config = make_config("direct", **{"snn.time_steps": 3})
    data = load_trial_data(config, torch.device("cpu"))
    method = create_method("direct", TrialContext(config, data, torch.device("cpu"), Path("unused"), print))
    reference = SpikingResNet(8, config.student.width, 1, data.num_classes, data.image_shape[0], T=3)
    load_harness_weights(reference, method.student)
    images, labels = data.train_x[:32], data.train_y[:32]
    ours = method.loss(images, labels)  # the harness's student normalises the images itself
    ours.backward()
    theirs = F.cross_entropy(reference(method.student.encoder.normalize(images)), labels)
    theirs.backward()
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
    for a, b in zip(method.student.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5)


def test_tiny_reference_loop_and_harness_step_run(make_config) -> None:
    """Two batches of each training loop, as the throughput benchmark times them."""
    config = make_config("direct", **{"train.augment": "none"})
    data = load_trial_data(config, torch.device("cpu"))
    method = create_method("direct", TrialContext(config, data, torch.device("cpu"), Path("unused"), print))
    x, y = data.train_x[:128], data.train_y[:128]
    loss = method.fitting.epoch(method.loss, x, y, 1)
    torch.manual_seed(config.seed)
    net = SpikingResNet(8, config.student.width, 1, 10, data.image_shape[0], T=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    acc = train_epoch(net, make_loader(x, y, data.mean[0], data.std[0], 64), optimizer, torch.device("cpu"))
    assert math.isfinite(loss) and loss > 0  # a cross-entropy over the two batches
    assert 0.0 <= acc <= 1.0


def test_interleaving_alternates_and_pairs() -> None:
    order: list[str] = []
    results = interleaved({"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 2.0}, 4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert results == {"a": [1.0] * 4, "b": [2.0] * 4}
    assert paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0
    assert Timing(1.0, 2.0).cpu == 2.0


def test_idle_split_counts_unused_slot_time() -> None:
    # Two slots over [0, 10]: nothing until 1, two trials 1-5, one trial 5-8, nothing after.
    idle = idle_split([(1.0, 5.0), (1.0, 8.0)], start=0.0, end=10.0, slots=2)
    assert idle == {"no_trial_running": pytest.approx(2 * 1 + 2 * 2), "fewer_trials_than_slots": pytest.approx(3.0)}


def test_list_schedule_makespan() -> None:
    assert list_schedule([3.0, 1.0, 1.0, 1.0], slots=2) == 3.0  # longest first: no tail
    assert list_schedule([1.0, 1.0, 1.0, 3.0], slots=2) == 4.0  # longest last: a 3 s tail
    assert list_schedule([], slots=2) == 0.0


@pytest.mark.parametrize(
    "script",
    [
        "throughput",
        "cost_growth",
        "eval_cost",
        "sweep_efficiency",
        "ablations",
        "tune_startup",
        "seed_batching",
        "streaming",
        "event_binning",
        "recipe_check",
        "precision",
        "conversion_fidelity",
        "conversion_peer",
        "conversion_diagnosis",
        "run",
    ],
)
def test_every_script_has_quick_and_help(script: str, capsys) -> None:
    module = __import__(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_the_batched_seed_model_is_its_seeds_side_by_side() -> None:
    """seed_batching.py times S seeds as one grouped model: it must compute exactly S networks."""
    from seed_batching import GroupedVGG5

    torch.manual_seed(0)
    batched = GroupedVGG5(2).eval()
    images = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        together = batched(images)
        functional.reset_net(batched)
        for seed in range(2):
            single = GroupedVGG5(1).eval()
            state = {k: v if v.dim() == 0 else v.chunk(2, dim=0)[seed] for k, v in batched.state_dict().items()}
            single.load_state_dict(state)
            assert torch.allclose(single(images)[0], together[seed], atol=1e-5)


def test_the_peer_check_gives_spikingjelly_the_harness_ann_layer_for_layer() -> None:
    """conversion_peer.py converts a single-step copy of the harness's ANN with spikingjelly: the
    copy must compute the same logits, or the peer table compares different networks."""
    from conversion_peer import single_step

    from harness.models import create_model, relu

    torch.manual_seed(0)
    ann = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=10, image_shape=(28, 28),
                       activation=relu, pool="avg").eval()  # fmt: skip
    for module in ann.modules():  # BatchNorm statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
    x = torch.rand(8, 1, 28, 28)
    flat = single_step(ann)
    with torch.no_grad():
        torch.testing.assert_close(flat(ann.encoder.normalize(x)), ann(x, 1)[0])
    assert sum(isinstance(m, torch.nn.ReLU) for m in flat) == sum(isinstance(m, torch.nn.ReLU) for m in ann.modules())
