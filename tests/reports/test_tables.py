"""Tables over a written store with three final seeds: stds, paired intervals, a partial experiment."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from baselines.conversion import ConversionMethod
from reports.build import build_report
from reports.collapse import Collapse, collapses
from reports.loading import load_experiment
from reports.render import to_markdown
from reports.significance import significance_table
from reports.summary import summary_lines
from reports.tables import noise_table

from .conftest import REFERENCE_T, SEEDS, TIME_STEPS, write_store


@pytest.fixture(scope="module")
def partial_report(written_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(written_store, "partial", tmp_path_factory.mktemp("partial") / "report")


@pytest.fixture(scope="module")
def complete_report(written_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(written_store, "complete", tmp_path_factory.mktemp("complete") / "report")


def _metric(uri: str, experiment: str, method: str, steps: int, metric: str) -> dict[int, float]:
    """`metric` per seed of the final runs of `method` trained at T = steps, read back from MLflow."""
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs(
        [experiment_id],
        f"tags.`harness.role` = 'final' and tags.`harness.method` = '{method}' and params.`snn.time_steps` = '{steps}'",
    )
    return {int(r.data.params["seed"]): r.data.metrics[metric] for r in runs}


def test_cells_are_mean_and_sample_std_over_the_seeds(written_store: str, partial_report: Path, read_csv) -> None:
    noise = read_csv(partial_report.parent / "tables" / "accuracy_vs_noise.csv")
    for method in ("kd", "direct"):
        for column, metric in (("clean", "test_accuracy"), ("gaussian 0.2", "noise/gaussian/0.2")):
            values = list(_metric(written_store, "partial", method, REFERENCE_T, metric).values())
            assert len(values) == len(SEEDS)
            assert float(noise[method][f"{column} mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert float(noise[method][f"{column} std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
            assert noise[method][f"{column} n"] == "3"
    steps = read_csv(partial_report.parent / "tables" / "accuracy_vs_time_steps.csv")
    for t in TIME_STEPS:
        values = list(_metric(written_store, "partial", "kd", t, "test_accuracy").values())
        assert float(steps["kd"][f"T={t} mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12)


def test_markdown_shows_mean_pm_std_with_n_and_bolds_the_best(partial_report: Path) -> None:
    markdown = (partial_report.parent / "tables" / "accuracy_vs_noise.md").read_text()
    kd_row = next(line for line in markdown.splitlines() if line.startswith("| kd |"))
    assert kd_row.startswith("| kd | 3 | ") and " ± " in kd_row
    direct_row = next(line for line in markdown.splitlines() if line.startswith("| direct |"))
    assert "**" in kd_row.split("|", 4)[4] and "**" not in direct_row  # KD is best under every noise here
    assert markdown.count("**") // 2 == 4  # teacher clean + kd under three noises
    latex = (partial_report.parent / "tables" / "accuracy_vs_noise.tex").read_text()
    assert r"\toprule" in latex and r"\textbf{" in latex and r"$\pm$" in latex and "salt\\_pepper" in latex


def test_significance_is_a_paired_t_interval_over_the_seeds(written_store: str, complete_report: Path) -> None:
    import csv

    with (complete_report.parent / "tables" / "significance.csv").open(encoding="utf-8") as handle:
        rows = {(r["comparison"], r["measure"]): r for r in csv.DictReader(handle)}
    kd = _metric(written_store, "complete", "kd", REFERENCE_T, "test_accuracy")
    direct = _metric(written_store, "complete", "direct", REFERENCE_T, "test_accuracy")
    deltas = [kd[s] - direct[s] for s in SEEDS]
    half = stats.t.ppf(0.975, len(deltas) - 1) * statistics.stdev(deltas) / len(deltas) ** 0.5
    row = rows[("kd vs direct", "clean")]
    assert row["test"] == "paired t (n=3)"
    assert float(row["difference"]) == pytest.approx(statistics.fmean(deltas), abs=1e-4)
    low, high = (float(x) for x in row["95% CI"].strip("[]").split(","))
    assert low == pytest.approx(statistics.fmean(deltas) - half, abs=1e-4)
    assert high == pytest.approx(statistics.fmean(deltas) + half, abs=1e-4)
    raw, holm = float(row["p"]), float(row["Holm p"])
    assert raw == pytest.approx(stats.ttest_rel([kd[s] for s in SEEDS], [direct[s] for s in SEEDS]).pvalue, rel=1e-2)
    assert holm >= raw  # Holm over every comparison of the table
    verdict = "kd higher" if holm < 0.05 else "no significant difference"
    assert row["verdict"] == f"{verdict} (Holm p = {holm:.2g})"
    assert ("kd vs conversion", "salt_pepper 0.05") in rows and ("direct vs conversion", "clean") in rows


def test_the_report_opens_with_three_lines_that_answer(written_store: str, complete_report: Path) -> None:
    """Most accurate, most robust, and which differences are significant, computed from the store."""
    text = complete_report.read_text()
    summary = text.split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()
    assert len(summary) == 3 and text.index("## Summary") < text.index("## 1.")
    accuracy, robustness, significance = summary
    means = {m: statistics.fmean(_metric(written_store, "complete", m, REFERENCE_T, "test_accuracy").values())
             for m in ("kd", "direct", "conversion")}  # fmt: skip
    assert (
        f"**kd** ({means['kd']:.4f}); then direct {means['direct']:.4f}, conversion {means['conversion']:.4f}"
        in accuracy
    )
    assert "mean over 3 seeds" in accuracy and "The teacher (ANN) reaches" in accuracy
    assert "Most robust (mean accuracy over the 3 noise columns): **kd**" in robustness
    kd = _metric(written_store, "complete", "kd", REFERENCE_T, "test_accuracy")
    direct = _metric(written_store, "complete", "direct", REFERENCE_T, "test_accuracy")
    deltas = [kd[s] - direct[s] for s in SEEDS]
    half = stats.t.ppf(0.975, len(deltas) - 1) * statistics.stdev(deltas) / len(deltas) ** 0.5
    assert f"kd − direct {100 * statistics.fmean(deltas):+.2f} points" in significance
    assert re.search(rf"± {100 * half:.2f}, Holm p = [\d.e-]+\): (not )?significant", significance)
    assert "Holm-corrected over the table's" in significance
    noisy = re.search(
        r"Under noise and attack, (\d+) of \d+ differences (is|are) significant(?: \((.*)\))?\.$", significance
    )
    assert noisy and (noisy[2] == "is") == (noisy[1] == "1")
    named = re.sub(r" and \d+ more$", "", noisy[3]).split(", ") if noisy[3] else []
    assert len(named) == min(int(noisy[1]), 6)  # the six smallest p named, the rest counted
    assert all(re.fullmatch(r"\w+ above \w+ under \w+ [\d.]+", n) for n in named)


def test_a_partial_experiment_renders_what_exists_and_says_what_is_missing(partial_report: Path, read_csv) -> None:
    index = partial_report.read_text()
    assert "## Missing" in index
    assert "`conversion` has no finished final runs (3 search trials, 1 failed)" in index
    noise = read_csv(partial_report.parent / "tables" / "accuracy_vs_noise.csv")
    assert set(noise) == {"teacher (ANN)", "kd", "direct"}
    search = read_csv(partial_report.parent / "tables" / "search_summary.csv")
    assert (search["conversion"]["trials"], search["conversion"]["pruned"], search["conversion"]["failed"]) == (
        "3",
        "1",
        "1",
    )
    assert search["kd"]["best configuration"] == "kd.alpha=0.8, student.width=24"  # the tag's dims, in its order
    for key in ("accuracy_vs_noise", "accuracy_vs_time_steps", "search"):
        assert (partial_report.parent / "figures" / f"{key}.png").exists()


def test_the_teacher_row_says_what_was_not_logged(partial_report: Path, read_csv) -> None:
    efficiency = read_csv(partial_report.parent / "tables" / "efficiency.csv")
    assert efficiency["teacher (ANN)"]["MACs mean"] == "not logged"  # the written runs log no teacher_macs
    assert float(efficiency["teacher (ANN)"]["params mean"]) == 50000.0


def test_a_final_stage_at_the_reference_t_only_reads_t_off_the_curve(
    written_store: str, tmp_path: Path, read_csv
) -> None:
    report = build_report(written_store, "reference-only", tmp_path / "report")
    assert "## Missing" not in report.read_text()  # no T is missing: the sweep trained only the reference T
    steps = read_csv(report.parent / "tables" / "accuracy_vs_time_steps.csv")
    for t in TIME_STEPS:
        metric = "test_accuracy" if t == REFERENCE_T else f"timestep/{t}"  # trained at the reference T itself
        curve = list(_metric(written_store, "reference-only", "kd", REFERENCE_T, metric).values())
        assert float(steps["kd"][f"T={t} mean"]) == pytest.approx(statistics.fmean(curve), abs=1e-12)
        assert steps["kd"][f"T={t} n"] == str(len(SEEDS))
    text = report.read_text()
    assert f"Read off the final runs at the reference T = {REFERENCE_T}" in text and "kd at T=1" in text
    noise = read_csv(report.parent / "tables" / "accuracy_vs_noise.csv")
    assert noise["teacher (ANN)"]["clean n"] == "1"  # one fixed-seed teacher, not one per student seed


# Conversion's final runs at the reference T, per seed: (its network's test accuracy, its own ANN's).
COLLAPSED = {1: (0.72, 0.76), 2: (0.73, 0.78), 3: (0.80, 0.97)}  # seed 3: 17 points below, past the 10
TWO_COLLAPSED = {1: (0.60, 0.75), 2: (0.73, 0.78), 3: (0.80, 0.97)}  # seeds 1 and 3
WITHIN = {1: (0.72, 0.76), 2: (0.73, 0.829), 3: (0.74, 0.84)}  # 4, 9.9 and exactly 10 points: none more than 10


def _older_conversion_tag() -> str:
    """Conversion's `harness.capabilities` as a store written before `collapse_points` existed."""
    raw = json.loads(ConversionMethod.capabilities.to_tag())
    for row in raw["report_rows"]:
        del row["collapse_points"]
    return json.dumps(raw, sort_keys=True)


