"""A Pareto sweep's report: the front table, the hypervolume by hand, the figure and the summary's words.

The store is written run by run with known values (`harness.contract` names), as a Pareto sweep
logs them: per method a reference configuration (final runs over three seeds at the T the search
chose, plus a retrain at another T of the curve that the front must not use) and other front
points (`harness.role=front`, two seeds each, at their own T).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

from baselines.conversion import ConversionMethod
from harness import contract
from harness.contract import Capabilities, Role, Tag
from harness.pareto import hypervolume
from harness.tracking import TrackedRun
from reports.build import build_report
from reports.front import measure_of, pareto_front
from reports.loading import load_experiment

OBJECTIVES = {"val_accuracy": "max", "energy_uj": "min"}
REFERENCE_T = 2
CAPABILITIES = {
    "kd": Capabilities(needs_teacher=True),
    "direct": Capabilities(),
    "conversion": ConversionMethod.capabilities,
}
SEARCHED = {
    "kd": "student.width,snn.time_steps",
    "direct": "student.width,snn.time_steps",
    "conversion": "student.width",
}
# method -> configurations: (search index, T (None: conversion, at the reference T), width,
# {seed: (test accuracy, energy µJ)}); the first is the reference (tagged best), the rest front points.
CONFIGURATIONS = {
    "kd": [
        (0, 2, 8, {1: (0.80, 0.050), 2: (0.82, 0.052), 3: (0.84, 0.054)}),
        (1, 2, 4, {1: (0.70, 0.020), 2: (0.72, 0.022)}),
        (2, 4, 8, {1: (0.86, 0.100), 2: (0.88, 0.104)}),
    ],
    "direct": [
        (0, 4, 8, {1: (0.78, 0.090), 2: (0.80, 0.092), 3: (0.82, 0.094)}),
        (1, 1, 4, {1: (0.50, 0.010), 2: (0.54, 0.012)}),
    ],
    "conversion": [
        (0, None, 8, {1: (0.90, 0.150), 2: (0.92, 0.160), 3: (0.94, 0.170)}),
        (1, None, 4, {1: (0.60, 0.030), 2: (0.62, 0.032)}),
        (3, None, 8, {1: (0.90, 0.150)}),  # the reference's configuration again: listed once
    ],
}
CURVE_T = {"kd": 1, "direct": 2}  # the reference configuration retrained at another T of the curve


def _params(method: str, seed: int, steps: int | None, width: int) -> dict[str, str]:
    params = {
        "method": method,
        "seed": str(seed),
        "dataset.name": "digits",
        "eval.reference_time_steps": str(REFERENCE_T),
        "eval.time_steps": json.dumps([1, 2, 4]),
        "eval.noise": "{}",
        "student.depth": "8",
        "student.width": str(width),
    }
    return params if steps is None else params | {"snn.time_steps": str(steps)}


def _metrics(accuracy: float, energy: float) -> dict[str, float]:
    return {
        contract.TEST_ACCURACY: accuracy,
        contract.ENERGY_UJ: energy,
        contract.SYNOPS: energy * 1e6,
        contract.ACS: energy * 8e5,
        contract.MACS: 500.0,
        contract.FIRING_RATE: 0.1,
        contract.val_cost_metric(contract.ENERGY_UJ): energy,
        contract.VAL_ACCURACY: accuracy - 0.01,
        contract.timestep_metric(1): accuracy - 0.1,
        contract.timestep_metric(2): accuracy,
        contract.timestep_metric(4): accuracy,
    }


def write_pareto_store(
    uri: str, experiment: str, objectives: dict[str, str] | None = OBJECTIVES, weak_direct: bool = False
) -> None:
    """A Pareto sweep of kd, direct and conversion (`CONFIGURATIONS`). `weak_direct`: direct's values
    made worse everywhere (dominated on the combined front), its front point run with seed 4 only
    (no seed common to its configurations). `objectives=None`: the parent lacks the tag."""
    tags = {Tag.ROLE: Role.SWEEP, Tag.TRIAL_ID: "sweep", Tag.METHODS: ",".join(CONFIGURATIONS)}
    if objectives is not None:
        tags[Tag.OBJECTIVES] = json.dumps(objectives)
    parent = TrackedRun(uri, experiment, "sweep", tags)

    def run(method: str, role: Role, trial_id: str, extra: dict[str, str] | None = None) -> TrackedRun:
        capabilities = CAPABILITIES[method]
        teacher = "teacher-1" if capabilities.needs_teacher else None
        run_tags = contract.run_tags(role, method, trial_id, capabilities, parent_run_id=parent.run_id, teacher=teacher)
        return TrackedRun(uri, experiment, trial_id, run_tags | (extra or {}))

    for method, configurations in CONFIGURATIONS.items():
        for number, (index, steps, width, seeds) in enumerate(configurations):
            seeds = (
                {s: (a - 0.5, e + 0.05) for s, (a, e) in seeds.items()} if weak_direct and method == "direct" else seeds
            )
            trial = run(method, Role.TRIAL, f"{experiment}/trial/{method}/{index}", {Tag.SEARCHED: SEARCHED[method]})
            trial.log_params(_params(method, 0, steps, width))
            trial.log_metrics(_metrics(*seeds[1]))
            if number == 0:
                trial.set_tags({Tag.BEST: contract.TRUE})
            trial.finish("FINISHED")
            if number == 0:
                for seed, values in seeds.items():
                    final = run(method, Role.FINAL, f"{experiment}/final/{method}/s{seed}-T{steps}")
                    final.log_params(_params(method, seed, steps, width))
                    final.log_metrics(_metrics(*values))
                    final.finish("FINISHED")
                    if method in CURVE_T:  # the same configuration at another T: not on the front
                        curve = run(method, Role.FINAL, f"{experiment}/final/{method}/s{seed}-T{CURVE_T[method]}")
                        curve.log_params(_params(method, seed, CURVE_T[method], width))
                        curve.log_metrics(_metrics(0.1, 0.5))
                        curve.finish("FINISHED")
                continue
            if weak_direct and method == "direct":
                seeds = {4: seeds[1]}
            for seed, values in seeds.items():
                front = run(method, Role.FRONT, f"{experiment}/front/{method}/p{index}-s{seed}")
                front.set_tags({Tag.FRONT_POINT: str(index)})
                front.log_params(_params(method, seed, steps, width))
                front.log_metrics(_metrics(*values))
                front.finish("FINISHED")
    parent.finish("FINISHED")


@pytest.fixture(scope="module")
def pareto_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Experiments `pareto`, `weak` (`weak_direct`), `three` (four objectives, one without a test
    measure) and `single` (the same runs, no `harness.objectives`)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('pareto_store') / 'mlflow.db'}"
    write_pareto_store(uri, "pareto")
    write_pareto_store(uri, "weak", weak_direct=True)
    four = {"val_accuracy": "max", "energy_uj": "min", "snn.time_steps": "min", "train_loss": "min"}
    write_pareto_store(uri, "three", objectives=four)
    write_pareto_store(uri, "single", objectives=None)
    return uri


@pytest.fixture(scope="module")
def pareto_report(pareto_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(pareto_store, "pareto", tmp_path_factory.mktemp("pareto") / "report")


def _means(method: str, number: int) -> tuple[float, float]:
    seeds = CONFIGURATIONS[method][number][3]
    return statistics.fmean(a for a, _ in seeds.values()), statistics.fmean(e for _, e in seeds.values())


def test_the_objectives_and_configurations_come_from_the_runs(pareto_store: str) -> None:
    exp = load_experiment(pareto_store, "pareto")
    assert exp.objectives == OBJECTIVES
    assert load_experiment(pareto_store, "single").objectives is None
    assert load_experiment(pareto_store, "single").configurations("kd") == []
    kd = exp.configurations("kd")
    assert [(c.label, c.time_steps, c.seeds()) for c in kd] == [
        ("kd: reference (trial 0)", 2, [1, 2, 3]),
        ("kd: trial 1", 2, [1, 2]),
        ("kd: trial 2", 4, [1, 2]),
    ]
    assert set(kd[0].runs[contract.param_column("snn.time_steps")]) == {"2"}  # not the T=1 retrain
    direct = exp.configurations("direct")
    assert exp.search_time_steps("direct") == 4  # the best trial's T, not the reference T
    assert set(direct[0].runs[contract.param_column("snn.time_steps")]) == {"4"} and len(direct[0].runs) == 3
    conversion = exp.configurations("conversion")
    assert [(c.label, c.time_steps) for c in conversion] == [
        ("conversion: reference (trial 0)", REFERENCE_T),
        ("conversion: trial 1", REFERENCE_T),
    ]
    ((repeat, earlier),) = exp.repeated_configurations("conversion")
    assert (repeat.label, earlier.label) == ("conversion: trial 3", "conversion: reference (trial 0)")


def test_the_pareto_table_gives_each_configuration_its_means_and_front(pareto_report: Path, read_csv) -> None:
    table = read_csv(pareto_report.parent / "tables" / "pareto.csv")
    assert list(table) == [
        "kd: reference (trial 0)",
        "kd: trial 1",
        "kd: trial 2",
        "direct: reference (trial 0)",
        "direct: trial 1",
        "conversion: reference (trial 0)",
        "conversion: trial 1",
    ]
    header = next(iter(table.values()))
    assert "student.width" in header and "student.depth" not in header  # only the searched values that vary
    for (method, number), label in zip(
        [("kd", 0), ("kd", 1), ("kd", 2), ("direct", 0), ("direct", 1), ("conversion", 0), ("conversion", 1)],
        table,
        strict=True,
    ):
        row, (_, steps, width, seeds) = table[label], CONFIGURATIONS[method][number]
        accuracies, energies = [a for a, _ in seeds.values()], [e for _, e in seeds.values()]
        assert row["T"] == str(steps or REFERENCE_T) and row["student.width"] == str(width)
        assert float(row["test accuracy mean"]) == pytest.approx(statistics.fmean(accuracies), abs=1e-12)
        assert float(row["test accuracy std"]) == pytest.approx(statistics.stdev(accuracies), abs=1e-12)
        assert int(row["test accuracy n"]) == len(seeds)
        assert float(row["energy (µJ) mean"]) == pytest.approx(statistics.fmean(energies), abs=1e-12)
        assert float(row["SynOps mean"]) == pytest.approx(statistics.fmean(energies) * 1e6, rel=1e-9)
    # Within each method every configuration trades accuracy for energy; across methods, direct's
    # reference (0.80 at 0.092 µJ) is dominated by kd's (0.82 at 0.052) and conversion's
    # smaller network (0.61 at 0.031) by kd's (0.71 at 0.021).
    assert {label: row["front"] for label, row in table.items()} == dict.fromkeys(table, "yes")
    assert [label for label, row in table.items() if row["all methods"] == "yes"] == [
        "kd: reference (trial 0)",
        "kd: trial 1",
        "kd: trial 2",
        "direct: trial 1",
        "conversion: reference (trial 0)",
    ]
    markdown = (pareto_report.parent / "tables" / "pareto.md").read_text()
    assert (
        "| kd: reference (trial 0) | 3 | 4 |" not in markdown and "| kd: reference (trial 0) | 3 | 2 | 8 |" in markdown
    )
    assert "`conversion: trial 3` retrained the same configuration as `conversion: reference (trial 0)`" in markdown


def _staircase(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (accuracy, energy) points, accuracy up, energy down, bounded by `reference`:
    the sum of the rectangles between consecutive energies, each as high as the best accuracy so far."""
    ordered = sorted(points, key=lambda p: p[1])
    area, best = 0.0, reference[0]
    for (accuracy, energy), nxt in zip(ordered, [*(p[1] for p in ordered[1:]), reference[1]], strict=True):
        best = max(best, accuracy)
        area += (nxt - energy) * (best - reference[0])
    return area


