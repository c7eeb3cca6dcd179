"""The significance table: every pair of methods compared at the reference T, clean and under
every noise and attack, with intervals that count the test set and Holm-corrected verdicts.

A pair's difference on one measure comes from `reports.stats.compare`: where both methods' final
runs logged their per-image test predictions, the interval counts the seeds and the test images
(a crossed seeds x images variance); otherwise the seeds alone. The p-values of the whole table
are one family for Holm's correction, and each verdict reads the corrected one. A comparison
with a method whose final run collapsed (`reports.collapse.collapses`) is marked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness import contract
from harness.contract import metric_column, parse_noise_metric
from harness.predictions import correct
from reports.collapse import collapse_notes, collapses, marked
from reports.loading import ExperimentRuns
from reports.render import DASH, Cell, Column, Stat, Table
from reports.stats import Difference, compare, holm_adjusted
from reports.tables import SEED, measure_label, noise_metrics, per_seed


@dataclass(frozen=True)
class Comparison:
    """`first` minus `second` on one measure at the reference T, over their seeds.

    Attributes:
        first, second: The two methods, in the sweep's order (or the `--reference` method first).
        metric: The measure (`test_accuracy`, `noise/gaussian/0.1`, `attack/pgd/0.03`).
        a, b: Each method's value per seed.
        result: The difference with its interval, raw and Holm-adjusted p-values.
    """

    first: str
    second: str
    metric: str
    a: dict[int, float]
    b: dict[int, float]
    result: Difference


def attack_metrics(exp: ExperimentRuns) -> list[str]:
    """Every `attack/<name>/<eps>` metric of the final runs, by attack name, then eps."""
    prefix = metric_column(contract.ATTACK)
    names = [column.removeprefix("metrics.") for column in exp.finals.columns if column.startswith(prefix)]
    return sorted(names, key=parse_noise_metric)


def compared_metrics(exp: ExperimentRuns) -> list[str]:
    """The measures of the table: clean accuracy, every noise column, every attack column."""
    return [contract.TEST_ACCURACY, *noise_metrics(exp), *attack_metrics(exp)]


def method_pairs(exp: ExperimentRuns, reference: str | None = None) -> list[tuple[str, str]]:
    """Every pair of methods in the sweep's order (`kd`-`tkd`, `kd`-`direct`, ..., `direct`-
    `conversion`); with `reference`, that method against each other one instead."""
    methods = exp.methods
    if reference is not None:
        return [(reference, other) for other in methods if other != reference]
    return [(first, second) for i, first in enumerate(methods) for second in methods[i + 1 :]]


def per_seed_samples(exp: ExperimentRuns, runs: pd.DataFrame, metric: str) -> dict[int, np.ndarray] | None:
    """Per seed, each test image right (1) or wrong (0) under `metric` (NaN: not evaluated),
    averaged over the seed's runs; None when a run has no predictions of it."""
    by_seed: dict[int, list[np.ndarray]] = {}
    for _, run in runs.iterrows():
        if pd.isna(run.get(SEED)) or pd.isna(run.get(metric_column(metric))):
            continue
        predictions = exp.predictions(str(run["run_id"]))
        right = None if predictions is None else correct(predictions, metric)
        if right is None:
            return None
        by_seed.setdefault(int(run[SEED]), []).append(right)
    shapes = {array.shape for arrays in by_seed.values() for array in arrays}
    if not by_seed or len(shapes) != 1:  # another test split somewhere: the images do not pair
        return None
    return {seed: np.mean(np.vstack(arrays), axis=0) for seed, arrays in by_seed.items()}


