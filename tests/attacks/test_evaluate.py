"""`attack/<name>/<eps>` in the final evaluation: the conversion baseline through its ANN, a whole
trial, and `harness evaluate` adding the attacks a logged run lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from harness.attacks import create_attack
from harness.attacks.evaluate import attack_evaluation, attack_target
from harness.evaluation import only_missing_attacks
from harness.predictions import LABELS
from harness.training import predicted_classes
from harness.trial import train


def test_conversion_attacks_through_its_ann_and_is_evaluated_on_the_snn(converted) -> None:
    trained = converted
    method = trained.method
    target, model = attack_target(method, trained.config, trained.data)
    assert model.network is method.ann and model.time_steps == 1 and "QCFS ANN" in model.description
    assert not target.exact  # crafted on the ANN, measured on the converted SNN
    x, y = trained.data.test_x[:64], trained.data.test_y[:64]
    grad, logits = target.gradient(x, y)
    assert bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0  # QCFS's floor passes gradients through
    assert torch.equal(logits.argmax(1), method.ann(x, 1).mean(0).argmax(1))
    # Every gradient the white-box attack takes is the ANN's, one per image.
    calls: list[int] = []
    ann_gradient = target.gradient

    def counted(images: torch.Tensor, labels: torch.Tensor):
        calls.append(len(images))
        return ann_gradient(images, labels)

    attack = create_attack("fgsm", eps=[0.1])
    batches = list(
        attack.batches(dataclasses.replace(target, gradient=counted), trained.data.test_x, trained.data.test_y, 0.1)
    )
    assert sum(calls) == len(trained.data.test_x) and len(batches) >= 1
    config = trained.with_attacks({"fgsm": [0.0, 0.1], "pgd": {"eps": [0.1], "steps": 3}})
    predictions: dict[str, torch.Tensor] = {}
    metrics = attack_evaluation(method, trained.data, config, predictions)
    assert set(metrics) == {"attack/fgsm/0", "attack/fgsm/0.1", "attack/pgd/0.1"}
    assert metrics["attack/fgsm/0.1"] < metrics["attack/fgsm/0"]
    snn = method.network()
    clean = predicted_classes(snn, trained.data.test_x, time_steps=2, batch_size=500)
    assert torch.equal(predictions["attack/fgsm/0"], clean)  # eps 0: the converted SNN's own predictions at T = 2
    assert any("gradients of the QCFS ANN" in line for line in trained.log)


def test_a_trial_reports_its_attacks_and_their_predictions(make_config, teacher_cache: Path) -> None:
    config = make_config(
        "direct",
        **{
            "student.arch": "vgg",
            "student.depth": 5,
            "train.epochs": 1,
            "eval.noise": {},
            "eval.attacks": {"fgsm": [0.1], "square": {"eps": [0.1], "queries": 5, "samples": 10}},
        },
    )
    kept: dict[str, torch.Tensor] = {}
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None, on_predictions=kept.update)
    assert {"attack/fgsm/0.1", "attack/square/0.1"} <= set(metrics)
    assert {LABELS, "test_accuracy", "attack/fgsm/0.1", "attack/square/0.1"} <= set(kept)
    assert int((kept["attack/square/0.1"] >= 0).sum()) == 10


def test_only_the_missing_attacks_are_measured_again(make_config) -> None:
    config = make_config("direct", **{"eval.attacks": {"fgsm": [0.1, 0.2], "pgd": {"eps": [0.1], "steps": 3}}})
    narrowed = only_missing_attacks(config, {"attack/fgsm/0.1", "attack/pgd/0.1", "test_accuracy"})
    assert list(narrowed.eval.attacks) == ["fgsm"] and narrowed.eval.attacks["fgsm"].eps == (0.2,)
    assert only_missing_attacks(config, set()).eval.attacks == config.eval.attacks


def test_harness_evaluate_adds_the_attacks_a_run_lacks(tiny_space: Path, tmp_path: Path, teacher_cache: Path) -> None:
    import numpy as np
    from mlflow.tracking import MlflowClient

    from harness import api
    from harness.contract import PREDICTIONS_ARTIFACT
    from harness.predictions import correct, read_predictions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = {"train.epochs": 1, "eval.noise": {}}
    outcome = api.train_once(
        tiny_space, method="direct", tracking_uri=uri, teacher_cache=teacher_cache, overrides=sets, log=lambda _: None
    )
    assert not any(key.startswith("attack/") for key in outcome.metrics)
    first = api.evaluate(
        run_id=outcome.run_id, overrides=[("eval.attacks", {"fgsm": [0.1]})], tracking_uri=uri, log=lambda _: None
    )[outcome.run_id]
    assert "attack/fgsm/0.1" in first and "test_accuracy" not in first  # the clean pass is logged already
    second = api.evaluate(run_id=outcome.run_id, overrides=[("eval.attacks", {"fgsm": [0.1, 0.2]})], tracking_uri=uri)[
        outcome.run_id
    ]
    assert "attack/fgsm/0.2" in second and "attack/fgsm/0.1" not in second  # logged already: not measured again
    client = MlflowClient(uri)
    logged = client.get_run(outcome.run_id).data.metrics
    assert logged["attack/fgsm/0.1"] == first["attack/fgsm/0.1"]
    folder = tmp_path / "download"
    folder.mkdir()
    stored = read_predictions(client.download_artifacts(outcome.run_id, PREDICTIONS_ARTIFACT, str(folder)))
    for key in ("attack/fgsm/0.1", "attack/fgsm/0.2"):
        assert float(np.nanmean(correct(stored, key))) == pytest.approx(logged[key], abs=1e-6)