def test_the_hypervolume_is_the_area_up_to_the_stated_reference(pareto_store: str, pareto_report: Path) -> None:
    # Every configuration's means: the worst accuracy 0.52 (direct's small one), the range 0.92 - 0.52;
    # the worst energy 0.16 µJ (conversion's reference), the range 0.16 - 0.011.
    reference = (0.52 - 0.1 * (0.92 - 0.52), 0.16 + 0.1 * (0.16 - 0.011))
    found = pareto_front(load_experiment(pareto_store, "pareto"))
    assert found is not None and found.reference is not None
    assert (found.reference["test_accuracy"], found.reference["energy_uj"]) == pytest.approx(reference)
    kd = next(h for h in found.hypervolumes if h.method == "kd")
    means = [_means("kd", n) for n in range(3)]
    assert kd.of_means == pytest.approx(_staircase(means, reference))
    assert kd.of_means == pytest.approx(
        (0.052 - 0.021) * (0.71 - reference[0])
        + (0.102 - 0.052) * (0.82 - reference[0])
        + (reference[1] - 0.102) * (0.87 - reference[0])
    )
    per_seed = {s: _staircase([c[3][s] for c in CONFIGURATIONS["kd"]], reference) for s in (1, 2)}
    assert kd.per_seed == pytest.approx(per_seed)  # seed 3: only the reference configuration ran it
    half = stats.t.ppf(0.975, 1) * statistics.stdev(per_seed.values()) / 2**0.5
    assert kd.interval is not None and kd.interval.test == "t (n=2)"
    assert (kd.interval.low, kd.interval.high) == pytest.approx(
        (statistics.fmean(per_seed.values()) - half, statistics.fmean(per_seed.values()) + half)
    )
    points = [{"test_accuracy": a, "energy_uj": e} for a, e in means]
    bound = {"test_accuracy": reference[0], "energy_uj": reference[1]}
    assert kd.of_means == pytest.approx(hypervolume(points, {"test_accuracy": "max", "energy_uj": "min"}, bound))
    table = (pareto_report.parent / "tables" / "hypervolume.md").read_text()
    stated = f"test accuracy {reference[0]:.4f}, energy {reference[1]:.4g} µJ"
    assert f"Reference point: {stated}." in table
    latex = (pareto_report.parent / "tables" / "hypervolume.tex").read_text()
    assert "\\caption{Hypervolume per method (reference point: " + stated.replace("µ", "$\\mu$") + ")}" in latex
    row = next(line for line in table.splitlines() if line.startswith("| kd |"))
    assert row.rstrip(" |").split(" | ")[5:7] == ["1, 2", "t (n=2)"]


