"""The three lines `report.md` opens with: the most accurate method, the most robust, and which
differences are significant.

Rules (also printed in the report): accuracy is the clean test accuracy at the reference T,
mean over the final-stage seeds; robustness is the mean, over every noise column, of a method's
mean accuracy under that noise; a difference is significant when its Holm-corrected p-value over
the significance table (`reports.significance.comparisons`) is below 0.05, never without an
interval (one seed, or zero spread across seeds). Only the spiking methods are ranked; the ANN teacher is
named beside them. Where a final run collapsed (`reports.collapse.collapses`: its network more than
a declared row's `collapse_points` below that row on the same run, conversion's SNN against its
own ANN), a line after the accuracy line names the method, each such seed and both accuracies,
and says that its means and comparisons include that seed; no line where none did.

A Pareto sweep (`search.objectives`) opens the summary with two more lines (`reports.front`):
which method dominates which range of the accuracy × energy front, and the methods ranked by
hypervolume against the stated reference point.
"""

from __future__ import annotations

import math

from harness import contract
from reports import front as pareto
from reports.collapse import collapse_groups, collapses
from reports.loading import ExperimentRuns
from reports.render import words
from reports.significance import Comparison, comparisons
from reports.tables import (
    TEACHER,
    measure_label,
    metric_stat,
    noise_metrics,
    teacher_runs,
)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _ranking(scores: dict[str, float], digits: int = 4) -> str:
    ordered = sorted(scores.items(), key=lambda item: -item[1])
    first, *rest = ordered
    tail = "; then " + ", ".join(f"{name} {value:.{digits}f}" for name, value in rest) if rest else ""
    return f"**{first[0]}** ({first[1]:.{digits}f}){tail}"


def accuracy_line(exp: ExperimentRuns) -> str:
    """Line 1: the methods ranked by clean test accuracy at the reference T."""
    ref_t = exp.settings.reference_time_steps
    stats = {m: metric_stat(exp.finals_at(m, ref_t), contract.TEST_ACCURACY) for m in exp.methods}
    scores = {m: s.mean for m, s in stats.items() if s is not None}
    if not scores:
        return f"No method has finished final runs at T = {ref_t}."
    seeds = max(s.n for s in stats.values() if s is not None)
    teacher = metric_stat(teacher_runs(exp), contract.TEACHER_TEST_ACCURACY)
    beside = f" The {TEACHER} reaches {teacher.mean:.4f}." if teacher is not None else ""
    return f"Most accurate at T = {ref_t} (clean test accuracy, mean over {seeds} seeds): {_ranking(scores)}.{beside}"


def collapse_line(exp: ExperimentRuns) -> str | None:
    """After line 1: the final runs whose network collapsed below a declared row of the same run, in
    words, one sentence per method and row; None when no run collapsed."""
    groups = collapse_groups(collapses(exp))
    if not groups:
        return None
    ref_t = exp.settings.reference_time_steps
    sentences = []
    for (method, label, threshold), group in groups.items():
        seeds = words([f"{c.seed} ({c.accuracy:.3f} against {c.reference_accuracy:.3f})" for c in group])
        one = len(group) == 1
        sentences.append(
            f"{method}'s network fell more than {threshold:g} points below its own {label} at T = {ref_t} on "
            f"{'seed' if one else 'seeds'} {seeds}; its means and the comparisons with it include "
            f"{'that seed' if one else 'those seeds'}."
        )
    return "Collapse: " + " ".join(sentences)


def robustness_line(exp: ExperimentRuns) -> str:
    """Line 2: the methods ranked by their mean accuracy over every noise column."""
    ref_t = exp.settings.reference_time_steps
    noise = noise_metrics(exp)
    if not noise:
        return "Robustness: no noise was evaluated (`eval.noise` is empty)."
    scores = {}
    for method in exp.methods:
        cells = [metric_stat(exp.finals_at(method, ref_t), metric) for metric in noise]
        if cells and all(cell is not None for cell in cells):
            scores[method] = math.fsum(cell.mean for cell in cells) / len(cells)
    if not scores:
        return "Robustness: no method has accuracies under every noise."
    return f"Most robust (mean accuracy over the {len(noise)} noise columns): {_ranking(scores)}."


