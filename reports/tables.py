"""The report's five tables, built from an experiment's MLflow runs, and two more for a Pareto sweep.

Cells are mean ± std over the final runs' seeds; which runs feed a cell is said in each
table's description (reference T, one run per seed). A Pareto sweep (`search.objectives`) adds
the table of its retrained front configurations and their hypervolume (`reports.front`).

A final run whose network fell more than a declared report row's `collapse_points` below that
row on the same run (conversion's SNN against its own ANN) is a collapse (`reports.collapse`): the noise
and significance tables mark the method's rows (`conversion †`) and name each such seed in a
note; its cells still include it, never silently.
"""

from __future__ import annotations

import math

import pandas as pd

from harness import contract
from harness.contract import Tag, metric_column, param_column, parse_noise_metric
from reports import front as pareto
from reports.collapse import collapse_notes, collapses, marked
from reports.loading import ExperimentRuns
from reports.render import DASH, Cell, Column, Stat, Table, fixed, significant

TEACHER = "teacher (ANN)"
NOT_LOGGED = "not logged"
SEED = param_column("seed")


def metric_stat(frame: pd.DataFrame, metric: str) -> Stat | None:
    """Mean ± std of `metrics.<metric>` over the runs of `frame` (None when none logged it)."""
    column = metric_column(metric)
    return Stat.of(frame[column].dropna()) if column in frame.columns else None


def per_seed(frame: pd.DataFrame, metric: str) -> dict[int, float]:
    """`metric` per seed (runs of the same seed averaged), for the runs that logged it."""
    column = metric_column(metric)
    if column not in frame.columns:
        return {}
    values = frame[[SEED, column]].dropna()
    return {int(seed): float(value) for seed, value in values.groupby(SEED)[column].mean().items()}


def noise_metrics(exp: ExperimentRuns) -> list[str]:
    """Every `noise/<type>/<level>` metric of the final runs, by the space's type order, then level."""
    prefix = metric_column(contract.NOISE)
    names = [c.removeprefix("metrics.") for c in exp.finals.columns if c.startswith(prefix)]
    order = list(exp.settings.noise)

    def key(name: str) -> tuple[int, str, float]:
        kind, level = parse_noise_metric(name)
        return (order.index(kind) if kind in order else len(order), kind, level)

    return sorted(names, key=key)


def noise_label(metric: str) -> str:
    """`noise/gaussian/0.1` -> `gaussian 0.1`."""
    kind, level = parse_noise_metric(metric)
    return f"{kind} {level:g}"


def renamed(metric: str, prefix: str) -> str:
    """The same noise measurement under another prefix: `noise/gaussian/0.1` -> `ann_noise/gaussian/0.1`."""
    return contract.noise_metric(*parse_noise_metric(metric), prefix)


def teacher_runs(exp: ExperimentRuns) -> pd.DataFrame:
    """The final runs at the reference T that logged their teacher, one per distinct teacher
    (the tag `harness.teacher`, the teacher's cache key)."""
    reference = exp.settings.reference_time_steps
    needing = [m for m in exp.methods if exp.capabilities(m).needs_teacher]
    if not needing:
        return exp.finals.iloc[0:0]
    runs = pd.concat([exp.finals_at(method, reference) for method in needing])
    column = metric_column(contract.TEACHER_TEST_ACCURACY)
    if column not in runs.columns:
        return runs.iloc[0:0]
    runs = runs[runs[column].notna()]
    teacher = exp.tag(Tag.TEACHER, runs)
    return runs[teacher.notna() & ~teacher.duplicated()]


def _scope(exp: ExperimentRuns) -> str:
    settings = exp.settings
    seeds = exp.seeds()
    return (
        f"Dataset `{settings.dataset}`; final-stage runs with seeds {', '.join(map(str, seeds))} "
        f"(n: the number of seeds in a row)."
    )


