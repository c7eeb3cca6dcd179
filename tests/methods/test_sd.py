"""`sd` (temporal self-distillation): its loss against values worked out by hand, the detached
target, a trial on digits that neither trains nor loads a teacher, its config section."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.config.resolve import resolve
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.errors import HarnessInputError
from harness.methods import METHODS, logged_params, read_sections
from harness.methods.sd import SDConfig, SDMethod, sd_loss
from harness.methods.stepwise import stepwise_kl
from harness.trial import train


def softmax(logits: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(z / tau) for z in logits]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


# T = 2 steps, B = 1 sample, K = 2 classes.
STEPS = [[2.0, 0.0], [0.0, 1.0]]
MEAN = [1.0, 0.5]
LABEL = 1
TAU = 3.0


def _by_hand(alpha: float) -> float:
    ce = -math.log(softmax(MEAN)[LABEL])
    self_kd = sum(TAU**2 * kl(softmax(MEAN, TAU), softmax(step, TAU)) for step in STEPS) / 2
    return (1 - alpha) * ce + alpha * self_kd


def _steps(requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor([[s] for s in STEPS], requires_grad=requires_grad)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_sd_loss_matches_the_hand_computed_value(alpha: float) -> None:
    got = sd_loss(_steps(), torch.tensor([LABEL]), alpha, TAU)
    assert got.item() == pytest.approx(_by_hand(alpha), rel=1e-5)


def test_sd_at_one_step_is_the_cross_entropy_scaled_by_one_minus_alpha() -> None:
    step = torch.tensor([[[2.0, 0.0]]])  # T = 1: the step is its own average, the KL is 0
    expected = 0.6 * -math.log(softmax([2.0, 0.0])[1])
    assert sd_loss(step, torch.tensor([1]), 0.4, TAU).item() == pytest.approx(expected, rel=1e-5)


def test_the_gradient_at_each_step_matches_the_hand_derived_one() -> None:
    """alpha = 1: the gradient at step t is `(tau / T) (q_t - p_mean)`, `q_t = softmax(z[t] / tau)`."""
    steps = _steps(requires_grad=True)
    sd_loss(steps, torch.tensor([LABEL]), 1.0, TAU).backward()
    p_mean = softmax(MEAN, TAU)
    for t, step in enumerate(STEPS):
        q = softmax(step, TAU)
        assert steps.grad[t, 0].tolist() == pytest.approx([(TAU / 2) * (q[k] - p_mean[k]) for k in range(2)], rel=1e-5)


def test_the_target_is_the_detached_time_average(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.methods.sd as sd

    targets: list[torch.Tensor] = []

    def recording(step_logits, target_logits, temperature):
        targets.append(target_logits)
        return stepwise_kl(step_logits, target_logits, temperature)

    monkeypatch.setattr(sd, "stepwise_kl", recording)
    steps = _steps(requires_grad=True)
    sd_loss(steps, torch.tensor([LABEL]), 0.5, TAU)
    (target,) = targets
    assert not target.requires_grad and target.grad_fn is None
    torch.testing.assert_close(target, torch.tensor([MEAN]))


def test_sd_is_a_student_method_without_a_teacher() -> None:
    method = METHODS.get("sd")
    assert method is SDMethod
    assert not method.capabilities.needs_teacher and method.capabilities.trains_at_time_steps
    assert method.reads == frozenset({"snn"})
    assert "teacher" not in read_sections("sd") and "sd" in read_sections("sd")


def test_sd_trains_without_training_or_loading_a_teacher(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.methods.kd as kd
    import harness.teacher as teacher

    def no_teacher(ctx):
        raise AssertionError("sd asked for a teacher")

    monkeypatch.setattr(teacher, "load_or_train_teacher", no_teacher)
    monkeypatch.setattr(kd, "load_or_train_teacher", no_teacher)
    cache = tmp_path / "teacher_cache"
    config = make_config("sd", **{"train.epochs": 1, "sd.alpha": 0.3})
    metrics = train(config, teacher_cache=cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert not [key for key in metrics if key.startswith("teacher")]
    assert {"noise/gaussian/0.1", "timestep/4", "energy_uj"} <= set(metrics)
    assert not cache.exists() or not any(cache.iterdir())
    assert not [key for key in logged_params(config) if key.startswith("teacher.")]


SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


def _resolve(*sets: str):
    return resolve(load_space(SMOKE), method="sd", overrides=[parse_override(s) for s in sets]).config


def test_sd_section_defaults_and_set() -> None:
    assert SDConfig() == SDConfig(alpha=0.5, temperature=4.0)
    config = _resolve("sd.alpha=0.2")
    assert (config.options.alpha, config.options.temperature) == (0.2, 4.0)
    assert {"sd.alpha", "sd.temperature"} <= set(config.flat())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sd.beta=1", r"^--set sd.beta: unknown key; expected one of: alpha, temperature$"),
        ("sd.alpha=-0.1", r"^--set sd.alpha: .*greater than or equal to 0"),
        ("sd.alpha=1.01", r"^--set sd.alpha: .*less than or equal to 1"),
        ("sd.temperature=-1", r"^--set sd.temperature: .*greater than 0"),
    ],
)
def test_sd_section_refuses_unknown_keys_and_values_out_of_range(override: str, message: str) -> None:
    with pytest.raises(HarnessInputError, match=message):
        _resolve(override)
