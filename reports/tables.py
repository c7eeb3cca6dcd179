"""The report's five tables, built from an experiment's MLflow runs.

Cells are mean ± std over the final runs' seeds; which runs feed a cell is said in each
table's description (reference T, one run per seed).
"""

from __future__ import annotations

import math

import pandas as pd

from reports.loading import ExperimentRuns
from reports.render import DASH, Cell, Column, Stat, Table, fixed, significant
from reports.stats import compare

TEACHER = "teacher (ANN)"
NOT_LOGGED = "not logged"


def metric_stat(frame: pd.DataFrame, metric: str) -> Stat | None:
    """Mean ± std of `metrics.<metric>` over the runs of `frame` (None when none logged it)."""
    column = f"metrics.{metric}"
    return Stat.of(frame[column].dropna()) if column in frame.columns else None


def per_seed(frame: pd.DataFrame, metric: str) -> dict[int, float]:
    """`metric` per seed (runs of the same seed averaged), for the runs that logged it."""
    column = f"metrics.{metric}"
    if column not in frame.columns:
        return {}
    values = frame[["params.seed", column]].dropna()
    return {int(seed): float(value) for seed, value in values.groupby("params.seed")[column].mean().items()}


def noise_metrics(exp: ExperimentRuns) -> list[str]:
    """Every `noise/<type>/<level>` metric of the final runs, by the space's type order, then level."""
    names = [c.removeprefix("metrics.") for c in exp.finals.columns if c.startswith("metrics.noise/")]
    order = list(exp.settings.noise)

    def key(name: str) -> tuple[int, str, float]:
        _, kind, level = name.split("/", 2)
        return (order.index(kind) if kind in order else len(order), kind, float(level))

    return sorted(names, key=key)


def noise_label(metric: str) -> str:
    """`noise/gaussian/0.1` -> `gaussian 0.1`."""
    _, kind, level = metric.split("/", 2)
    return f"{kind} {float(level):g}"


def teacher_runs(exp: ExperimentRuns) -> pd.DataFrame:
    """The final runs at the reference T that logged their teacher, one per distinct teacher.

    A teacher is identified by its seed: `teacher.seed` where fixed, else the trial's seed.
    """
    reference = exp.settings.reference_time_steps
    runs = pd.concat([exp.finals_at(method, reference) for method in exp.methods])
    if "metrics.teacher_test_accuracy" not in runs.columns:
        return runs.iloc[0:0]
    runs = runs[runs["metrics.teacher_test_accuracy"].notna()]
    fixed_seed = exp.column("params.teacher.seed", runs)
    teacher_seed = fixed_seed.where(fixed_seed.notna() & (fixed_seed != "None"), runs["params.seed"])
    return runs[~teacher_seed.duplicated()]


def _scope(exp: ExperimentRuns) -> str:
    settings = exp.settings
    seeds = exp.seeds()
    return (
        f"Dataset `{settings.dataset}`; final-stage runs with seeds {', '.join(map(str, seeds))} "
        f"(n: the number of seeds in a row)."
    )


