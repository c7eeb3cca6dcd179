"""MLflow runs of one experiment -> pandas, checked for what a report needs (`harness.contract` names).

`load_experiment` reads every run with `mlflow.search_runs` and answers the questions the
tables and figures ask: which final runs a method has at a given T, what the evaluation
settings were, which dimensions the search sampled, what each method declared about itself.
Everything comes from what the runs recorded (tags `harness.capabilities`, `harness.teacher`,
the sweep's `harness.methods`), never from the methods installed here: a report needs
neither the training stack nor the plugins that made the runs.

A Pareto sweep (its parent run carries `harness.objectives`) also retrained, per method, the
other points of its search front (`harness.role=front`, grouped by `harness.front_point`):
`ExperimentRuns.objectives` and `ExperimentRuns.configurations` give them to the report's
Pareto table, hypervolume and front figure.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.contract import (
    PREDICTIONS_ARTIFACT,
    TEST_ACCURACY,
    TRUE,
    Capabilities,
    Role,
    Tag,
    param_column,
    tag_column,
    timestep_metric,
)
from harness.errors import HarnessInputError
from harness.predictions import Predictions, read_predictions
from harness.tracking import absolute_tracking_uri

SWEEP_HINT = "`harness sweep --space FILE` creates it"
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class EvalSettings:
    """What the final runs were evaluated on (read from their params)."""

    dataset: str
    reference_time_steps: int
    time_steps: tuple[int, ...]
    noise: dict[str, tuple[float, ...]]


@dataclass(frozen=True, eq=False)
class Configuration:
    """One configuration a Pareto sweep's final stage retrained for a method, with its runs.

    Attributes:
        method: The method.
        trial: The search index of the trial it came from (the front point), None where unknown.
        reference: The method's reference configuration (its `harness.role=final` runs at the T
            the search chose); otherwise another front point (`harness.role=front` runs).
        time_steps: The T it is evaluated at (its own for a method that trains at a T, else the
            reference T).
        runs: Its finished runs, one per seed.
    """

    method: str
    trial: int | None
    reference: bool
    time_steps: int
    runs: pd.DataFrame

    @property
    def label(self) -> str:
        """`kd: reference (trial 0)` or `kd: trial 2`: the row label of the report."""
        trial = "" if self.trial is None else f"trial {self.trial}"
        if self.reference:
            return f"{self.method}: reference" + (f" ({trial})" if trial else "")
        return f"{self.method}: {trial or 'front point'}"

    def param(self, key: str) -> str | None:
        """The param `key` of its runs (the same for every seed), None where not logged."""
        values = self.runs[param_column(key)].dropna() if param_column(key) in self.runs.columns else ()
        return None if len(values) == 0 else str(values.iloc[0])

    def seeds(self) -> list[int]:
        """The seeds its runs used."""
        return sorted({int(seed) for seed in self.runs[param_column("seed")].dropna()})


@dataclass(frozen=True)
class ExperimentRuns:
    """All runs of one MLflow experiment, one row per run (`mlflow.search_runs` columns)."""

    name: str
    tracking_uri: str
    runs: pd.DataFrame

    def column(self, name: str, frame: pd.DataFrame | None = None) -> pd.Series:
        """A column of `frame` (default: all runs); all-missing when no run logged it."""
        frame = self.runs if frame is None else frame
        if name in frame.columns:
            return frame[name]
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def tag(self, tag: Tag, frame: pd.DataFrame | None = None) -> pd.Series:
        """A tag's column of `frame` (default: all runs)."""
        return self.column(tag_column(tag), frame)

    def with_role(self, role: Role) -> pd.DataFrame:
        """Runs tagged `harness.role=role`."""
        return self.runs[self.tag(Tag.ROLE) == role]

    @cached_property
    def finals(self) -> pd.DataFrame:
        """FINISHED runs of the final stage (`harness.role=final`)."""
        finals = self.with_role(Role.FINAL)
        return finals[finals["status"] == "FINISHED"]

    @cached_property
    def trials(self) -> pd.DataFrame:
        """Search trial runs (`harness.role=trial`) of any status."""
        return self.with_role(Role.TRIAL)

    @cached_property
    def front_runs(self) -> pd.DataFrame:
        """FINISHED runs of a Pareto sweep's other front points (`harness.role=front`)."""
        fronts = self.with_role(Role.FRONT)
        return fronts[fronts["status"] == "FINISHED"]

    @cached_property
    def objectives(self) -> dict[str, str] | None:
        """A Pareto sweep's `search.objectives` (name -> `max`/`min`, in order; the first is the
        primary), from its parent run's tag `harness.objectives`; None for a single-objective sweep."""
        tagged = self.tag(Tag.OBJECTIVES, self.with_role(Role.SWEEP)).dropna()
        if not len(tagged):
            return None
        return {str(name): str(direction) for name, direction in json.loads(str(tagged.iloc[0])).items()}

    @cached_property
    def sweep_order(self) -> list[str]:
        """The methods in the order of the sweep's `methods:` (its parent run's `harness.methods`)."""
        listed = self.tag(Tag.METHODS, self.with_role(Role.SWEEP)).dropna()
        return [name for name in str(listed.iloc[0]).split(",") if name] if len(listed) else []

    @cached_property
    def methods(self) -> list[str]:
        """Every method with a trial or final run, in the sweep's order (others after, by name)."""
        names = set(self.tag(Tag.METHOD, self.trials).dropna()) | set(self.tag(Tag.METHOD, self.finals).dropna())
        order = self.sweep_order
        return sorted(names, key=lambda m: (order.index(m) if m in order else len(order), m))

    def capabilities(self, method: str) -> Capabilities:
        """What `method` declared about itself, as its runs recorded it (tag `harness.capabilities`)."""
        runs = self.runs[self.tag(Tag.METHOD) == method]
        recorded = self.tag(Tag.CAPABILITIES, runs).dropna()
        return Capabilities.from_tag(str(recorded.iloc[0]) if len(recorded) else None)

    @cached_property
    def settings(self) -> EvalSettings:
        """Dataset, reference T, T values and noise of the final runs (their first row)."""
        first = self.finals.iloc[0]
        noise = json.loads(_param(first, "eval.noise", "{}"))
        return EvalSettings(
            dataset=_param(first, "dataset.name", "?"),
            reference_time_steps=int(first[param_column("eval.reference_time_steps")]),
            time_steps=tuple(sorted(int(t) for t in json.loads(first[param_column("eval.time_steps")]))),
            noise={kind: tuple(float(level) for level in levels) for kind, levels in noise.items()},
        )

    def finals_of(self, method: str) -> pd.DataFrame:
        """Final runs of `method`."""
        return self.finals[self.tag(Tag.METHOD, self.finals) == method]

    def trials_of(self, method: str) -> pd.DataFrame:
        """Search trial runs of `method`."""
        return self.trials[self.tag(Tag.METHOD, self.trials) == method]

    def finals_at(self, method: str, time_steps: int) -> pd.DataFrame:
        """Final runs of `method` that measure it at T = `time_steps`.

        A method that trains at a T (`Capabilities.trains_at_time_steps`: KD, direct) has one
        final run per seed and T; any other (conversion) runs once at the reference T.
        """
        finals = self.finals_of(method)
        if not self.capabilities(method).trains_at_time_steps:
            return finals if time_steps == self.settings.reference_time_steps else finals.iloc[0:0]
        trained = pd.to_numeric(self.column(param_column("snn.time_steps"), finals), errors="coerce")
        return finals[trained == time_steps]

    def at_time_steps(self, method: str, time_steps: int) -> tuple[pd.DataFrame, str]:
        """The final runs and the metric that give `method`'s test accuracy at T = `time_steps`.

        Runs trained at that T (`test_accuracy`) where the final stage trained `method` there;
        otherwise the runs at the reference T, read after T steps (`timestep/<T>`: the network
        is causal and starts from rest, so one run at T_max gives the whole curve). Conversion
        always reads its curve off one run.
        """
        trained_here = self.capabilities(method).trains_at_time_steps
        trained = self.finals_at(method, time_steps) if trained_here else self.finals.iloc[0:0]
        if not trained.empty:
            return trained, TEST_ACCURACY
        return self.finals_at(method, self.settings.reference_time_steps), timestep_metric(time_steps)

    def search_time_steps(self, method: str) -> int:
        """The T of `method`'s reference configuration: that of the search trial tagged
        `harness.best=true` (the searcher's choice) for a method that trains at a T, else (and
        where that trial logged no T) the reference T."""
        reference = self.settings.reference_time_steps
        if not self.capabilities(method).trains_at_time_steps:
            return reference
        trials = self.trials_of(method)
        best = trials[self.tag(Tag.BEST, trials) == TRUE]
        chosen = pd.to_numeric(self.column(param_column("snn.time_steps"), best), errors="coerce").dropna()
        return int(chosen.iloc[0]) if len(chosen) else reference

    def configurations(self, method: str) -> list[Configuration]:
        """A Pareto sweep's configurations of `method`: the reference first, then each other front
        point by search index; a front point that repeats an earlier configuration (the same
        searched values and T) is left out (`repeated_configurations`). Empty for a
        single-objective sweep."""
        return list(self._configurations.get(method, ([], []))[0])

    def repeated_configurations(self, method: str) -> list[tuple[Configuration, Configuration]]:
        """(front point, the earlier configuration it repeats) for the front points `configurations` leaves out."""
        return list(self._configurations.get(method, ([], []))[1])

    @cached_property
    def _configurations(self) -> dict[str, tuple[list[Configuration], list[tuple[Configuration, Configuration]]]]:
        """Per method: its configurations, and the front points that repeat one (read once)."""
        if self.objectives is None:
            return {}
        return {method: self._configurations_of(method) for method in self.methods}

    def _configurations_of(self, method: str) -> tuple[list[Configuration], list[tuple[Configuration, Configuration]]]:
        found = []
        time_steps = self.search_time_steps(method)
        reference_runs = self.finals_at(method, time_steps)
        if not reference_runs.empty:
            best = self.trials_of(method)
            best = best[self.tag(Tag.BEST, best) == TRUE]
            trial = _trial_index(str(self.tag(Tag.TRIAL_ID, best).iloc[0])) if len(best) else None
            found.append(Configuration(method, trial, True, time_steps, reference_runs))
        fronts = self.front_runs[self.tag(Tag.METHOD, self.front_runs) == method]
        points = self.tag(Tag.FRONT_POINT, fronts)
        trains_at_t = self.capabilities(method).trains_at_time_steps
        for point in sorted(points.dropna().unique(), key=_point_order):
            runs = fronts[points == point]
            trained = pd.to_numeric(self.column(param_column("snn.time_steps"), runs), errors="coerce").dropna()
            steps = int(trained.iloc[0]) if trains_at_t and len(trained) else self.settings.reference_time_steps
            found.append(Configuration(method, _trial_index(str(point)), False, steps, runs))
        dims = [dim for dim in self.searched_dims(method) if dim != "snn.time_steps"]
        kept: list[Configuration] = []
        repeated = []
        for configuration in found:
            key = (configuration.time_steps, *(configuration.param(dim) for dim in dims))
            earlier = [c for c in kept if (c.time_steps, *(c.param(dim) for dim in dims)) == key]
            if earlier:
                repeated.append((configuration, earlier[0]))
            else:
                kept.append(configuration)
        return kept, repeated

    @cached_property
    def _predictions(self) -> dict[str, Predictions | None]:
        return {}

    def predictions(self, run_id: str) -> Predictions | None:
        """The run's per-image test predictions (`harness.predictions`), downloaded once; None
        for a run that logged none (an older harness, or a store it could not write)."""
        if run_id not in self._predictions:
            self._predictions[run_id] = _download_predictions(self.tracking_uri, run_id)
        return self._predictions[run_id]

    def seeds(self) -> list[int]:
        """The seeds of the final runs."""
        return sorted({int(seed) for seed in self.column(param_column("seed"), self.finals).dropna()})

    def gaps(self) -> list[str]:
        """What this experiment lacks for a complete report, one sentence each (empty when complete)."""
        reference = self.settings.reference_time_steps
        gaps = []
        for method in self.methods:
            if self.finals_of(method).empty:
                trials = self.trials_of(method)
                failed = int((trials["status"] == "FAILED").sum())
                gaps.append(
                    f"`{method}` has no finished final runs ({len(trials)} search trials, {failed} failed), "
                    "so it appears only in the search summary and the search figure."
                )
                continue
            if self.finals_at(method, reference).empty:
                gaps.append(f"`{method}` has no finished final run at the reference T = {reference}.")
        sweep_reason = self.tag(Tag.FAILURE_REASON, self.with_role(Role.SWEEP)).dropna()
        if len(sweep_reason):  # what the sweep itself found missing when it ended
            gaps.append(f"The sweep ended with planned runs missing: {sweep_reason.iloc[0]}.")
        for role, name in ((Role.FINAL, "final"), (Role.FRONT, "front-point")):
            runs = self.with_role(role)
            unfinished = runs[runs["status"] != "FINISHED"]
            if len(unfinished):
                statuses = ", ".join(f"{n} {status}" for status, n in unfinished["status"].value_counts().items())
                gaps.append(f"{len(unfinished)} {name} runs did not finish ({statuses}); they are left out.")
        return gaps

    def searched_dims(self, method: str) -> list[str]:
        """The dimensions the search sampled for `method`.

        From the trial runs' tag `harness.searched` where set, else the params whose values
        differ between the method's trials.
        """
        trials = self.trials_of(method)
        tagged = self.tag(Tag.SEARCHED, trials).dropna()
        if len(tagged):
            return [key for key in str(tagged.iloc[0]).split(",") if key]
        params = [c for c in trials.columns if c.startswith("params.") and c != param_column("seed")]
        return [c.removeprefix("params.") for c in params if trials[c].dropna().nunique() > 1]


