"""`train(config) -> metrics` end to end on the shipped digits set, without Ray or MLflow."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from harness.errors import TrialFailed
from harness.trial import train

CHANCE = 0.1


def _expected_metric_names(config) -> set[str]:
    names = {"test_accuracy", "params", "acs", "macs", "synops", "energy_uj", "firing_rate", "train_seconds"}
    names |= {f"timestep/{t}" for t in config.eval.time_steps}
    names |= {f"noise/{n}/{level:g}" for n, levels in config.eval.noise.items() for level in levels}
    return names


@pytest.mark.parametrize("method", ["kd", "direct"])
def test_trial_learns_and_reports_every_metric(method: str, make_config, teacher_cache: Path) -> None:
    config = make_config(method, **{"train.epochs": 3})
    epochs: list[tuple[int, dict[str, float]]] = []

    def report(metrics: dict[str, float], epoch: int, method) -> None:
        epochs.append((epoch, dict(metrics)))

    metrics = train(config, report=report, teacher_cache=teacher_cache, log=lambda _: None)
    assert [e for e, _ in epochs] == [1, 2, 3]
    assert all({"val_accuracy", "train_loss", "train_seconds"} <= set(m) for _, m in epochs)
    assert "test_accuracy" not in epochs[0][1]
    assert epochs[-1][1] == metrics  # the last epoch's report carries the final evaluation
    assert _expected_metric_names(config) <= set(metrics)
    if method == "kd":
        assert {"teacher_test_accuracy", "teacher_macs", "teacher_energy_uj"} <= set(metrics)
        assert metrics["teacher_test_accuracy"] > 0.6
        noisy = {f"teacher_noise/{n}/{level:g}" for n, levels in config.eval.noise.items() for level in levels}
        assert noisy <= set(metrics) and all(0.0 < metrics[k] <= 1.0 for k in noisy)
    # It learns: well above chance after three short epochs.
    assert metrics["test_accuracy"] > 3 * CHANCE
    assert metrics["test_accuracy"] == metrics[f"timestep/{config.snn.time_steps}"]
    assert epochs[-1][1]["train_loss"] < epochs[0][1]["train_loss"]
    for key, value in metrics.items():
        if "accuracy" in key or key.startswith(("timestep/", "noise/")) or key == "firing_rate":
            assert 0.0 <= value <= 1.0, key
    assert metrics["energy_uj"] > 0 and metrics["synops"] > 0


STRONG_NOISE = {"gaussian": [0.1, 1.0], "salt_pepper": [0.05, 0.5]}


def test_each_noise_metric_is_the_accuracy_on_the_corrupted_test_set(make_config, teacher_cache: Path) -> None:
    """`noise/<type>/<level>` is the network's accuracy on `apply_noise(test_x, type, level)` at
    the method's T; a strong corruption scores below the clean test set."""
    from harness.methods import TrialContext, create_method
    from harness.noise import apply_noise
    from harness.training import accuracy
    from harness.trial import eval_batch, final_evaluation, load_trial_data

    config = make_config("direct", **{"train.epochs": 3, "eval.noise": STRONG_NOISE})
    torch.manual_seed(0)
    data = load_trial_data(config, torch.device("cpu"))
    method = create_method("direct", TrialContext(config, data, torch.device("cpu"), teacher_cache, lambda _: None))
    for epoch in range(1, config.train.epochs + 1):
        method.train_one_epoch(epoch)
    metrics = final_evaluation(method, data, config)
    assert metrics["test_accuracy"] > 3 * CHANCE  # trained: a corruption has something to destroy
    t = method.eval_time_steps
    for kind, levels in STRONG_NOISE.items():
        for level in levels:
            corrupted = apply_noise(data.test_x, kind, level)
            expected = accuracy(
                method.network(), corrupted, data.test_y, time_steps=t, batch_size=eval_batch(config, t)
            )
            assert metrics[f"noise/{kind}/{level:g}"] == expected, (kind, level)
    assert metrics["noise/gaussian/1"] < metrics["test_accuracy"]
    assert metrics["noise/salt_pepper/0.5"] < metrics["test_accuracy"]