def test_without_a_common_seed_the_reference_seeds_are_used(pareto_store: str, tmp_path: Path) -> None:
    found = pareto_front(load_experiment(pareto_store, "weak"))
    assert found is not None
    direct = next(h for h in found.hypervolumes if h.method == "direct")
    assert not direct.common_seeds and sorted(direct.per_seed) == [1, 2, 3]
    report = build_report(pareto_store, "weak", tmp_path / "report")
    table = (report.parent / "tables" / "hypervolume.md").read_text()
    assert "direct: no seed is common to all its configurations" in table


def test_the_figure_is_drawn_and_follows_the_pareto_table(pareto_report: Path) -> None:
    import matplotlib.image

    for suffix in ("png", "pdf"):
        assert (pareto_report.parent / "figures" / f"pareto_front.{suffix}").stat().st_size > 0
    pixels = matplotlib.image.imread(pareto_report.parent / "figures" / "pareto_front.png")[..., :3]
    assert pixels.shape[0] > 200 and pixels.std() > 0.05
    assert ((pixels.max(axis=2) - pixels.min(axis=2)) > 0.2).mean() > 0.002  # the methods' colours
    index = pareto_report.read_text()
    pareto, figure, volume = (
        index.index(s) for s in ("(tables/pareto.md)", "(figures/pareto_front.png)", "(tables/hypervolume.md)")
    )
    assert index.index("(tables/efficiency.md)") < pareto < figure < volume < index.index("(tables/search_summary.md)")
    assert "**The Pareto search.**" in index and "measured them on the validation split" in index


