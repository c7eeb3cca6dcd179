"""The score-based Square attack: its seeded subset, its query budget, its predictions."""

from __future__ import annotations

import dataclasses

import torch

from harness.attacks import create_attack
from harness.attacks.evaluate import attack_evaluation, attack_target
from harness.attacks.square import window_share
from harness.predictions import NOT_EVALUATED
from harness.training import predicted_classes


def test_square_runs_on_its_subset_and_marks_the_other_images_not_evaluated(direct_student) -> None:
    trained = direct_student
    config = trained.with_attacks({"square": {"eps": [0.0, 0.3], "queries": 60, "samples": 40}})
    predictions: dict[str, torch.Tensor] = {}
    metrics = attack_evaluation(trained.method, trained.data, config, predictions)
    n = len(trained.data.test_x)
    subset = create_attack("square", eps=[0.3], queries=60, samples=40).attacked(n)
    assert len(subset) == 40 and torch.equal(subset, subset.sort().values)
    assert torch.equal(create_attack("square", eps=[0.1], samples=40).attacked(n), subset)  # seeded: the same
    y = trained.data.test_y
    for eps in ("0", "0.3"):
        predicted = predictions[f"attack/square/{eps}"]
        assert predicted.shape == (n,)
        evaluated = predicted != NOT_EVALUATED
        assert torch.equal(evaluated.nonzero().squeeze(1), subset)
        accuracy = (predicted[subset] == y[subset]).float().mean().item()
        assert metrics[f"attack/square/{eps}"] == accuracy
    # eps 0 is the clean accuracy on the subset; the attack lowers it.
    clean = predicted_classes(trained.method.network(), trained.data.test_x[subset], time_steps=2, batch_size=40)
    assert metrics["attack/square/0"] == (clean == y[subset]).float().mean().item()
    assert metrics["attack/square/0.3"] < metrics["attack/square/0"]


def test_square_queries_only_scores_within_its_budget_and_stays_in_the_ball(direct_student) -> None:
    trained = direct_student
    target, _ = attack_target(trained.method, trained.config, trained.data)
    queried: list[int] = []

    def counting(images: torch.Tensor) -> torch.Tensor:
        queried.append(len(images))
        return target.scores(images)

    def no_gradient(*args: object) -> torch.Tensor:
        raise AssertionError("Square is score-based: it never asks for a gradient or the attack model")

    blind = dataclasses.replace(target, gradient=no_gradient, logits=no_gradient, scores=counting)
    attack = create_attack("square", eps=[0.2], queries=30, samples=20)
    x, y = trained.data.test_x, trained.data.test_y
    ((index, adversarial),) = list(attack.batches(blind, x, y, 0.2))
    assert torch.equal(index, attack.attacked(len(x)))
    assert len(queried) <= 30 and sum(queried) <= 20 * 30
    assert float((adversarial - x[index]).abs().max()) <= 0.2 + 1e-6
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
    # Per-image generators: one image attacked alone comes out as in the batch.
    alone = attack.perturb(blind, x[index[:1]], y[index[:1]], 0.2, index[:1])
    assert torch.allclose(alone, adversarial[:1], atol=1e-6)


def test_the_window_shrinks_on_the_papers_schedule() -> None:
    shares = [window_share(0.3, query, 100) for query in range(100)]
    assert shares[0] == 0.3 and shares == sorted(shares, reverse=True) and shares[-1] < 0.3 / 100
