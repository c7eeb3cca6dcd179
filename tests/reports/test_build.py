"""The report of a real smoke sweep: every table and figure, cells equal to the MLflow metrics."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reports.collapse import COLLAPSE_MARK

TABLES = (
    "accuracy_vs_noise",
    "corruption_summary",
    "accuracy_vs_time_steps",
    "efficiency",
    "search_summary",
    "significance",
)
FIGURES = ("accuracy_vs_noise", "accuracy_vs_time_steps", "search")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


MARK = f" {COLLAPSE_MARK}"


def _unmarked(table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Rows by method name: a smoke-sized conversion may fall more than 10 points below its own
    ANN, and the tables then mark its rows `conversion †` (tests/reports/test_tables.py)."""
    return {label.removesuffix(MARK): row for label, row in table.items()}


def _finals(options) -> list:
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'final'", max_results=1000)
    return [run for run in runs if run.info.status == "FINISHED"]


def _at(runs: list, method: str, steps: int) -> list:
    """Final runs of `method` measured at T = steps (conversion: all of them, at the reference T)."""
    runs = [r for r in runs if r.data.tags["harness.method"] == method]
    return runs if method == "conversion" else [r for r in runs if r.data.params["snn.time_steps"] == str(steps)]


def _assert_cell(row: dict[str, str], column: str, values: list[float]) -> None:
    assert values, column
    assert float(row[f"{column} mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12), column
    assert int(row[f"{column} n"]) == len(values)
    if len(values) > 1:
        assert float(row[f"{column} std"]) == pytest.approx(statistics.stdev(values), abs=1e-12), column
    else:
        assert row[f"{column} std"] == ""


def test_every_table_and_figure_is_written_and_indexed(smoke_report: Path) -> None:
    folder = smoke_report.parent
    index = smoke_report.read_text()
    positions = []
    for key in TABLES:
        for suffix in ("md", "tex", "csv"):
            assert (folder / "tables" / f"{key}.{suffix}").stat().st_size > 0, (key, suffix)
            assert f"(tables/{key}.{suffix})" in index
        positions.append(index.index(f"(tables/{key}.md)"))
    for key in FIGURES:
        for suffix in ("png", "pdf"):
            assert (folder / "figures" / f"{key}.{suffix}").stat().st_size > 0, (key, suffix)
        assert f"(figures/{key}.png)" in index and f"(figures/{key}.pdf)" in index
    assert positions == sorted(positions)  # reading order
    assert "Dataset `digits`; reference T = 2" in index
    assert "## Missing" not in index  # the smoke sweep is complete
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".report")]  # no temporary folder left


def test_noise_table_cells_are_the_mlflow_means_and_stds(smoke_report: Path, smoke_sweep, read_csv) -> None:
    _, options, _ = smoke_sweep
    finals = _finals(options)
    table = _unmarked(read_csv(smoke_report.parent / "tables" / "accuracy_vs_noise.csv"))
    for method in ("kd", "direct", "conversion"):
        runs = _at(finals, method, 2)
        _assert_cell(table[method], "clean", [r.data.metrics["test_accuracy"] for r in runs])
        _assert_cell(table[method], "gaussian 0.1", [r.data.metrics["noise/gaussian/0.1"] for r in runs])
    teacher = _at(finals, "kd", 2)
    _assert_cell(table["teacher (ANN)"], "clean", [r.data.metrics["teacher_test_accuracy"] for r in teacher])
    teacher_noisy = [r.data.metrics["teacher_noise/gaussian/0.1"] for r in teacher]
    _assert_cell(table["teacher (ANN)"], "gaussian 0.1", teacher_noisy)
    assert "not logged" not in (smoke_report.parent / "tables" / "accuracy_vs_noise.md").read_text()
    converted = _at(finals, "conversion", 2)  # its ANN, before conversion, on the same images
    ann = table["conversion (ANN)"]
    _assert_cell(ann, "clean", [r.data.metrics["ann_test_accuracy"] for r in converted])
    _assert_cell(ann, "gaussian 0.1", [r.data.metrics["ann_noise/gaussian/0.1"] for r in converted])


def test_time_step_table_uses_runs_trained_at_each_t_and_the_conversion_curve(
    smoke_report: Path, smoke_sweep, read_csv
) -> None:
    _, options, _ = smoke_sweep
    finals = _finals(options)
    table = read_csv(smoke_report.parent / "tables" / "accuracy_vs_time_steps.csv")
    for steps in (1, 2):
        for method in ("kd", "direct"):
            values = [r.data.metrics["test_accuracy"] for r in _at(finals, method, steps)]
            _assert_cell(table[method], f"T={steps}", values)
        curve = [r.data.metrics[f"timestep/{steps}"] for r in _at(finals, "conversion", 2)]
        _assert_cell(table["conversion"], f"T={steps}", curve)