def test_resume_from_a_checkpoint_gives_the_same_result(make_config, teacher_cache: Path) -> None:
    """Stop after epoch 1, restart from its state: the same weights and metrics as one run."""
    config = make_config("kd", **{"train.epochs": 2})
    saved: dict = {}

    def checkpoint(metrics: dict[str, float], epoch: int, method) -> None:
        if epoch == 1:
            saved.update(copy.deepcopy(method.state_dict()), epoch=1, train_seconds=metrics["train_seconds"])

    whole = train(config, report=checkpoint, teacher_cache=teacher_cache, log=lambda _: None)
    resumed = train(config, teacher_cache=teacher_cache, log=lambda _: None, state=saved)
    for result in (whole, resumed):
        result.pop("train_seconds")
    assert resumed == whole


def test_same_seed_same_result(make_config, teacher_cache: Path) -> None:
    config = make_config("direct", **{"train.epochs": 1})
    first = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    second = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    first.pop("train_seconds"), second.pop("train_seconds")
    assert first == second


def test_nan_loss_stops_the_trial(nan_method: str, make_config, teacher_cache: Path) -> None:
    config = make_config(nan_method)
    with pytest.raises(TrialFailed, match="loss became NaN or infinite in epoch 1"):
        train(config, teacher_cache=teacher_cache, log=lambda _: None)


PER_T_CURVE = '''
from baselines.direct import DirectMethod
from harness.contract import Capabilities


class PerTDirect(DirectMethod):
    """Direct training that says its curve cannot be read off one run."""

    capabilities = Capabilities(curve_from_one_run=False)
'''


def test_a_curve_measured_per_t_equals_the_one_run_curve(install_plugin, make_config, teacher_cache: Path) -> None:
    """`curve_from_one_run=False` evaluates every T separately; on a causal network both agree."""
    install_plugin("per-t", {"methods": {"per_t_direct": "per_t:PerTDirect"}}, {"per_t.py": PER_T_CURVE})
    one_run = train(make_config("direct"), teacher_cache=teacher_cache, log=lambda _: None)
    per_t = train(make_config("per_t_direct"), teacher_cache=teacher_cache, log=lambda _: None)
    curve = [f"timestep/{t}" for t in make_config().eval.time_steps]
    assert [per_t[k] for k in curve] == [one_run[k] for k in curve]
    assert per_t["test_accuracy"] == one_run["test_accuracy"]


@pytest.mark.parametrize("method", ["direct", "conversion"])
def test_a_poisson_encoded_trial_trains_and_is_measured(method: str, make_config, teacher_cache: Path) -> None:
    config = make_config(method, **{"encoding.name": "poisson", "train.epochs": 1})
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert _expected_metric_names(config) - {"train_seconds"} <= set(metrics)
    assert metrics["acs"] > 0  # spikes in, accumulates counted from the stem on


def test_conversion_trains_its_ann_on_what_the_encoding_carries(make_config, teacher_cache: Path) -> None:
    from harness.data import load_dataset
    from harness.methods import TrialContext, create_method
    from harness.models.encoders import DirectEncoding, PoissonEncoding, RateEncoding

    data = load_dataset("digits")
    for name, ann_encoding, snn_encoding in (("direct", DirectEncoding, DirectEncoding),
                                             ("poisson", RateEncoding, PoissonEncoding)):  # fmt: skip
        config = make_config("conversion", **{"encoding.name": name})
        ctx = TrialContext(config, data, torch.device("cpu"), teacher_cache, lambda _: None)
        method = create_method("conversion", ctx)
        assert type(method.ann.encoder) is ann_encoding
        assert type(method.network().encoder) is snn_encoding
