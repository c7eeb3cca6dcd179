"""`harness evaluate`: a finished trial's logged network measured again under other `eval.*`,
with no training, its metrics added to the same run (and, for a sweep, seen by the report)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import api
from harness.cli import main
from harness.contract import PREDICTIONS_ARTIFACT, Role, Tag
from harness.tracking import NETWORK_ARTIFACT


@pytest.fixture
def trained_run(tiny_space: Path, tmp_path: Path, teacher_cache: Path):
    """One `harness train` of the tiny space (direct training): (store URI, its outcome)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = api.train_once(
        tiny_space, method="direct", tracking_uri=uri, teacher_cache=teacher_cache, log=lambda _: None
    )
    return uri, outcome


def test_a_finished_trial_logs_its_network_and_evaluate_adds_metrics_without_training(trained_run) -> None:
    uri, outcome = trained_run
    client = MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(outcome.run_id, "model")] == [NETWORK_ARTIFACT]
    lines: list[str] = []
    results = api.evaluate(
        run_id=outcome.run_id, overrides=[("eval.noise.gaussian", [0.3])], tracking_uri=uri, log=lines.append
    )
    metrics = results[outcome.run_id]
    assert "test_accuracy" not in metrics  # only a noise level was added: the clean pass is logged already
    assert "noise/gaussian/0.3" in metrics and "noise/gaussian/0.3" not in outcome.metrics
    assert "noise/salt_pepper/0.05" not in metrics  # logged already: not measured again
    logged = client.get_run(outcome.run_id).data
    assert logged.metrics["noise/gaussian/0.3"] == metrics["noise/gaussian/0.3"]
    assert logged.metrics["noise/gaussian/0.1"] == outcome.metrics["noise/gaussian/0.1"]  # kept
    assert json.loads(logged.tags[Tag.EVALUATED])["noise"] == {"gaussian": [0.3], "salt_pepper": [0.05]}
    assert not any("epoch" in line for line in lines)  # nothing trained
    # Another T curve is a whole final evaluation: the same network on the same test set gives
    # the trained run's clean accuracy exactly, and the new point of the curve.
    again = api.evaluate(run_id=outcome.run_id, overrides=[("eval.time_steps", [1, 2, 4, 8])], tracking_uri=uri)
    assert again[outcome.run_id]["test_accuracy"] == outcome.metrics["test_accuracy"]
    assert "timestep/8" in again[outcome.run_id] and "timestep/8" not in outcome.metrics


def test_the_test_predictions_are_kept_and_a_re_evaluation_adds_to_them(trained_run, tmp_path: Path) -> None:
    """`harness train` logs the per-image predictions of every accuracy; `harness evaluate` adds the
    new noise level's to the same file and keeps the earlier ones."""
    import numpy as np

    from harness.predictions import LABELS, correct, read_predictions

    uri, outcome = trained_run
    client = MlflowClient(uri)

    def stored() -> dict[str, np.ndarray]:
        folder = tmp_path / f"download-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return read_predictions(client.download_artifacts(outcome.run_id, PREDICTIONS_ARTIFACT, str(folder)))

    first = stored()
    assert set(first) == {LABELS, "test_accuracy", "noise/gaussian/0.1", "noise/salt_pepper/0.05"}
    for metric in ("test_accuracy", "noise/gaussian/0.1"):
        assert float(np.mean(correct(first, metric))) == pytest.approx(outcome.metrics[metric], abs=1e-6)
    api.evaluate(run_id=outcome.run_id, overrides=[("eval.noise.gaussian", [0.3])], tracking_uri=uri)
    second = stored()
    assert set(second) == set(first) | {"noise/gaussian/0.3"}
    assert np.array_equal(second["test_accuracy"], first["test_accuracy"])
    metrics = client.get_run(outcome.run_id).data.metrics
    assert float(np.mean(correct(second, "noise/gaussian/0.3"))) == pytest.approx(metrics["noise/gaussian/0.3"])


def test_evaluate_refuses_in_one_line(trained_run, capsys, tmp_path: Path) -> None:
    uri, outcome = trained_run

    def refusal(*args: str) -> str:
        assert main(["evaluate", *args, "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "--run nope: no such run" in refusal("--run", "nope")
    assert "--set train.epochs: only eval.* can change without retraining" in refusal(
        "--run", outcome.run_id, "--set", "train.epochs=9"
    )
    assert "--set eval.noise.fog" in refusal("--run", outcome.run_id, "--set", "eval.noise.fog=[0.1]")
    bare = MlflowClient(uri).create_run(MlflowClient(uri).get_run(outcome.run_id).info.experiment_id).info.run_id
    assert f"--run {bare}: the run has no logged network" in refusal("--run", bare)
    assert "--experiment nowhere: no such experiment" in refusal("--experiment", "nowhere")


@pytest.mark.slow
def test_evaluate_adds_a_noise_level_to_every_final_run_of_a_sweep_and_the_report_shows_it(
    smoke_sweep, tmp_path: Path
) -> None:
    plan, options, _ = smoke_sweep
    store = tmp_path / "mlflow.db"  # a copy: the session's sweep stays as it was for other tests
    shutil.copy(options.tracking_uri.removeprefix("sqlite:///"), store)
    uri = f"sqlite:///{store}"
    results = api.evaluate(
        experiment=options.experiment,
        overrides=[("eval.noise.gaussian", [0.1, 0.25])],
        tracking_uri=uri,
        teacher_cache=Path(options.storage) / "teacher_cache",
        log=lambda _: None,
    )
    client = MlflowClient(uri)
    finals = client.search_runs(
        [client.get_experiment_by_name(options.experiment).experiment_id], f"tags.`{Tag.ROLE}` = '{Role.FINAL}'"
    )
    assert set(results) == {run.info.run_id for run in finals if run.info.status == "FINISHED"}
    assert all("noise/gaussian/0.25" in run.data.metrics for run in finals)
    assert all(Tag.CHECKPOINT in run.data.tags and Path(run.data.tags[Tag.CHECKPOINT]).exists() for run in finals)
    report = api.report(options.experiment, tracking_uri=uri, out=tmp_path / "report")
    assert "gaussian 0.25" in (report.parent / "tables" / "accuracy_vs_noise.md").read_text()
