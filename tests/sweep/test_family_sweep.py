"""search_spaces/smoke-family.yaml end to end: the six methods (the KD family, direct training,
conversion) under the CIFAR-10-C severities and every built-in attack, on local Ray; each trial
is logged exactly once and the report compares every pair with Holm-corrected p-values, beside the
corruption summary and the accuracy-versus-eps table."""

from __future__ import annotations

import csv
import itertools
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from harness.api import publish_report
from harness.contract import PREDICTIONS_ARTIFACT, Role, Tag, attack_metric
from harness.noise.presets import NOISE_PRESETS
from harness.predictions import correct, read_predictions
from harness.sweep.plan import plan_sweep
from harness.sweep.run import SweepOptions, run_sweep

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke-family.yaml"
METHODS = ["kd", "tkd", "bkd", "direct", "sd", "conversion"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def family_sweep(ray_2_cpus, tmp_path_factory):
    """The sweep and its report: (plan, options, report.md)."""
    folder = tmp_path_factory.mktemp("family")
    options = SweepOptions(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="smoke-family", storage=folder / "runs"
    )
    plan = plan_sweep(SPACE)
    summary = run_sweep(plan, options, log=lambda _: None)
    report = publish_report(options, summary.parent_run_id)
    assert report is not None
    return plan, options, report


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_planned_trial_is_one_run(family_sweep) -> None:
    plan, options, _ = family_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment).experiment_id
    runs = client.search_runs([experiment], f"tags.`{Tag.ROLE}` != '{Role.SWEEP}'", max_results=1000)
    counts = Counter(run.data.tags[Tag.TRIAL_ID] for run in runs)
    assert set(counts.values()) == {1}
    by_role = Counter((run.data.tags[Tag.ROLE], run.data.tags[Tag.METHOD]) for run in runs)
    assert [p.method for p in plan.methods] == METHODS
    for method in METHODS:
        assert by_role[(Role.TRIAL.value, method)] == 2 and by_role[(Role.FINAL.value, method)] == 2
    assert all(run.info.status == "FINISHED" for run in runs)


def test_the_report_compares_every_pair_with_holm_corrected_p(family_sweep) -> None:
    _, _, report = family_sweep
    rows = _rows(report.parent / "tables" / "significance.csv")
    pairs = {row["comparison"].replace(" †", "") for row in rows}
    assert pairs == {f"{a} vs {b}" for a, b in itertools.combinations(METHODS, 2)}
    measures = {row["measure"] for row in rows}
    assert {"clean", "gaussian 0.04", "contrast 0.85", "pgd eps 0.05", "square eps 0.05"} <= measures
    tested = [row for row in rows if row["p"] != "–"]
    assert tested and all(row["test"].startswith("seeds x ") for row in tested)  # the predictions were read
    for row in tested:
        assert float(row["Holm p"]) >= float(row["p"])
    assert all(row["verdict"].startswith("no verdict") for row in rows if row["p"] == "–")
    summary = report.read_text().split("## Summary", 1)[1]
    assert "Holm-corrected over the table's" in summary


def test_the_report_has_the_corruption_summary_and_the_attack_table(family_sweep) -> None:
    _, _, report = family_sweep
    tables = report.parent / "tables"
    corruption = {row["method"]: row for row in _rows(tables / "corruption_summary.csv")}
    assert set(corruption) == set(METHODS)
    attacks = {row["model"].replace(" †", ""): row for row in _rows(tables / "accuracy_vs_eps.csv")}
    assert set(METHODS) <= set(attacks)
    assert attacks["conversion"]["gradient"] == "ann" and attacks["kd"]["gradient"] == "surrogate"
    assert (report.parent / "figures" / "accuracy_vs_eps.png").exists()
    text = report.read_text()
    assert "mCE" in text and "Test accuracy under adversarial attacks" in text


def test_final_runs_keep_predictions_of_every_noise_and_attack(family_sweep) -> None:
    """The cifar-c preset's 30 levels and the attacks are in every final run's predictions, each
    matching its logged accuracy; square's are of its subset only."""
    _, options, _ = family_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment).experiment_id
    finals = client.search_runs([experiment], f"tags.`{Tag.ROLE}` = '{Role.FINAL}'", max_results=100)
    levels = sum(len(levels) for levels in NOISE_PRESETS["cifar-c"].levels.values())
    for run in finals:
        with tempfile.TemporaryDirectory() as folder:
            predictions = read_predictions(client.download_artifacts(run.info.run_id, PREDICTIONS_ARTIFACT, folder))
        assert sum(key.startswith("noise/") for key in predictions) == levels
        for metric in (attack_metric("pgd", 0.05), attack_metric("transfer", 0.05), attack_metric("square", 0.05)):
            right = correct(predictions, metric)
            assert float(np.nanmean(right)) == pytest.approx(run.data.metrics[metric], abs=1e-6)
        unattacked = np.isnan(correct(predictions, attack_metric("square", 0.05)))
        assert int(unattacked.sum()) == len(predictions["labels"]) - 30  # square's subset: 30 images


def test_the_masking_check_reads_pgd_on_squares_own_images(family_sweep) -> None:
    """PGD's accuracy in the square-versus-PGD check is taken on the images square attacked, from
    the runs' predictions: here recomputed by hand from the artifacts of one method's runs."""
    from reports.attacks import _on_the_same_images
    from reports.loading import load_experiment

    _, options, _ = family_sweep
    exp = load_experiment(options.tracking_uri, options.experiment)
    runs = exp.finals_at("direct", 2)
    found = _on_the_same_images(exp, runs, attack_metric("pgd", 0.05), attack_metric("square", 0.05))
    assert found is not None and set(found) == {1, 2}
    for _, run in runs.iterrows():
        predictions = exp.predictions(run["run_id"])
        square = correct(predictions, attack_metric("square", 0.05))
        pgd = correct(predictions, attack_metric("pgd", 0.05))
        assert found[int(run["params.seed"])] == pytest.approx(float(pgd[~np.isnan(square)].mean()))