def noise_table(exp: ExperimentRuns) -> Table:
    """Accuracy versus noise: the teacher and each method at the reference T, clean and every noise
    column; a method with a collapse (`collapses`) is marked `method †`, with a note naming each seed."""
    reference = exp.settings.reference_time_steps
    noise = noise_metrics(exp)
    metrics = [contract.TEST_ACCURACY, *noise]
    teacher = teacher_runs(exp)
    found = collapses(exp)
    teacher_noise = [metric_stat(teacher, renamed(m, contract.TEACHER_NOISE)) for m in noise]
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    notes = []
    if not teacher.empty:
        rows.append((TEACHER, (metric_stat(teacher, contract.TEACHER_TEST_ACCURACY), *teacher_noise)))
        if noise and all(cell is None for cell in teacher_noise):
            notes.append(
                f"The teacher's accuracy under noise is not logged: its row shows clean accuracy only ({DASH})."
            )
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        if runs.empty:
            continue
        rows.append((marked(method, found), tuple(metric_stat(runs, m) for m in metrics)))
        for extra in exp.capabilities(method).report_rows:  # what the method declared (conversion's ANN)
            cells = (
                metric_stat(runs, extra.clean_metric),
                *(metric_stat(runs, renamed(m, extra.noise_prefix)) for m in noise),
            )
            if any(cell is not None for cell in cells):
                rows.append((f"{method} ({extra.label})", cells))
                if extra.note:
                    notes.append(f"`{method} ({extra.label})`: {extra.note}.")
    notes += collapse_notes(exp, found, exp.methods, "the row's mean and std include {them} (n = {n})")
    return Table(
        key="accuracy_vs_noise",
        title=f"Test accuracy under input noise at T = {reference}",
        description=(
            f"Test accuracy (fraction) on the clean test set and on corrupted copies of it (noise type and level; "
            f"every method sees the same corrupted images), for every method at the reference T = {reference} "
            f"(methods that train at a T: the final runs trained at T = {reference}; the others evaluated at "
            f"T = {reference})"
            f"{'' if teacher.empty else ', and for the ANN teacher'}. {_scope(exp)}"
        ),
        row_header="model",
        columns=tuple(Column("clean" if m == contract.TEST_ACCURACY else noise_label(m), "higher") for m in metrics),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def time_step_table(exp: ExperimentRuns) -> Table:
    """Accuracy versus T: from the final runs trained at each T, or read off the reference-T runs' curve."""
    steps = exp.settings.time_steps
    reference = exp.settings.reference_time_steps
    rows, trained, read_off = [], set(), set()
    for method in exp.methods:
        cells = []
        for t in steps:
            runs, metric = exp.at_time_steps(method, t)
            cells.append(metric_stat(runs, metric))
            if cells[-1] is not None:
                (trained if metric == contract.TEST_ACCURACY else read_off).add(f"{method} at T={t}")
        if any(cell is not None for cell in cells):
            rows.append((method, tuple(cells)))
    return Table(
        key="accuracy_vs_time_steps",
        title="Test accuracy versus the number of time steps T",
        description=(
            "Clean test accuracy (fraction) at every T of `eval.time_steps`. "
            + (f"Trained at that T: {', '.join(sorted(trained))}. " if trained else "")
            + (
                f"Read off the final runs at the reference T = {reference} after T steps (one run gives the whole "
                f"curve; the network is causal and starts from rest): {', '.join(sorted(read_off))}. "
                if read_off
                else ""
            )
            + _scope(exp)
        ),
        row_header="method",
        columns=tuple(Column(f"T={t}", "higher") for t in steps),
        rows=tuple(rows),
    )


EFFICIENCY_COLUMNS = (
    (contract.PARAMS, Column("params", "lower", significant)),
    (contract.FIRING_RATE, Column("firing rate", "lower", fixed(4))),
    (contract.ACS, Column("ACs", "lower", significant)),
    (contract.MACS, Column("MACs", "lower", significant)),
    (contract.SYNOPS, Column("SynOps", "lower", significant)),
    (contract.ENERGY_UJ, Column("energy (µJ)", "lower", significant)),
    (contract.TEST_ACCURACY, Column("accuracy", "higher")),
)
TEACHER_EFFICIENCY = {  # the teacher's metric per column (an ANN: no spikes, every op a MAC)
    contract.PARAMS: contract.TEACHER_PARAMS,
    contract.MACS: contract.TEACHER_MACS,
    contract.SYNOPS: contract.TEACHER_MACS,
    contract.ENERGY_UJ: contract.TEACHER_ENERGY_UJ,
    contract.TEST_ACCURACY: contract.TEACHER_TEST_ACCURACY,
}


def efficiency_table(exp: ExperimentRuns) -> Table:
    """Parameters, firing rate, operations and energy per sample with accuracy, at the reference T."""
    reference = exp.settings.reference_time_steps
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    teacher = teacher_runs(exp)
    notes = []
    if not teacher.empty:
        cells = tuple(_teacher_efficiency(teacher, key) for key, _ in EFFICIENCY_COLUMNS)
        rows.append((TEACHER, cells))
        if NOT_LOGGED in cells:
            notes.append("Cells marked 'not logged': the runs did not record that teacher metric.")
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        if not runs.empty:
            rows.append((method, tuple(metric_stat(runs, key) for key, _ in EFFICIENCY_COLUMNS)))
    return Table(
        key="efficiency",
        title=f"Cost per test sample at T = {reference}",
        description=(
            f"Per test sample at the reference T = {reference}: parameter count, mean firing rate (spikes per neuron "
            "per time step), accumulates (ACs, on spiking inputs), multiply-accumulates (MACs, on analog inputs), "
            "SynOps (their sum) and estimated energy at 45 nm (0.9 pJ per AC, 4.6 pJ per MAC), with the clean test "
            f"accuracy. The teacher is an ANN: all its operations are MACs and it does not spike. {_scope(exp)}"
        ),
        row_header="model",
        columns=tuple(column for _, column in EFFICIENCY_COLUMNS),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def _teacher_efficiency(teacher: pd.DataFrame, key: str) -> Cell:
    if key not in TEACHER_EFFICIENCY:
        return None  # spikes and ACs: not applicable to an ANN
    return metric_stat(teacher, TEACHER_EFFICIENCY[key]) or NOT_LOGGED


def best_trial(exp: ExperimentRuns, method: str) -> pd.Series | None:
    """The trial of `method` whose configuration the final stage retrained: the one the sweep
    tagged `harness.best=true` (the searcher's choice; the report does not choose again)."""
    trials = exp.trials_of(method)
    tagged = trials[exp.tag(Tag.BEST, trials) == contract.TRUE]
    return None if tagged.empty else tagged.iloc[0]


def config_text(run: pd.Series, dims: list[str]) -> str:
    """`student.width=8, kd.alpha=0.527`: the searched values of one run."""
    return ", ".join(f"{dim}={_short(run.get(param_column(dim)))}" for dim in dims) or "(nothing searched)"


def _short(value: object) -> str:
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return f"{number:.4g}" if math.isfinite(number) else str(value)


def run_seconds(runs: pd.DataFrame) -> float:
    """Compute time of `runs`: `train_seconds` where logged, else the run's wall time."""
    wall = (runs["end_time"] - runs["start_time"]).dt.total_seconds()
    column = metric_column(contract.TRAIN_SECONDS)
    if column in runs.columns:
        wall = runs[column].fillna(wall)
    return float(wall.fillna(0).sum())


def search_table(exp: ExperimentRuns) -> Table:
    """Per method: trials run, pruned and failed, the best configuration and its validation accuracy, time."""
    rows = []
    for method in exp.methods:
        trials = exp.trials_of(method)
        best = best_trial(exp, method)
        pruned = exp.tag(Tag.PRUNED, trials) == contract.TRUE
        finals = exp.finals_of(method)
        cells: tuple[Cell, ...] = (
            str(len(trials)),
            str(int(pruned.sum())),
            str(int((trials["status"] == "FAILED").sum())),
            DASH if best is None else config_text(best, exp.searched_dims(method)),
            None if best is None else Stat(float(best[metric_column(contract.VAL_ACCURACY)]), math.nan, 1),
            f"{run_seconds(trials):.0f}",
            str(len(finals)),
            f"{run_seconds(finals):.0f}",
        )
        rows.append((method, cells))
    chosen = (
        "the searched values of the reference configuration (the front point whose T is closest to the "
        "reference T, the most accurate among those: the configuration the final stage retrained on every seed)"
        if exp.objectives
        else "the searched values of the best trial (highest final validation accuracy among the trials that ran "
        "every epoch, the configuration the final stage retrained)"
    )
    return Table(
        key="search_summary",
        title="Hyper-parameter search per method",
        description=(
            "The search of each method: trial runs (pruned: stopped early by ASHA; failed: ended with an error), "
            f"{chosen} and its validation accuracy, and compute "
            "time in seconds (the sum of each run's `train_seconds`, or its wall time where that was not logged) "
            f"for the search and for the final runs. Dataset `{exp.settings.dataset}`."
        ),
        row_header="method",
        columns=(
            Column("trials"),
            Column("pruned"),
            Column("failed"),
            Column("best configuration", wrap=True),
            Column("best val acc.", "higher"),
            Column("search (s)"),
            Column("finals"),
            Column("finals (s)"),
        ),
        rows=tuple(rows),
        show_n=False,
    )


def measure_label(metric: str) -> str:
    """`clean` for the test accuracy, `gaussian 0.1` for a noise metric, `pgd eps 0.03` for an attack."""
    if metric == contract.TEST_ACCURACY:
        return "clean"
    if metric.startswith(contract.ATTACK):
        name, eps = parse_noise_metric(metric)
        return f"{name} eps {eps:g}"
    return noise_label(metric)


PARETO_COLUMNS = (  # measure -> column, always shown in the Pareto table
    (contract.TEST_ACCURACY, Column("test accuracy", "higher")),
    (contract.ENERGY_UJ, Column("energy (µJ)", "lower", significant)),
    (contract.SYNOPS, Column("SynOps", "lower", significant)),
)
OTHER_MEASURES = {  # an objective's column where it is not one of PARETO_COLUMNS
    contract.ACS: Column("ACs", "lower", significant),
    contract.MACS: Column("MACs", "lower", significant),
    contract.FIRING_RATE: Column("firing rate", "lower", fixed(4)),
}
YES, NO = "yes", "no"


def _varying_dims(exp: ExperimentRuns, found: pareto.Front) -> list[str]:
    """The searched dims (besides T) whose values differ between the configurations, and every
    config-key objective, in the methods' order."""
    dims = [dim for method in found.methods for dim in exp.searched_dims(method) if dim != pareto.TIME_STEPS] + [
        key for key in found.objectives if not pareto.is_metric(key) and key != pareto.TIME_STEPS
    ]
    dims = list(dict.fromkeys(dims))
    shown = []
    for dim in dims:
        values = {c.param(dim) for c in found.configurations}
        if len(values) > 1 or dim in found.objectives:
            shown.append(dim)
    return shown


def _objective_words(found: pareto.Front) -> str:
    """`val_accuracy` (max) -> test accuracy; `energy_uj` (min) -> energy (µJ)."""
    return "; ".join(
        f"`{name}` ({direction}) -> {pareto.label(key)}"
        for name, direction in found.searched.items()
        if (key := pareto.measure_of(name)) is not None
    )


def pareto_table(exp: ExperimentRuns) -> Table | None:
    """A Pareto sweep's retrained configurations per method, reference first: T, the searched values
    that vary, test accuracy, energy, SynOps (mean ± std over seeds) and whether each is on the
    front; None for a single-objective sweep."""
    found = pareto.pareto_front(exp)
    if found is None:
        return None
    dims = _varying_dims(exp, found)
    measures = [*PARETO_COLUMNS] + [(key, OTHER_MEASURES[key]) for key in found.objectives if key in OTHER_MEASURES]
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    for index, configuration in enumerate(found.configurations):
        cells: tuple[Cell, ...] = (
            str(configuration.time_steps),
            *(_short(v) if (v := configuration.param(dim)) is not None else None for dim in dims),
            *(pareto.stat(configuration, key) for key, _ in measures),
            YES if index in found.method_front else NO,
            YES if index in found.overall_front else NO,
        )
        rows.append((configuration.label, cells))
    notes = []
    for method in found.methods:
        for repeat, earlier in exp.repeated_configurations(method):
            notes.append(
                f"`{repeat.label}` retrained the same configuration as `{earlier.label}` (the same searched values "
                f"and T); it is listed once, with the runs of `{earlier.label}`."
            )
    converted = [m for m in found.methods if not exp.capabilities(m).trains_at_time_steps]
    if converted:
        notes.append(
            f"{', '.join(converted)} does not train at a T: every configuration is evaluated at the reference "
            f"T = {exp.settings.reference_time_steps}."
        )
    if found.skipped:
        notes.append(
            f"{', '.join(f'`{name}`' for name in found.skipped)} has no test-set measure; the fronts here leave it out."
        )
    return Table(
        key="pareto",
        title="Configurations on the Pareto front, measured on the test set",
        description=(
            "Per method, every configuration of its search front that the final stage retrained: its reference "
            "configuration (marked `reference`; its final runs at the T the search chose, the seeds of the other "
            "tables) and the other front points (`trial k`: search trial k, retrained over the first "
            "`search.front_repeats` final seeds at its own T). Columns: the T it is evaluated at, the searched "
            "values that differ between configurations, and its test accuracy, energy per sample (µJ) and SynOps per "
            "sample on the test set, mean ± std over its seeds (n). `front`: non-dominated among the method's own "
            "configurations by the objectives' test-set means; `all methods`: among every method's configurations. "
            f"The objectives (the search's, on the validation split; here their test-set measures): "
            f"{_objective_words(found)}. Dataset `{exp.settings.dataset}`."
        ),
        row_header="configuration",
        columns=(
            Column("T"),
            *(Column(dim) for dim in dims),
            *(column for _, column in measures),
            Column("front"),
            Column("all methods"),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def hypervolume_table(exp: ExperimentRuns) -> Table | None:
    """Per method, the hypervolume of its configurations against one stated reference point: of their
    means, and per seed with a 95% t interval; None for a single-objective sweep."""
    found = pareto.pareto_front(exp)
    if found is None or not found.hypervolumes:
        return None
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    fallback = []
    for volume in found.hypervolumes:
        interval = volume.interval
        if not volume.common_seeds:
            fallback.append(volume.method)
        cells: tuple[Cell, ...] = (
            str(volume.configurations),
            Stat(volume.of_means, math.nan, 1),
            DASH if interval is None else significant(interval.mean),
            DASH
            if interval is None or interval.low is None
            else f"[{significant(interval.low)}, {significant(interval.high)}]",
            ", ".join(map(str, volume.per_seed)) or DASH,
            DASH if interval is None else interval.test,
        )
        rows.append((volume.method, cells))
    over = " × ".join(pareto.label(key) for key in found.objectives)
    extent = {1: "the length", 2: "the area"}.get(len(found.objectives), "the volume")
    notes = [f"Reference point: {found.reference_text()}."]
    if fallback:
        notes.append(
            f"{', '.join(fallback)}: no seed is common to all its configurations; its per-seed hypervolumes are over "
            "the seeds of its reference configuration, each from the configurations that ran that seed."
        )
    return Table(
        key="hypervolume",
        title=f"Hypervolume per method (reference point: {found.reference_text()})",
        description=(
            f"The hypervolume ({extent}, in units of {over}, "
            "that a method's configurations dominate up to the reference point) over the test-set objectives, "
            "against one reference point for every method: "
            f"{found.reference_text()} (`harness.pareto.reference_point` over all methods' configuration means, "
            f"margin {pareto.MARGIN:g}: each objective's worst mean pushed {pareto.MARGIN:g} of its range further "
            "out). `of means`: from the configurations' mean points (the table and figure above). Per seed: for each "
            "seed every configuration of the method ran (the first `search.front_repeats` final seeds), the "
            "hypervolume of that seed's points; their mean and 95% t interval (none with one seed)."
        ),
        row_header="method",
        columns=(
            Column("configurations"),
            Column("of means", "higher", significant),
            Column("per seed, mean"),
            Column("95% CI"),
            Column("seeds"),
            Column("interval"),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        show_n=False,
    )
