"""The corruption summary: per method, mean accuracy under every noise it ran and the mCE of
Hendrycks & Dietterich (ICLR 2019, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations") against a baseline method.

Rows are the methods at the reference T, from the final runs the noise table reads
(`ExperimentRuns.finals_at`); columns are the clean accuracy, the mean corruption accuracy, the
mCE and the relative mCE. With E = 1 - accuracy, c a noise type and s one of its levels (a
CIFAR-10-C severity under `eval.noise: cifar-c`, `harness.noise.presets`):

    CE_c          = sum_s E^f_{s,c} / sum_s E^base_{s,c}
    relative CE_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^base_{s,c} - E^base_clean)

and (relative) mCE is the mean of (relative) CE_c over the types, as a percentage. A method's cell
is the mean ± std over its seeds of each seed's value, each against the baseline's errors averaged
over the baseline's seeds; both are linear in the method's errors, so the mean equals the mCE of
the method's seed-mean errors, and the baseline's own mean is 100 % exactly.

The report reads only what the runs logged: every `noise/<type>/<level>` of the final runs counts
(image corruptions on image data, event corruptions on event data: a config never mixes them),
whichever preset or hand-written `eval.noise` produced it. Only the columns every method with
noise metrics logged are used (the notes name the others); a type whose baseline denominator is
not positive (the baseline does not degrade under it) gets no CE, and the notes say so.

The default baseline is the first method in the sweep's order that needs no teacher, trains at a T
(`Capabilities`) and has final runs at the reference T (`direct` in the shipped spaces);
`harness report --corruption-baseline METHOD` chooses another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness import contract
from harness.contract import parse_noise_metric
from harness.errors import HarnessInputError
from reports.loading import ExperimentRuns
from reports.render import DASH, Cell, Column, Stat, Table, fixed, words
from reports.tables import noise_label, noise_metrics, per_seed

KEY = "corruption_summary"
ZERO = 1e-12  # a baseline denominator at or below this is no degradation
FLAG = "--corruption-baseline"


def check_corruption_baseline(exp: ExperimentRuns, baseline: str | None) -> None:
    """Raises a one-line HarnessInputError naming `--corruption-baseline` where `baseline` is given
    and is not a method of the experiment."""
    if baseline is not None and baseline not in exp.methods:
        raise HarnessInputError(
            f"{FLAG}: no method {baseline!r} in experiment {exp.name!r} (it has: {', '.join(exp.methods)})"
        )


def default_baseline(exp: ExperimentRuns) -> str | None:
    """The first method in the sweep's order that needs no teacher, trains at a T and has final
    runs at the reference T; None when none does."""
    reference = exp.settings.reference_time_steps
    for method in exp.methods:
        capabilities = exp.capabilities(method)
        if capabilities.needs_teacher or not capabilities.trains_at_time_steps:
            continue
        if not exp.finals_at(method, reference).empty:
            return method
    return None


@dataclass(frozen=True)
class Measured:
    """One method's accuracies at the reference T, per seed.

    Attributes:
        method: The method.
        clean: Seed -> clean test accuracy.
        noise: Noise metric -> seed -> accuracy (the metrics it logged).
    """

    method: str
    clean: dict[int, float]
    noise: dict[str, dict[int, float]]

    def complete_seeds(self, columns: Iterable[str]) -> list[int]:
        """The seeds with the clean accuracy and every one of `columns`."""
        columns = list(columns)
        return sorted(s for s in self.clean if all(s in self.noise.get(m, {}) for m in columns))


@dataclass(frozen=True)
class Summary:
    """What the table shows, computed (`corruption_summary`).

    Attributes:
        columns: The noise metrics used (common to every method with noise metrics).
        types: Noise type -> its metrics among `columns`, in order.
        baseline: The baseline method, None when there is none to use.
        plain_types: The types with a CE (the baseline's summed error is positive).
        relative_types: The types with a relative CE (the baseline's summed error increase is positive).
        rows: Method -> (clean accuracy, mean corruption accuracy, mCE %, relative mCE %), each per seed.
    """

    columns: list[str]
    types: dict[str, list[str]]
    baseline: str | None
    plain_types: list[str]
    relative_types: list[str]
    rows: dict[str, tuple[dict[int, float], dict[int, float], dict[int, float], dict[int, float]]]


def measured(exp: ExperimentRuns) -> list[Measured]:
    """Each method with final runs at the reference T, in the sweep's order."""
    reference = exp.settings.reference_time_steps
    noise = noise_metrics(exp)
    found = []
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        if runs.empty:
            continue
        logged = {m: values for m in noise if (values := per_seed(runs, m))}
        found.append(Measured(method, per_seed(runs, contract.TEST_ACCURACY), logged))
    return found


def corruption_summary(
    exp: ExperimentRuns, baseline: str | None = None, methods: list[Measured] | None = None
) -> Summary:
    """The per-seed values of the table: over the noise columns every method with noise metrics
    logged, against `baseline` (default: `default_baseline`); `methods` is `measured(exp)`."""
    methods = measured(exp) if methods is None else methods
    with_noise = [m for m in methods if m.noise]
    columns = [c for c in noise_metrics(exp) if with_noise and all(c in m.noise for m in with_noise)]
    types: dict[str, list[str]] = {}
    for column in columns:
        types.setdefault(parse_noise_metric(column)[0], []).append(column)
    chosen = baseline if baseline is not None else default_baseline(exp)
    base = next((m for m in methods if m.method == chosen), None)
    base_seeds = base.complete_seeds(columns) if base is not None and columns else []
    plain_den: dict[str, float] = {}
    relative_den: dict[str, float] = {}
    if base is not None and base_seeds:
        clean_error = math.fsum(1 - base.clean[s] for s in base_seeds) / len(base_seeds)
        error = {c: math.fsum(1 - base.noise[c][s] for s in base_seeds) / len(base_seeds) for c in columns}
        plain_den = {kind: math.fsum(error[c] for c in cs) for kind, cs in types.items()}
        relative_den = {kind: math.fsum(error[c] - clean_error for c in cs) for kind, cs in types.items()}
    plain_types = [kind for kind, den in plain_den.items() if den > ZERO]
    relative_types = [kind for kind, den in relative_den.items() if den > ZERO]
    rows = {}
    for m in methods:
        accuracy, plain, relative = {}, {}, {}
        for seed in m.complete_seeds(columns) if columns else []:
            accuracy[seed] = math.fsum(m.noise[c][seed] for c in columns) / len(columns)
            if plain_types:
                ce = [math.fsum(1 - m.noise[c][seed] for c in types[k]) / plain_den[k] for k in plain_types]
                plain[seed] = 100 * math.fsum(ce) / len(ce)
            if relative_types:
                clean_error = 1 - m.clean[seed]
                rce = [
                    math.fsum((1 - m.noise[c][seed]) - clean_error for c in types[k]) / relative_den[k]
                    for k in relative_types
                ]
                relative[seed] = 100 * math.fsum(rce) / len(rce)
        rows[m.method] = (dict(m.clean), accuracy, plain, relative)
    used = chosen if base is not None and base_seeds else None
    return Summary(columns, types, used, plain_types, relative_types, rows)


def _columns_text(types: Mapping[str, list[str]]) -> str:
    return "; ".join(
        f"{kind} {', '.join(f'{parse_noise_metric(c)[1]:g}' for c in columns)}" for kind, columns in types.items()
    )


def corruption_table(exp: ExperimentRuns, baseline: str | None = None) -> Table | None:
    """Mean corruption accuracy and (relative) mCE per method at the reference T, against `baseline`
    (default: `default_baseline`); None when the final runs logged no noise metric.

    Raises:
        HarnessInputError: `baseline` is not a method of the experiment (naming `--corruption-baseline`).
    """
    check_corruption_baseline(exp, baseline)
    if not noise_metrics(exp):
        return None
    reference = exp.settings.reference_time_steps
    methods = measured(exp)
    summary = corruption_summary(exp, baseline, methods)
    chosen = baseline if baseline is not None else default_baseline(exp)
    notes = _notes(exp, methods, summary, chosen)
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    for method, values in summary.rows.items():
        rows.append((method, tuple(Stat.of(v.values()) for v in values)))
    base = summary.baseline
    how = (
        "the one `--corruption-baseline` names"
        if baseline is not None
        else "by default the first method in the sweep's order that needs no teacher, trains at a T and has final "
        "runs at the reference T; `harness report --corruption-baseline METHOD` chooses another"
    )
    over = (
        f"over the {len(summary.columns)} noise columns every method with noise metrics logged "
        f"({_columns_text(summary.types)})"
        if summary.columns
        else "over the noise columns every method logged (none here)"
    )
    seeds = ", ".join(map(str, exp.seeds()))
    return Table(
        key=KEY,
        title=f"Corruption robustness at T = {reference}: mean accuracy and mCE"
        + (f" against {base}" if base is not None else ""),
        description=(
            f"Per method at the reference T = {reference} (the final runs of the noise table): the clean test "
            f"accuracy; the mean corruption accuracy, each seed's mean accuracy {over}, then mean ± std over the "
            "seeds; and the corruption errors of Hendrycks & Dietterich (ICLR 2019) against the baseline "
            f"{f'`{base}`' if base is not None else '(none here)'} ({how}). With E = 1 − accuracy, c a noise type "
            "and s its levels (severities): `CE_c = Σ_s E^f_{s,c} / Σ_s E^base_{s,c}` and "
            "`relative CE_c = Σ_s (E^f_{s,c} − E^f_clean) / Σ_s (E^base_{s,c} − E^base_clean)`; mCE and "
            "relative mCE are their means over the types, in percent (100: the baseline's; lower is more robust). "
            "A method's cell is the "
            "mean ± std over its seeds of each seed's value against the baseline's errors averaged over its seeds, "
            "so the baseline's own mean is 100. These are over the types and levels this sweep ran, not the "
            "paper's 15 CIFAR-10-C corruptions: not comparable with published mCE values. "
            f"Dataset `{exp.settings.dataset}`; final-stage runs with seeds {seeds} (n: the number of seeds in a row)."
        ),
        row_header="method",
        columns=(
            Column("clean", "higher"),
            Column("mean corruption acc.", "higher"),
            Column("mCE (%)", "lower", fixed(1)),
            Column("relative mCE (%)", "lower", fixed(1)),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def _notes(exp: ExperimentRuns, methods: list[Measured], summary: Summary, chosen: str | None) -> list[str]:
    """What the table's cells leave out, and why (one sentence each)."""
    reference = exp.settings.reference_time_steps
    notes = []
    if not methods:
        return [f"Nothing to show: no method has final runs at T = {reference}."]
    without = [m.method for m in methods if not m.noise]
    if without:
        them = "its row shows" if len(without) == 1 else "their rows show"
        notes.append(f"{words([f'`{m}`' for m in without])} logged no noise metric: {them} clean accuracy only.")
    with_noise = [m for m in methods if m.noise]
    left_out = [c for c in noise_metrics(exp) if c not in summary.columns and any(c in m.noise for m in with_noise)]
    if left_out:
        parts = [
            f"{noise_label(c)} (not logged by {words([f'`{m.method}`' for m in with_noise if c not in m.noise])})"
            for c in left_out
        ]
        notes.append(f"Left out, not logged by every method with noise metrics: {'; '.join(parts)}.")
    if with_noise and not summary.columns:
        notes.append("No noise column is common to every method with noise metrics: nothing to summarise.")
    for m in methods:
        if not m.noise or not summary.columns:
            continue
        partial = sorted(set(m.clean) - set(m.complete_seeds(summary.columns)))
        if partial:
            seeds = words([str(s) for s in partial])
            one = len(partial) == 1
            notes.append(
                f"`{m.method}`: seed{'' if one else 's'} {seeds} lack{'s' if one else ''} some of the columns used; "
                f"the cells other than clean leave {'it' if one else 'them'} out."
            )
    if not summary.columns:
        return notes
    if chosen is None:
        notes.append(
            "No mCE: no method needs no teacher, trains at a T and has final runs at "
            f"T = {reference} (the default baseline); choose one with `harness report {FLAG} METHOD`."
        )
    elif summary.baseline is None:
        why = "no final runs" if not any(m.method == chosen for m in methods) else "no seed with every column used"
        notes.append(f"No mCE: the baseline `{chosen}` has {why} at T = {reference}.")
    else:
        for kinds, what, which in (
            ([k for k in summary.types if k not in summary.plain_types], "makes no error at any level", "CE"),
            (
                [k for k in summary.types if k not in summary.relative_types],
                "does not degrade (its summed error increase over the levels is not above 0)",
                "relative CE",
            ),
        ):
            if not kinds:
                continue
            rest = (
                f"the {'relative ' if which != 'CE' else ''}mCE is over the other types"
                if len(kinds) < len(summary.types)
                else f"no {'relative ' if which != 'CE' else ''}mCE ({DASH})"
            )
            notes.append(f"The baseline `{summary.baseline}` {what} under {words(kinds)}: no {which} there; {rest}.")
    return notes