def _point_order(point: object) -> tuple[bool, int, str]:
    """Front points by search index (any tag that is not an index after them, by text)."""
    index = _trial_index(str(point))
    return index is None, -1 if index is None else index, str(point)


def _trial_index(trial_id: str) -> int | None:
    """The search index at the end of a trial id (`smoke/trial/kd/3` -> 3) or a front point tag (`3`)."""
    last = trial_id.rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


def _param(run: pd.Series, key: str, default: str) -> str:
    """A run's param (a string), or `default` where the run did not log it."""
    value = run.get(param_column(key))
    return default if value is None or pd.isna(value) else str(value)


def _download_predictions(tracking_uri: str, run_id: str) -> Predictions | None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = MlflowClient(tracking_uri).download_artifacts(run_id, PREDICTIONS_ARTIFACT, folder)
            return read_predictions(path)
        except (MlflowException, OSError, ValueError):
            return None


def load_experiment(tracking_uri: str | None, experiment: str) -> ExperimentRuns:
    """Every run of `experiment`, checked to hold finished final-stage runs.

    Raises:
        HarnessInputError: no store at `tracking_uri`, no such experiment, no finished runs,
            or no finished `harness.role=final` runs (with the command that produces them).
    """
    uri = absolute_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise HarnessInputError(f"--tracking-uri: no MLflow store at {uri}; {SWEEP_HINT}")
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = sorted(e.name for e in client.search_experiments())
        raise HarnessInputError(
            f"--experiment: no experiment {experiment!r} in {uri} (it has: {', '.join(known) or 'none'}); {SWEEP_HINT}"
        )
    runs = _search_runs(uri, found.experiment_id)
    loaded = ExperimentRuns(experiment, uri, runs)
    _check_complete(loaded)
    return loaded