def comparisons(exp: ExperimentRuns, reference: str | None = None) -> list[Comparison]:
    """Every pair of `method_pairs`, clean and under every noise and attack, at the reference T,
    with Holm's correction over all of them (what the significance table and the summary state)."""
    ref_t = exp.settings.reference_time_steps
    metrics = compared_metrics(exp)
    runs = {method: exp.finals_at(method, ref_t) for method in exp.methods}
    # Each method's values and per-image tables once per measure, not once per pair it is in.
    values = {(m, metric): per_seed(runs[m], metric) for m in exp.methods for metric in metrics}
    samples = {key: per_seed_samples(exp, runs[key[0]], key[1]) for key, logged in values.items() if logged}
    found = []
    for first, second in method_pairs(exp, reference):
        for metric in metrics:
            a, b = values[first, metric], values[second, metric]
            if not (a and b):
                continue
            result = compare(a, b, samples[first, metric], samples[second, metric])
            found.append(Comparison(first, second, metric, a, b, result))
    adjusted = holm_adjusted([c.result.p_value for c in found])
    return [replace(c, result=replace(c.result, p_holm=p)) for c, p in zip(found, adjusted, strict=True)]


def significance_table(exp: ExperimentRuns, reference: str | None = None) -> Table:
    """Each pair's difference at the reference T, clean and under each noise and attack, with its
    interval, raw and Holm-corrected p-values and a verdict in words."""
    ref_t = exp.settings.reference_time_steps
    found = collapses(exp)
    compared = comparisons(exp, reference)
    rows = [(f"{marked(c.first, found)} vs {marked(c.second, found)}", _cells(c)) for c in compared]
    notes = [] if rows else [f"Nothing to compare: fewer than two methods have final runs at T = {ref_t}."]
    tests = sorted({c.result.test.split(" (")[0] for c in compared})
    if any(not t.startswith("seeds x") for t in tests):
        notes.append(
            "Where a test reads `paired t` or `Welch t`, a run lacks its per-image predictions (a run of an "
            "older harness): the interval counts the seeds only."
        )
    involved = list(dict.fromkeys(m for c in compared for m in (c.first, c.second)))
    notes += collapse_notes(exp, found, involved, "every comparison with {method} includes {seeds} (n = {n} seeds)")
    pairs = "Every pair of methods" if reference is None else f"{reference} against each other method"
    title = f"{pairs} at T = {ref_t}"
    return Table(
        key="significance",
        title=title,
        description=(
            f"Difference of mean test accuracy (first method minus second) at the reference T = {ref_t}, clean, "
            "under each noise and under each attack. The 95% interval counts both sources of chance: the "
            "training seed and the test images. Every method and seed tests on the same images, so each run's "
            "per-image right/wrong table pairs with every other's; the variance of the mean difference comes from "
            "a crossed seeds x images random-effects model (ANOVA mean squares: seed, image, residual) with "
            "Welch-Satterthwaite degrees of freedom (`reports/stats.py`). Where the seeds' differences are all "
            "equal (zero spread across seeds) or there is one seed, there is no interval and no verdict. The raw "
            f"p-values of all {len(compared)} comparisons form one family for Holm's step-down correction; the "
            "verdict reads the Holm-corrected p at the 5% level (the interval is each comparison's own, "
            "unadjusted)."
        ),
        row_header="comparison",
        columns=(
            Column("measure"),
            Column("first", None),
            Column("second", None),
            Column("difference"),
            Column("95% CI"),
            Column("p"),
            Column("Holm p"),
            Column("verdict", wrap=True),
            Column("test"),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        show_n=False,
    )


def _cells(comparison: Comparison) -> tuple[Cell, ...]:
    result = comparison.result
    interval = DASH if result.low is None else f"[{result.low:+.4f}, {result.high:+.4f}]"
    return (
        measure_label(comparison.metric),
        Stat.of(comparison.a.values()),
        Stat.of(comparison.b.values()),
        f"{result.difference:+.4f}",
        interval,
        DASH if result.p_value is None else f"{result.p_value:.3g}",
        DASH if result.p_holm is None else f"{result.p_holm:.3g}",
        result.verdict(comparison.first, comparison.second),
        result.test,
    )