@pytest.fixture(scope="module")
def collapse_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Experiments `collapsed`, `two-collapsed`, `within` (conversion's runs as above) and `older`
    (`collapsed`'s metrics under a capabilities tag without `collapse_points`), final runs at the reference T."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('collapse_store') / 'mlflow.db'}"
    for experiment, accuracies, tags in (
        ("collapsed", COLLAPSED, {}),
        ("two-collapsed", TWO_COLLAPSED, {}),
        ("within", WITHIN, {}),
        ("older", COLLAPSED, {"conversion": _older_conversion_tag()}),
    ):
        metrics = {seed: {"test_accuracy": snn, "ann_test_accuracy": ann} for seed, (snn, ann) in accuracies.items()}
        final = {"final_metrics": {"conversion": metrics}, "capabilities_tags": tags}
        write_store(uri, experiment, with_conversion_finals=True, reference_only=True, **final)
    return uri


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


NOTE = (
    "`conversion †`: seed 3's network is 17.0 points below its own ANN at T = 2 (0.800 against 0.970), more "
    "than the 10-point collapse threshold;"
)


def test_collapses_are_the_runs_more_than_the_declared_points_below_their_ann(collapse_store: str) -> None:
    found = collapses(load_experiment(collapse_store, "collapsed"))
    assert found == [Collapse("conversion", 3, 0.80, 0.97, "ANN", pytest.approx(17.0), 10.0)]
    assert [c.seed for c in collapses(load_experiment(collapse_store, "two-collapsed"))] == [1, 3]
    assert collapses(load_experiment(collapse_store, "within")) == []  # 10 points exactly is not more than 10


def test_a_collapsed_seed_is_marked_in_both_tables_and_the_summary(
    collapse_store: str, tmp_path: Path, read_csv
) -> None:
    report = build_report(collapse_store, "collapsed", tmp_path / "report")
    tables = report.parent / "tables"
    noise = read_csv(tables / "accuracy_vs_noise.csv")
    assert set(noise) == {"teacher (ANN)", "kd", "direct", "conversion †", "conversion (ANN)"}
    marked = noise["conversion †"]  # never averaged in silently: the collapsed seed is in the mean, and said so
    assert float(marked["clean mean"]) == pytest.approx(statistics.fmean(snn for snn, _ in COLLAPSED.values()))
    assert marked["clean n"] == "3"
    noise_md = (tables / "accuracy_vs_noise.md").read_text()
    assert f"{NOTE} the row's mean and std include it (n = 3)." in noise_md.splitlines()
    assert "| conversion † | 3 |" in noise_md
    comparisons = {(r["comparison"], r["measure"]) for r in _csv_rows(tables / "significance.csv")}
    assert ("kd vs conversion †", "clean") in comparisons and ("kd vs conversion †", "salt_pepper 0.05") in comparisons
    assert ("kd vs direct", "clean") in comparisons and not any(c == "kd vs conversion" for c, _ in comparisons)
    significance_md = (tables / "significance.md").read_text()
    assert f"{NOTE} every comparison with conversion includes that seed (n = 3 seeds)." in significance_md
    text = report.read_text()
    summary = text.split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()
    assert len(summary) == 4 and summary[0].startswith("- Most accurate at T = 2")
    assert summary[1] == (
        "- Collapse: conversion's network fell more than 10 points below its own ANN at T = 2 on seed 3 "
        "(0.800 against 0.970); its means and the comparisons with it include that seed."
    )


def test_several_collapsed_seeds_are_each_named(collapse_store: str) -> None:
    exp = load_experiment(collapse_store, "two-collapsed")
    notes = noise_table(exp).notes
    assert (
        "`conversion †`: seed 1's network is 15.0 points below its own ANN at T = 2 (0.600 against 0.750) and "
        "seed 3's network is 17.0 points below its own ANN at T = 2 (0.800 against 0.970), more than the 10-point "
        "collapse threshold; the row's mean and std include them (n = 3)."
    ) in notes
    assert summary_lines(exp)[1].endswith(
        "on seeds 1 (0.600 against 0.750) and 3 (0.800 against 0.970); its means and the comparisons with it "
        "include those seeds."
    )


@pytest.mark.parametrize("experiment", ["within", "older"])
def test_no_collapse_no_mark_no_note_no_summary_line(collapse_store: str, experiment: str) -> None:
    """Every gap within 10 points (`within`), or a store whose tag predates `collapse_points` (`older`,
    with seed 3 17 points below its ANN): the plain labels, no note, the summary's three lines."""
    exp = load_experiment(collapse_store, experiment)
    if experiment == "older":
        assert exp.capabilities("conversion").report_rows[0].collapse_points is None
    noise = noise_table(exp)
    assert [label for label, _ in noise.rows] == ["teacher (ANN)", "kd", "direct", "conversion", "conversion (ANN)"]
    significance = significance_table(exp)
    assert {label for label, _ in significance.rows} == {"kd vs direct", "kd vs conversion", "direct vs conversion"}
    for table in (noise, significance):
        assert "†" not in to_markdown(table) and not any("collapse" in note for note in table.notes)
    lines = summary_lines(exp)
    assert len(lines) == 3 and not any(line.startswith("Collapse") for line in lines)