def _search_runs(tracking_uri: str, experiment_id: str) -> pd.DataFrame:
    """`mlflow.search_runs` against `tracking_uri`, leaving the process's tracking URI as it was
    (`mlflow.set_tracking_uri` also sets `MLFLOW_TRACKING_URI`, which the harness honours)."""
    previous, from_env = mlflow.get_tracking_uri(), os.environ.get(TRACKING_URI_VARIABLE)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.search_runs(experiment_ids=[experiment_id], max_results=50_000, output_format="pandas")
    finally:
        mlflow.set_tracking_uri(previous)
        if from_env is None:
            os.environ.pop(TRACKING_URI_VARIABLE, None)
        else:
            os.environ[TRACKING_URI_VARIABLE] = from_env


def _check_complete(loaded: ExperimentRuns) -> None:
    where = f"experiment {loaded.name!r} at {loaded.tracking_uri}"
    if loaded.runs.empty or not (loaded.runs["status"] == "FINISHED").any():
        raise HarnessInputError(
            f"--experiment: {where} has no finished runs ({_status_counts(loaded.runs)}); "
            "run `harness sweep --space FILE` (or `harness sweep --space FILE --resume` after an interruption)"
        )
    if loaded.finals.empty:
        finals = loaded.with_role(Role.FINAL)
        raise HarnessInputError(
            f"--experiment: {where} has no finished final-stage runs (tag harness.role=final; "
            f"{_status_counts(finals)}); `harness sweep --space FILE` with search.final_repeats >= 1 produces them"
        )
    required = (param_column("eval.reference_time_steps"), param_column("eval.time_steps"))
    missing = [name.removeprefix("params.") for name in required if name not in loaded.finals.columns]
    if missing:
        raise HarnessInputError(
            f"--experiment: the final runs of {where} lack the params {', '.join(missing)}; "
            "rerun them with `harness sweep --space FILE`"
        )


def _status_counts(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "it has none"
    counts = runs["status"].value_counts()
    return f"{len(runs)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items())