def noise_table(exp: ExperimentRuns) -> Table:
    """Accuracy versus noise: the teacher and each method at the reference T, clean and every noise column."""
    reference = exp.settings.reference_time_steps
    metrics = ["test_accuracy", *noise_metrics(exp)]
    teacher = teacher_runs(exp)
    teacher_noise = [metric_stat(teacher, f"teacher_{m}") for m in metrics[1:]]
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    notes = []
    if not teacher.empty:
        rows.append((TEACHER, (metric_stat(teacher, "teacher_test_accuracy"), *teacher_noise)))
        if metrics[1:] and all(cell is None for cell in teacher_noise):
            notes.append(
                f"The teacher's accuracy under noise is not logged: its row shows clean accuracy only ({DASH})."
            )
    ann_rows = []
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        if not runs.empty:
            rows.append((method, tuple(metric_stat(runs, m) for m in metrics)))
        ann = metric_stat(runs, "ann_test_accuracy")  # a method that trains an ANN first (conversion)
        if ann is not None:
            ann_rows.append(f"`{method} (ANN)`")
            rows.append((f"{method} (ANN)", (ann, *(metric_stat(runs, f"ann_{m}") for m in metrics[1:]))))
    if ann_rows:
        notes.append(
            f"{', '.join(ann_rows)}: the ANN each run trained before converting it, on the same images, "
            "which separates what conversion loses from what the ANN lacks."
        )
    return Table(
        key="accuracy_vs_noise",
        title=f"Test accuracy under input noise at T = {reference}",
        description=(
            f"Test accuracy (fraction) on the clean test set and on corrupted copies of it (noise type and level; "
            f"every method sees the same corrupted images), for every method at the reference T = {reference} "
            f"(KD and direct: the final runs trained at T = {reference}; conversion evaluated at T = {reference})"
            f"{'' if teacher.empty else ', and for the ANN teacher'}. {_scope(exp)}"
        ),
        row_header="model",
        columns=tuple(Column("clean" if m == "test_accuracy" else noise_label(m), "higher") for m in metrics),
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
                (trained if metric == "test_accuracy" else read_off).add(f"{method} at T={t}")
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
    ("params", Column("params", "lower", significant)),
    ("firing_rate", Column("firing rate", "lower", fixed(4))),
    ("acs", Column("ACs", "lower", significant)),
    ("macs", Column("MACs", "lower", significant)),
    ("synops", Column("SynOps", "lower", significant)),
    ("energy_uj", Column("energy (µJ)", "lower", significant)),
    ("test_accuracy", Column("accuracy", "higher")),
)
TEACHER_EFFICIENCY = {  # the teacher's metric per column (an ANN: no spikes, every op a MAC)
    "params": "teacher_params",
    "macs": "teacher_macs",
    "synops": "teacher_macs",
    "energy_uj": "teacher_energy_uj",
    "test_accuracy": "teacher_test_accuracy",
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


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The trial whose configuration the final stage retrained: the one the sweep tagged
    `harness.best=true`; else the finished trial with the best final `val_accuracy`, complete
    trials (not pruned) first (the sweep's rule).
    """
    if "tags.harness.best" in trials.columns:
        tagged = trials[trials["tags.harness.best"] == "true"]
        if not tagged.empty:
            return tagged.iloc[0]
    finished = trials[trials["status"] == "FINISHED"]
    if "metrics.val_accuracy" not in finished.columns:
        return None
    finished = finished[finished["metrics.val_accuracy"].notna()]
    if finished.empty:
        return None
    complete = (
        finished["metrics.test_accuracy"].notna()
        if "metrics.test_accuracy" in finished.columns
        else pd.Series(False, index=finished.index)
    )
    ranked = finished.assign(_complete=complete).sort_values(
        ["_complete", "metrics.val_accuracy"], ascending=False, kind="stable"
    )
    return ranked.iloc[0]


def config_text(run: pd.Series, dims: list[str]) -> str:
    """`student.width=8, kd.alpha=0.527`: the searched values of one run."""
    return ", ".join(f"{dim}={_short(run.get(f'params.{dim}'))}" for dim in dims) or "(nothing searched)"


def _short(value: object) -> str:
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return f"{number:.4g}" if math.isfinite(number) else str(value)


def run_seconds(runs: pd.DataFrame) -> float:
    """Compute time of `runs`: `train_seconds` where logged, else the run's wall time."""
    wall = (runs["end_time"] - runs["start_time"]).dt.total_seconds()
    if "metrics.train_seconds" in runs.columns:
        wall = runs["metrics.train_seconds"].fillna(wall)
    return float(wall.fillna(0).sum())


def search_table(exp: ExperimentRuns) -> Table:
    """Per method: trials run, pruned and failed, the best configuration and its validation accuracy, time."""
    rows = []
    for method in exp.methods:
        trials = exp.trials_of(method)
        best = best_trial(trials)
        pruned = exp.column("tags.harness.pruned", trials) == "true"
        finals = exp.finals_of(method)
        cells: tuple[Cell, ...] = (
            str(len(trials)),
            str(int(pruned.sum())),
            str(int((trials["status"] == "FAILED").sum())),
            DASH if best is None else config_text(best, exp.searched_dims(method)),
            None if best is None else Stat(float(best["metrics.val_accuracy"]), math.nan, 1),
            f"{run_seconds(trials):.0f}",
            str(len(finals)),
            f"{run_seconds(finals):.0f}",
        )
        rows.append((method, cells))
    return Table(
        key="search_summary",
        title="Hyper-parameter search per method",
        description=(
            "The search of each method: trial runs (pruned: stopped early by ASHA; failed: ended with an error), "
            "the searched values of the best trial (highest final validation accuracy among the trials that ran "
            "every epoch, the configuration the final stage retrained) and its validation accuracy, and compute "
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


def significance_table(exp: ExperimentRuns, reference: str = "kd") -> Table:
    """KD minus each baseline at the reference T, for clean accuracy and every noise column."""
    ref_t = exp.settings.reference_time_steps
    metrics = ["test_accuracy", *noise_metrics(exp)]
    kd_runs = exp.finals_at(reference, ref_t)
    rows = []
    for baseline in [m for m in exp.methods if m != reference]:
        base_runs = exp.finals_at(baseline, ref_t)
        for metric in metrics:
            a, b = per_seed(kd_runs, metric), per_seed(base_runs, metric)
            if a and b:
                rows.append((f"{reference} vs {baseline}", _significance_cells(metric, a, b)))
    notes = [] if rows else [f"Nothing to compare: {reference} or every baseline lacks final runs at T = {ref_t}."]
    return Table(
        key="significance",
        title=f"{reference} against each baseline at T = {ref_t}",
        description=(
            f"Difference of mean test accuracy ({reference} minus baseline) at the reference T = {ref_t}, clean and "
            "under each noise, with its 95% confidence interval: a paired t interval over the seeds both methods "
            "ran (one value per seed: the seeds pair, since every method's final stage uses the same seeds), "
            "Welch's t interval where the seeds differ; undefined with a single seed. An interval that excludes 0 "
            "marks a difference at the 5% level."
        ),
        row_header="comparison",
        columns=(
            Column("measure"),
            Column(reference, None),
            Column("baseline", None),
            Column("difference"),
            Column("95% CI"),
            Column("p"),
            Column("test"),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        show_n=False,
    )


def _significance_cells(metric: str, a: dict[int, float], b: dict[int, float]) -> tuple[Cell, ...]:
    result = compare(a, b)
    interval = DASH if result.low is None else f"[{result.low:+.4f}, {result.high:+.4f}]"
    return (
        "clean" if metric == "test_accuracy" else noise_label(metric),
        Stat.of(a.values()),
        Stat.of(b.values()),
        f"{result.difference:+.4f}",
        interval,
        DASH if result.p_value is None else f"{result.p_value:.3g}",
        result.test,
    )


def all_tables(exp: ExperimentRuns) -> list[Table]:
    """The five tables in reading order."""
    return [noise_table(exp), time_step_table(exp), efficiency_table(exp), search_table(exp), significance_table(exp)]
