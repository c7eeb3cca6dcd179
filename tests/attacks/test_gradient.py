"""FGSM and PGD through the spiking student's surrogate gradient, on a network trained by the real loop."""

from __future__ import annotations

import pytest
import torch

from harness.attacks import ATTACKS, create_attack
from harness.attacks.evaluate import attack_evaluation, attack_target
from harness.attacks.gradient import pgd_images
from harness.contract import TEST_ACCURACY
from harness.predictions import LABELS
from harness.training import accuracy, predicted_classes
from harness.trial import final_evaluation

EPS = [0.0, 0.1, 0.3]


@pytest.fixture(scope="module")
def measured(direct_student):
    """The final evaluation of the trained student with FGSM and PGD at three eps (one pass)."""
    trained = direct_student
    config = trained.with_attacks({"fgsm": EPS, "pgd": {"eps": EPS, "steps": 5}})
    predictions: dict[str, torch.Tensor] = {}
    metrics = final_evaluation(trained.method, trained.data, config, predictions)
    return metrics, predictions


def test_at_eps_0_the_accuracy_is_the_clean_accuracy(measured, direct_student) -> None:
    metrics, predictions = measured
    trained = direct_student
    clean = accuracy(trained.method.network(), trained.data.test_x, trained.data.test_y, time_steps=2, batch_size=500)
    assert metrics[TEST_ACCURACY] > 0.3  # trained: an attack has something to take away
    assert metrics["attack/fgsm/0"] == metrics["attack/pgd/0"] == clean == metrics[TEST_ACCURACY]
    assert torch.equal(predictions["attack/pgd/0"], predictions[TEST_ACCURACY])


def test_the_accuracy_does_not_rise_with_eps_and_pgd_is_no_easier_than_fgsm(measured) -> None:
    metrics, _ = measured
    for name in ("fgsm", "pgd"):
        curve = [metrics[f"attack/{name}/{eps:g}"] for eps in EPS]
        assert curve == sorted(curve, reverse=True), (name, curve)
        assert curve[-1] < curve[0]  # it does something
    for eps in EPS:
        assert metrics[f"attack/pgd/{eps:g}"] <= metrics[f"attack/fgsm/{eps:g}"], eps


def test_every_attack_metric_has_its_per_image_predictions(measured, direct_student) -> None:
    metrics, predictions = measured
    labels = predictions[LABELS]
    for eps in EPS:
        for name in ("fgsm", "pgd"):
            key = f"attack/{name}/{eps:g}"
            assert predictions[key].shape == labels.shape and predictions[key].device.type == "cpu"
            assert (predictions[key] == labels).float().mean().item() == pytest.approx(metrics[key])


def test_the_input_gradient_through_the_student_is_nonzero_and_finite_in_eval_mode(direct_student) -> None:
    trained = direct_student
    net = trained.method.network()
    net.train()  # the attack puts it in eval mode itself
    target, model = attack_target(trained.method, trained.config, trained.data)
    assert model.network is net and model.time_steps == 2 and "surrogate" in model.description
    assert target.exact  # the attack model is the evaluated network
    x, y = trained.data.test_x[:64], trained.data.test_y[:64]
    grad, logits = target.gradient(x, y)
    assert not net.training and not any(m.training for m in net.modules())  # BN on running stats, no dropout
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all())
    assert grad.abs().sum() > 0 and (grad.flatten(1).abs().sum(1) > 0).float().mean() > 0.5
    # The logits are the network's own at its T, and the state is reset: a second call is the same.
    expected = predicted_classes(net, x, time_steps=2, batch_size=64)
    assert torch.equal(logits.argmax(1), expected)
    again, _ = target.gradient(x, y)
    assert torch.equal(grad, again)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_adversarial_images_stay_in_the_eps_ball_and_in_pixel_range(name: str, direct_student) -> None:
    trained = direct_student
    target, _ = attack_target(trained.method, trained.config, trained.data)
    attack = create_attack(name, eps=[0.2])
    x, y = trained.data.test_x, trained.data.test_y
    seen = 0
    for index, adversarial in attack.batches(target, x, y, 0.2):
        clean = x[index]
        assert adversarial.shape == clean.shape
        assert float((adversarial - clean).abs().max()) <= 0.2 + 1e-6
        assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
        assert not torch.equal(adversarial, clean)
        seen += len(index)
    assert seen == len(x)


def test_pgd_random_start_is_seeded_per_image_whatever_the_batch(direct_student) -> None:
    trained = direct_student
    target, _ = attack_target(trained.method, trained.config, trained.data)
    attack = ATTACKS.get("pgd")("pgd", ATTACKS.get("pgd").options(eps=(0.1,), steps=2))
    x, y = trained.data.test_x[:40], trained.data.test_y[:40]
    whole = attack.perturb(target, x, y, 0.1, torch.arange(40))
    halves = torch.cat(
        [attack.perturb(target, x[a:b], y[a:b], 0.1, torch.arange(a, b)) for a, b in ((0, 25), (25, 40))]
    )
    assert torch.allclose(whole, halves, atol=1e-6)
    other_seed = ATTACKS.get("pgd")("pgd", ATTACKS.get("pgd").options(eps=(0.1,), steps=2, seed=1))
    assert not torch.equal(other_seed.perturb(target, x, y, 0.1, torch.arange(40)), whole)


def test_pgd_keeps_the_iterate_of_lowest_margin() -> None:
    """On a linear model whose gradient points the wrong way after the first step, PGD returns the
    iterate where the model was most wrong, not the last one."""
    calls = []

    def logits(images: torch.Tensor) -> torch.Tensor:  # margin of class 0: v - 0.5
        v = images.flatten(1)[:, 0]
        return torch.stack([v, torch.full_like(v, 0.5)], dim=1)

    def gradient(images: torch.Tensor, labels: torch.Tensor):
        calls.append(len(images))
        direction = -1.0 if len(calls) == 1 else 1.0  # the second step undoes the first
        return torch.full_like(images, direction), logits(images)

    x = torch.full((1, 1, 1, 1), 0.5)
    y = torch.zeros(1, dtype=torch.long)
    out = pgd_images(gradient, logits, x, y, 0.2, steps=2, step_size=0.2)
    assert out.item() == pytest.approx(0.3)


def test_attack_evaluation_with_no_attacks_measures_nothing(direct_student) -> None:
    trained = direct_student
    assert attack_evaluation(trained.method, trained.data, trained.config) == {}


def test_the_poisson_encoding_passes_an_attack_gradient_straight_through() -> None:
    from harness.models.encoders import PoissonEncoding

    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    torch.manual_seed(0)
    spikes = PoissonEncoding()(x, 3)
    assert set(spikes.detach().unique().tolist()) <= {0.0, 1.0}  # still spikes
    spikes.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3.0))  # d E[spike] / d p = 1 per step
    torch.manual_seed(0)
    assert torch.equal(PoissonEncoding()(x.detach(), 3), spikes.detach())  # the same draws without a gradient