CLEAN_PAIRS_LISTED = 3  # more clean comparisons than this: name the significant ones, count the rest
NOISY_LISTED = 6  # significant differences under noise and attack named in the line, the smallest p first


def _clean_verdict(c: Comparison) -> str:
    r = c.result
    head = f"{c.first} − {c.second} {_points(r.difference)} points"
    if r.low is None:
        return f"{head} ({r.reason or 'no interval'}: no verdict)"
    interval = f"95% CI [{_points(r.low)}, {_points(r.high)}], ± {100 * r.half_width:.2f}, {r.p_text()}"
    return f"{head} ({interval}): {'significant' if r.significant else 'not significant'}"


def significance_line(exp: ExperimentRuns, reference: str | None = None) -> str:
    """Line 3: the clean differences in words (each, or the significant ones of many pairs), and
    how many noisy and attacked ones are significant, all by Holm-corrected p."""
    found = comparisons(exp, reference)
    if not found:
        return "Significance: nothing to compare (fewer than two methods have final runs at the reference T)."
    clean = [c for c in found if c.metric == contract.TEST_ACCURACY]
    others = [c for c in found if c.metric != contract.TEST_ACCURACY]
    family = f"Holm-corrected over the table's {len(found)} comparisons"
    if len(clean) <= CLEAN_PAIRS_LISTED:
        line = f"Clean accuracy ({family}): " + "; ".join(_clean_verdict(c) for c in clean) + "."
    else:
        significant = [c for c in clean if c.result.significant]
        listed = "; ".join(_clean_verdict(c) for c in significant)
        line = (
            f"Clean accuracy ({family}): {len(significant)} of {len(clean)} pairs differ significantly"
            + (f": {listed}." if significant else ".")
        )
        no_verdict = [c for c in clean if c.result.low is None]
        if no_verdict:
            verb = "has" if len(no_verdict) == 1 else "have"
            line += f" {len(no_verdict)} {verb} no verdict ({no_verdict[0].result.reason})."
    tested = [c for c in others if c.result.low is not None]
    if tested:
        significant = [c for c in tested if c.result.significant]
        verb = "is" if len(significant) == 1 else "are"
        line += f" Under noise and attack, {len(significant)} of {len(tested)} differences {verb} significant"
        if significant:
            named = [_noisy_verdict(c) for c in sorted(significant, key=lambda c: c.result.p_verdict)]
            more = len(named) - NOISY_LISTED
            line += f" ({', '.join(named[:NOISY_LISTED])}{f' and {more} more' if more > 0 else ''})."
        else:
            line += "."
    elif others:
        line += " Under noise and attack: no intervals (one seed or zero spread)."
    return line


def _noisy_verdict(c: Comparison) -> str:
    higher, lower = (c.first, c.second) if c.result.difference > 0 else (c.second, c.first)
    return f"{higher} above {lower} under {measure_label(c.metric)}"


def front_lines(exp: ExperimentRuns) -> list[str]:
    """A Pareto sweep's lines: who dominates where on the front, and the hypervolumes (none for one objective)."""
    found = pareto.pareto_front(exp)
    if found is None:
        return []
    return [line for line in (pareto.front_words(found), pareto.hypervolume_words(found)) if line]


def summary_lines(exp: ExperimentRuns, reference: str | None = None) -> list[str]:
    """The lines of the summary: a Pareto sweep's front lines first, then the three lines, with the
    collapse line after the accuracy line where a run collapsed."""
    collapsed = [line] if (line := collapse_line(exp)) is not None else []
    return [
        *front_lines(exp),
        accuracy_line(exp),
        *collapsed,
        robustness_line(exp),
        significance_line(exp, reference),
    ]
