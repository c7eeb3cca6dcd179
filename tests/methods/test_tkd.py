"""`tkd` (temporal-decoupled KD): its loss against values worked out by hand, the detached
self-ensemble target, a trial on digits, its config section."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.config.resolve import resolve
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.errors import HarnessInputError
from harness.methods import METHODS, read_sections
from harness.methods.stepwise import stepwise_kl
from harness.methods.tkd import TKDConfig, TKDMethod, tkd_loss
from harness.trial import train


def softmax(logits: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(z / tau) for z in logits]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


# T = 2 steps, B = 1 sample, K = 2 classes.
STEPS = [[1.0, 0.0], [0.0, 3.0]]
MEAN = [0.5, 1.5]  # the student's time average
TEACHER = [2.0, 0.0]
LABEL = 0
TAU = 2.0


def _by_hand(alpha: float, gamma: float) -> float:
    ce = -math.log(softmax(MEAN)[LABEL])
    teacher = sum(TAU**2 * kl(softmax(TEACHER, TAU), softmax(step, TAU)) for step in STEPS) / 2
    ensemble = sum(TAU**2 * kl(softmax(MEAN, TAU), softmax(step, TAU)) for step in STEPS) / 2
    return (1 - alpha) * ce + alpha * teacher + gamma * ensemble


def _tkd(alpha: float, gamma: float, steps: torch.Tensor | None = None) -> torch.Tensor:
    steps = torch.tensor([[s] for s in STEPS]) if steps is None else steps
    return tkd_loss(steps, torch.tensor([TEACHER]), torch.tensor([LABEL]), alpha, TAU, gamma)


@pytest.mark.parametrize(
    ("alpha", "gamma"),
    [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.3, 0.7), (0.5, 2.0)],
    ids=["ce-only", "teacher-only", "ce-and-ensemble", "all-three", "ensemble-weight-2"],
)
def test_tkd_loss_matches_the_hand_computed_value(alpha: float, gamma: float) -> None:
    assert _tkd(alpha, gamma).item() == pytest.approx(_by_hand(alpha, gamma), rel=1e-5)


def test_tkd_at_alpha_zero_without_ensemble_is_the_cross_entropy_of_the_mean() -> None:
    assert _tkd(0.0, 0.0).item() == pytest.approx(math.log(1 + math.exp(1.0)), rel=1e-5)  # -log softmax([.5, 1.5])[0]


def test_the_gradient_at_each_step_matches_the_hand_derived_one() -> None:
    """With alpha = 1 (no CE) the gradient at step t is `(tau / T) [alpha (q_t - p_teacher) +
    gamma (q_t - p_mean)]`, `q_t = softmax(z_s[t] / tau)`, the time average a constant target."""
    alpha, gamma = 1.0, 0.7
    steps = torch.tensor([[s] for s in STEPS], requires_grad=True)
    _tkd(alpha, gamma, steps).backward()
    p_teacher, p_mean = softmax(TEACHER, TAU), softmax(MEAN, TAU)
    for t, step in enumerate(STEPS):
        q = softmax(step, TAU)
        expected = [(TAU / 2) * (alpha * (q[k] - p_teacher[k]) + gamma * (q[k] - p_mean[k])) for k in range(2)]
        assert steps.grad[t, 0].tolist() == pytest.approx(expected, rel=1e-5)


def test_the_self_ensemble_target_is_detached(monkeypatch: pytest.MonkeyPatch) -> None:
    """The student's time average enters the ensemble term as a target without a graph."""
    import harness.methods.tkd as tkd

    targets: list[torch.Tensor] = []

    def recording(step_logits, target_logits, temperature):
        targets.append(target_logits)
        return stepwise_kl(step_logits, target_logits, temperature)

    monkeypatch.setattr(tkd, "stepwise_kl", recording)
    steps = torch.tensor([[s] for s in STEPS], requires_grad=True)
    _tkd(0.5, 0.5, steps)
    teacher, ensemble = targets
    torch.testing.assert_close(teacher, torch.tensor([TEACHER]))
    assert not ensemble.requires_grad and ensemble.grad_fn is None
    torch.testing.assert_close(ensemble, steps.detach().mean(0))


def test_tkd_declares_a_teacher() -> None:
    method = METHODS.get("tkd")
    assert method is TKDMethod and method.capabilities.needs_teacher
    assert {"teacher", "snn", "tkd"} <= read_sections("tkd")


def test_tkd_trains_a_student_from_the_teacher(make_config, teacher_cache: Path) -> None:
    config = make_config("tkd", **{"train.epochs": 1, "tkd.ensemble": 0.5, "tkd.alpha": 0.7})
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert 0.0 < metrics["teacher_test_accuracy"] <= 1.0
    assert {"teacher_macs", "teacher_noise/gaussian/0.1"} <= set(metrics)


SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


def _resolve(*sets: str):
    return resolve(load_space(SMOKE), method="tkd", overrides=[parse_override(s) for s in sets]).config


def test_tkd_section_defaults_and_set() -> None:
    assert TKDConfig() == TKDConfig(alpha=0.5, temperature=4.0, ensemble=0.0)
    config = _resolve("tkd.ensemble=0.25", "tkd.temperature=2")
    assert (config.options.ensemble, config.options.temperature, config.options.alpha) == (0.25, 2.0, 0.5)
    assert {"tkd.alpha", "tkd.temperature", "tkd.ensemble"} <= set(config.flat())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tkd.gamma=0.5", r"^--set tkd.gamma: unknown key; expected one of: alpha, ensemble, temperature$"),
        ("tkd.alpha=1.5", r"^--set tkd.alpha: .*less than or equal to 1"),
        ("tkd.temperature=0", r"^--set tkd.temperature: .*greater than 0"),
        ("tkd.ensemble=-0.1", r"^--set tkd.ensemble: .*greater than or equal to 0"),
        ("tkd.ensemble=.nan", r"^--set tkd.ensemble: "),
    ],
)
def test_tkd_section_refuses_unknown_keys_and_values_out_of_range(override: str, message: str) -> None:
    with pytest.raises(HarnessInputError, match=message):
        _resolve(override)
