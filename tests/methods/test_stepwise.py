"""`harness.methods.stepwise`: the per-step KL the KD family shares, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from harness.methods.stepwise import mean_logit_cross_entropy, stepwise_kl


def softmax(logits: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(z / tau) for z in logits]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_stepwise_kl_is_the_mean_over_steps_of_each_steps_batchmean_kl() -> None:
    # T = 2 steps, B = 2 samples, K = 2 classes; one target per sample, the same at every step.
    steps = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]]
    target = [[2.0, 0.0], [0.0, 1.0]]
    tau = 2.0
    per_step = [
        sum(kl(softmax(target[b], tau), softmax(steps[t][b], tau)) for b in range(2)) / 2  # batchmean
        for t in range(2)
    ]
    expected = tau**2 * (per_step[0] + per_step[1]) / 2
    got = stepwise_kl(torch.tensor(steps), torch.tensor(target), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_stepwise_kl_takes_one_target_per_step() -> None:
    steps = [[[1.0, 0.0]], [[0.0, 3.0]]]  # T = 2, B = 1, K = 2
    target = [[[0.0, 1.0]], [[2.0, 2.0]]]
    tau = 1.5
    # The second step's target [2, 2] is uniform: KL(u || q) = -log 2 - (log q_0 + log q_1) / 2.
    q = softmax([0.0, 3.0], tau)
    second = -math.log(2) - (math.log(q[0]) + math.log(q[1])) / 2
    expected = tau**2 * (kl(softmax([0.0, 1.0], tau), softmax([1.0, 0.0], tau)) + second) / 2
    got = stepwise_kl(torch.tensor(steps), torch.tensor(target), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_stepwise_kl_vanishes_when_every_step_is_its_target() -> None:
    torch.manual_seed(0)
    z = torch.randn(3, 4, 5)
    assert stepwise_kl(z, z, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.randn(4, 5)
    assert stepwise_kl(same.expand(3, 4, 5), same, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_stepwise_kl_wants_per_step_logits() -> None:
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        stepwise_kl(torch.zeros(4, 5), torch.zeros(4, 5), 1.0)


def test_mean_logit_cross_entropy_is_the_cross_entropy_of_the_time_average() -> None:
    steps = torch.tensor([[[1.0, 0.0]], [[0.0, 3.0]]])  # mean [0.5, 1.5]
    expected = -math.log(softmax([0.5, 1.5])[1])
    assert mean_logit_cross_entropy(steps, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-5)