def test_efficiency_table_cells_are_the_mlflow_metrics(smoke_report: Path, smoke_sweep, read_csv) -> None:
    _, options, _ = smoke_sweep
    finals = _finals(options)
    table = read_csv(smoke_report.parent / "tables" / "efficiency.csv")
    columns = {"params": "params", "firing rate": "firing_rate", "SynOps": "synops", "energy (µJ)": "energy_uj"}
    for method in ("kd", "direct", "conversion"):
        runs = _at(finals, method, 2)
        for column, metric in columns.items():
            _assert_cell(table[method], column, [r.data.metrics[metric] for r in runs])
    teacher = _at(finals, "kd", 2)
    _assert_cell(table["teacher (ANN)"], "MACs", [r.data.metrics["teacher_macs"] for r in teacher])
    _assert_cell(table["teacher (ANN)"], "energy (µJ)", [r.data.metrics["teacher_energy_uj"] for r in teacher])


def test_search_summary_counts_the_trials(smoke_report: Path, smoke_sweep, read_csv) -> None:
    plan, options, _ = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    trials = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'", max_results=1000)
    table = read_csv(smoke_report.parent / "tables" / "search_summary.csv")
    for method_plan in plan.methods:
        runs = [r for r in trials if r.data.tags["harness.method"] == method_plan.method]
        row = table[method_plan.method]
        assert int(row["trials"]) == len(runs) == plan.space.search.num_samples
        assert int(row["pruned"]) == sum(r.data.tags.get("harness.pruned") == "true" for r in runs)
        assert int(row["failed"]) == sum(r.info.status == "FAILED" for r in runs)
        best = max(
            (r for r in runs if r.info.status == "FINISHED"),
            key=lambda r: ("test_accuracy" in r.data.metrics, r.data.metrics["val_accuracy"]),
        )
        assert float(row["best val acc. mean"]) == pytest.approx(best.data.metrics["val_accuracy"])
        assert [part.split("=")[0] for part in row["best configuration"].split(", ")] == list(method_plan.dims)


def test_pngs_have_real_content(smoke_report: Path) -> None:
    import matplotlib.image

    for key in FIGURES:
        pixels = matplotlib.image.imread(smoke_report.parent / "figures" / f"{key}.png")[..., :3]
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200, key
        assert pixels.std() > 0.05, f"{key}.png is blank"
        coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.2  # lines in the palette's colours
        assert coloured.mean() > 0.002, f"{key}.png has no coloured marks"


def test_the_sweep_logs_its_report_and_tags_searched_dims(smoke_report: Path, smoke_sweep) -> None:
    plan, options, summary = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    parent = summary.parent_run_id
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.md", "report/tables", "report/figures"} <= logged
    assert smoke_report == (Path(options.storage) / options.experiment / "report" / "report.md").resolve()
    experiment = client.get_experiment_by_name(options.experiment)
    trials = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'", max_results=1000)
    dims = {p.method: ",".join(p.dims) for p in plan.methods}
    assert all(r.data.tags["harness.searched"] == dims[r.data.tags["harness.method"]] for r in trials)


def test_significance_rows_pair_every_two_methods(smoke_report: Path, read_csv) -> None:
    import csv

    with (smoke_report.parent / "tables" / "significance.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    noise = _unmarked(read_csv(smoke_report.parent / "tables" / "accuracy_vs_noise.csv"))
    pairs = [("kd", "direct"), ("kd", "conversion"), ("direct", "conversion")]
    assert {(r["comparison"].replace(MARK, ""), r["measure"]) for r in rows} == {
        (f"{first} vs {second}", measure) for first, second in pairs for measure in ("clean", "gaussian 0.1")
    }
    for row in rows:
        first, second = row["comparison"].replace(MARK, "").split(" vs ")
        column = row["measure"]
        expected = float(noise[first][f"{column} mean"]) - float(noise[second][f"{column} mean"])
        assert float(row["difference"]) == pytest.approx(expected, abs=1e-4)
        assert row["test"] == "n=1: no CI" and row["95% CI"] == "–" and row["Holm p"] == "–"  # one final seed
        assert row["verdict"] == "no verdict (one seed)"


def test_every_finished_run_keeps_its_test_predictions(smoke_sweep) -> None:
    """Each final and trial run of the real sweep logs `predictions/test.npz`: the labels and, per
    accuracy, the class of every test image, whose mean right equals the logged metric."""
    import tempfile

    import numpy as np
    from mlflow.tracking import MlflowClient

    from harness.contract import PREDICTIONS_ARTIFACT
    from harness.predictions import correct, read_predictions

    _, options, _ = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    finals = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'final'", max_results=100)
    assert finals
    for run in finals:
        with tempfile.TemporaryDirectory() as folder:
            predictions = read_predictions(client.download_artifacts(run.info.run_id, PREDICTIONS_ARTIFACT, folder))
        for metric in ("test_accuracy", "noise/gaussian/0.1"):
            assert float(np.nanmean(correct(predictions, metric))) == pytest.approx(run.data.metrics[metric], abs=1e-6)
