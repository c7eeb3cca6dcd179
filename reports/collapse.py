"""Collapsed final runs: a network that fell more than a declared report row's `collapse_points`
below that row on the same run (conversion's SNN against its own ANN at the reference T).

The noise, significance and attack tables mark such a method's rows (`conversion †`, `marked`)
and name each seed in a note (`collapse_notes`); the summary says so in a line. Its cells still
include the run, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import contract
from harness.contract import metric_column, param_column
from reports.loading import ExperimentRuns
from reports.render import words

COLLAPSE_MARK = "†"  # after the label of a method with a collapsed final run
SEED = param_column("seed")


@dataclass(frozen=True)
class Collapse:
    """A final run at the reference T whose network fell more than a declared report row's
    `collapse_points` below that row's clean accuracy on the same run (`ReportRow.collapse_points`).

    Attributes:
        method: The method.
        seed: The run's seed.
        accuracy: The run's own clean test accuracy (`test_accuracy`, a fraction).
        reference_accuracy: The row's clean accuracy on the same run (its `clean_metric`).
        label: The row's label (`ANN`).
        gap: `reference_accuracy - accuracy` in points (100 x fraction).
        threshold: The row's `collapse_points`.
    """

    method: str
    seed: int
    accuracy: float
    reference_accuracy: float
    label: str
    gap: float
    threshold: float


def collapses(exp: ExperimentRuns) -> list[Collapse]:
    """Every collapse among the final runs at the reference T, by method, report row and seed.

    For each method's report rows that set `collapse_points`, a run is a collapse where its
    `test_accuracy` is more than that many points below the row's `clean_metric` of the same run;
    runs lacking either value are skipped, and so are rows of older stores without the field.
    """
    reference = exp.settings.reference_time_steps
    own = metric_column(contract.TEST_ACCURACY)
    found = []
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        for row in exp.capabilities(method).report_rows:
            other = metric_column(row.clean_metric)
            if row.collapse_points is None or runs.empty or not {SEED, own, other} <= set(runs.columns):
                continue
            values = runs[[SEED, own, other]].dropna()
            for seed, accuracy, row_accuracy in sorted(values.itertuples(index=False), key=lambda v: int(v[0])):
                gap = round(100 * (float(row_accuracy) - float(accuracy)), 9)  # no float noise at the threshold
                if gap > row.collapse_points:
                    found.append(
                        Collapse(
                            method, int(seed), float(accuracy), float(row_accuracy), row.label, gap, row.collapse_points
                        )
                    )
    return found


def collapse_groups(found: list[Collapse]) -> dict[tuple[str, str, float], list[Collapse]]:
    """`found` by (method, row label, threshold), in their order: one note or sentence each."""
    groups: dict[tuple[str, str, float], list[Collapse]] = {}
    for collapse in found:
        groups.setdefault((collapse.method, collapse.label, collapse.threshold), []).append(collapse)
    return groups


def marked(method: str, found: list[Collapse]) -> str:
    """`conversion †` where `method` has a collapse in `found`, else the plain name."""
    return f"{method} {COLLAPSE_MARK}" if any(c.method == method for c in found) else method


def collapse_notes(exp: ExperimentRuns, found: list[Collapse], methods: list[str], included: str) -> list[str]:
    """One note per collapsed method of `methods` and report row: each seed with both accuracies
    and the gap; `included` ends it, saying what of the table includes them (its fields: `{method}`,
    `{them}`: it or them, `{seeds}`: that seed or those seeds, `{n}`: the method's runs)."""
    reference = exp.settings.reference_time_steps
    notes = []
    for (method, label, threshold), group in collapse_groups(found).items():
        if method not in methods:
            continue
        seeds = words(
            [
                f"seed {c.seed}'s network is {c.gap:.1f} points below its own {label} at T = {reference} "
                f"({c.accuracy:.3f} against {c.reference_accuracy:.3f})"
                for c in group
            ]
        )
        runs = exp.finals_at(method, reference)
        column = metric_column(contract.TEST_ACCURACY)
        n = int(runs[column].notna().sum()) if column in runs.columns else len(runs)
        one = len(group) == 1
        them, seeds_word = ("it", "that seed") if one else ("them", "those seeds")
        notes.append(
            f"`{marked(method, found)}`: {seeds}, more than the {threshold:g}-point collapse threshold; "
            f"{included.format(method=method, them=them, seeds=seeds_word, n=n)}."
        )
    return notes