def test_the_summary_says_which_method_dominates_where(pareto_report: Path, pareto_store: str, tmp_path: Path) -> None:
    summary = pareto_report.read_text().split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()
    assert len(summary) == 5  # the two front lines, then the three lines
    assert summary[0] == (
        "- On the accuracy × energy front (test set, means over seeds): direct dominates below 0.021 µJ; "
        "kd from 0.021 µJ to below 0.16 µJ; conversion from 0.16 µJ on and is the most accurate (0.920 at 0.16 µJ)."
    )
    assert summary[1].startswith("- Hypervolume (test accuracy × energy, configuration means, against the reference")
    assert "**kd**" in summary[1] or "**conversion**" in summary[1]
    weak = build_report(pareto_store, "weak", tmp_path / "weak").read_text()
    first = weak.split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()[0]
    assert first.startswith("- On the accuracy × energy front") and first.endswith("; direct is dominated everywhere.")
    assert "direct dominates" not in first


def test_objectives_without_a_test_measure_are_left_out(pareto_store: str, tmp_path: Path) -> None:
    assert measure_of("val_accuracy") == "test_accuracy" and measure_of("energy_uj") == "energy_uj"
    assert measure_of("train_loss") is None and measure_of("student.depth") == "student.depth"
    found = pareto_front(load_experiment(pareto_store, "three"))
    assert found is not None and found.skipped == ("train_loss",)
    assert list(found.objectives) == ["test_accuracy", "energy_uj", "snn.time_steps"]
    assert set(found.reference) == set(found.objectives)  # the hypervolume is over all three
    report = build_report(pareto_store, "three", tmp_path / "report")
    assert "`train_loss` has no test-set measure" in (report.parent / "tables" / "pareto.md").read_text()


def test_a_single_objective_sweep_has_no_pareto_section(pareto_store: str, written_store: str, tmp_path: Path) -> None:
    for uri, experiment in ((pareto_store, "single"), (written_store, "complete")):
        report = build_report(uri, experiment, tmp_path / experiment)
        text = report.read_text()
        assert "Pareto" not in text and "Hypervolume" not in text and "front" not in text.split("## 1.")[0]
        assert not list(report.parent.glob("tables/pareto.*")) and not list(report.parent.glob("tables/hypervolume.*"))
        assert not (report.parent / "figures" / "pareto_front.png").exists()
        assert len(text.split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()) == 3
