"""One Tune experiment for the whole sweep: a searcher that keeps methods apart.

Every method gets its own Optuna study (TPE over only its dims, `harness.sweep.studies`) and its
own ASHA brackets (`harness.sweep.schedule`), so methods never compete in a study or a rung; but
all their trials share one Tune experiment, so a slot freed by one method's last trial runs
another method's trial instead of idling until a stage ends. `SweepSearcher` hands out each
method's search trials (round-robin) and, the moment a method's search is complete, its final
runs.

The order is chosen for a short tail: a pending search trial goes before any final run (a
search that ends late would queue its final runs last), and the final runs waiting go longest
first, a method's runs by the time its search trials took (seconds per epoch times the epochs
they reached), and within a method largest T first (`final_runs`).

Every trial is a `PlannedTrial` (`harness.sweep.protocol`) with its identity in the plan: the
search index within its method, or the seed and T of a final run. A trial re-issued after a
crash (the searcher restored to its last save) has the same identity, so it finds its MLflow
run and its checkpoints again.

The searcher's record of what it chose is `<storage>/<sweep>/choices.json`, written the moment
each choice is made (Tune saves the searcher only now and then, so after a killed driver the
saved one can be older than the final runs that already ran). A choice on record stands: a
resumed search that ends again (its last trial rerun, perhaps pruned differently by an older
ASHA state) retrains the configuration whose final runs exist, not a new one. The driver reads
what was chosen from this record (`read_choices`), and so does the progress display.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher

from harness.contract import Role
from harness.files import FRESH_START, DamagedState, read_json, write_json_atomically
from harness.progress import write
from harness.sweep.final import final_runs
from harness.sweep.front import ParetoFront, SingleObjective, front_runs, make_choice
from harness.sweep.plan import MethodPlan, SweepPlan, search_budget
from harness.sweep.protocol import EPOCH_KEY, PlannedTrial
from harness.sweep.studies import STUDY_FILE, DefineByRun, StudyMirror
from harness.teacher import TEACHER_FAILED

CHOICES_FILE = "choices.json"  # each method's chosen search trial, in the sweep's folder


@dataclass(frozen=True)
class TeacherGate:
    """Per method, the teacher files its trials wait for. A teacher whose training failed
    (`TEACHER_FAILED` beside it) opens the gate too: the trial then fails with the teacher's error."""

    files: dict[str, tuple[str, ...]]

    def ready(self, method: str) -> bool:
        """Whether every teacher of `method` is cached (or has failed)."""
        return all(Path(f).exists() or Path(f).with_name(TEACHER_FAILED).exists() for f in self.files.get(method, ()))


class SweepSearcher(Searcher):
    """Search trials of every method (each from its own `OptunaSearch`), then final runs.

    Args:
        searchers: per method, in sweep order, its Optuna searcher, or None when the method
            searches nothing (it then runs one trial of its fixed config).
        budget: search trials per method.
        final_runs: `final_runs(method, best)` -> the planned final runs that retrain `best`
            (the chosen trial's sampled values); must pickle (Tune saves the searcher).
        metric, mode: the search objective (the primary one of a Pareto search).
        choice: how a method's ended search becomes what its final stage retrains
            (`harness.sweep.front`): the best trial (default, by `metric` and `mode`), or a
            Pareto front, whose other points `front_runs(method, point, values)` retrains.
        mirror: where ended search trials are recorded as Optuna studies (None: nowhere).
        gate: which methods wait for their teachers (None: none waits); a waiting method's
            turn passes to the next until its teachers are cached.
        trial_settings: per method, values every search trial sets besides its sampled ones
            (`search.trial_evaluation: clean`: no noise, one T); final runs do not set them.
        choices: the file that records each method's choice when it is made (None: nowhere).
    """

    def __init__(
        self,
        searchers: Mapping[str, Searcher | None],
        budget: Mapping[str, int],
        final_runs: Callable[[str, dict[str, Any]], list[PlannedTrial]],
        metric: str,
        mode: str,
        mirror: StudyMirror | None = None,
        gate: TeacherGate | None = None,
        trial_settings: Mapping[str, Mapping[str, Any]] | None = None,
        choices: Path | None = None,
        choice: SingleObjective | ParetoFront | None = None,
        front_runs: Callable[[str, str, dict[str, Any]], list[PlannedTrial]] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.choice = choice if choice is not None else SingleObjective(metric, mode)
        self.front_runs = front_runs
        self.methods = list(searchers)
        self.searchers = dict(searchers)
        self.budget = dict(budget)
        self.final_runs = final_runs
        self.mirror = mirror
        self.gate = gate
        self.trial_settings = {method: dict(values) for method, values in (trial_settings or {}).items()}
        self.choices = choices
        self.sampled: dict[str, list[dict[str, Any]]] = {m: [] for m in self.methods}  # in suggestion order
        self.outcomes: dict[str, dict[int, tuple[dict | None, bool]]] = {m: {} for m in self.methods}
        self.trials: dict[str, tuple[str, int]] = {}  # search trial id -> (method, suggestion index)
        self.queued: list[PlannedTrial] = []  # final runs not yet handed out
        self.best: dict[str, dict[str, Any] | None] = {}  # per method whose search is complete
        self.chosen: dict[str, str | None] = {}  # the identity (`run`) of that best configuration
        self.front: dict[str, list[str]] = {}  # a Pareto search's other front points retrained (search indices)
        self.turn = 0

    @property
    def run_seconds(self) -> dict[str, float]:
        """Per method whose search is complete, the expected length of one of its final runs."""
        return {method: expected_run_seconds(self.outcomes[method].values()) for method in self.best}

    @property
    def done(self) -> bool:
        """Every method's search has ended and every final run has been handed out."""
        return len(self.best) == len(self.methods) and not self.queued

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # set at construction, as every sub-searcher's

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for _ in self.methods:
            method = self.methods[self.turn % len(self.methods)]
            self.turn += 1
            if len(self.sampled[method]) < self.budget[method] and (self.gate is None or self.gate.ready(method)):
                return self._suggest_search(method, trial_id)
        if self.queued:
            return self.queued.pop(0).to_tune()
        if len(self.best) == len(self.methods):
            return Searcher.FINISHED
        return None  # a search still runs (or waits for its teacher); its final runs come when it ends

    def _suggest_search(self, method: str, trial_id: str) -> dict[str, Any] | None:
        searcher = self.searchers[method]
        values = {} if searcher is None else searcher.suggest(trial_id)
        if values is None:
            self.turn -= 1  # ask the same method again next time
            return None
        index = len(self.sampled[method])
        self.trials[trial_id] = (method, index)
        self.sampled[method].append(dict(values))
        settings = self.trial_settings.get(method, {})
        return PlannedTrial(method, Role.TRIAL, str(index), {**settings, **values}).to_tune()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trials:
            searcher = self.searchers[self.trials[trial_id][0]]
            if searcher is not None:
                searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return  # a final run
        method, index = self.trials[trial_id]
        searcher = self.searchers[method]
        if searcher is not None:
            told = self.choice.for_optuna(method, self.sampled[method][index], result)
            searcher.on_trial_complete(trial_id, result=told, error=error)
        self.outcomes[method][index] = (result, error)
        if self.mirror is not None and self.searchers[method] is not None:
            told = None if error else self.choice.for_optuna(method, self.sampled[method][index], result) or result
            self.mirror.record(method, str(index), self.sampled[method][index], told, self.choice.keys)
        if len(self.outcomes[method]) == self.budget[method] and method not in self.best:
            self._end_search(method)

    def _end_search(self, method: str) -> None:
        recorded = read_choices(self.choices).get(method)
        if recorded is not None:  # made before a killed driver: its final runs may exist already
            run, best = recorded["run"], recorded["values"]
            front = {point["run"]: point["values"] for point in recorded.get("front", [])}
            mine = self._sampled_at(method, run)
            if run is not None and mine != best:
                write(
                    f"search {method}: keeping the choice on record in {self.choices} (search trial {run}, {best}) "
                    f"over this searcher's own values for it ({mine}): the final runs retrain what the record names, "
                    "and some may exist already"
                )
        else:
            outcomes = self.outcomes[method]
            selection = self.choice.select(method, [outcomes[i] for i in range(len(outcomes))], self.sampled[method])
            chosen = selection.reference
            run, best = (None, None) if chosen is None else (str(chosen), self.sampled[method][chosen])
            front = {str(i): self.sampled[method][i] for i in selection.front}
            if self.choices is not None:
                record_choice(self.choices, method, run, best, front)
        self.best[method] = best
        self.chosen[method] = run
        self.front[method] = list(front)
        runs = [] if best is None else self.final_runs(method, best)
        if self.front_runs is not None:
            runs += [trial for point, values in front.items() for trial in self.front_runs(method, point, values)]
        self.queued.extend(runs)
        seconds = self.run_seconds
        self.queued.sort(key=lambda queued: -seconds[queued.method])  # stable: each method's T order stays
        points = f" and {len(front)} more front point(s)" if front else ""
        write(f"search {method}: done, best {best}{points}; {len(runs)} final run(s) queued")

    def _sampled_at(self, method: str, run: str | None) -> dict[str, Any] | None:
        """The values this searcher sampled for search trial `run` of `method`, if it did."""
        index = int(run) if run is not None and run.isdigit() else -1
        return self.sampled[method][index] if 0 <= index < len(self.sampled[method]) else None

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))  # noqa: S301 - Tune's own state file, as OptunaSearch does
        # A state saved before final runs were `PlannedTrial`s queued them as Tune configs.
        self.queued = [run if isinstance(run, PlannedTrial) else PlannedTrial.from_tune(run) for run in self.queued]


def expected_run_seconds(outcomes: Iterable[tuple[Mapping[str, Any] | None, bool]]) -> float:
    """The expected length of a method's final run, from its search trials' `(last_result, errored)`:
    their mean seconds per epoch (Tune's `time_total_s` over the trial's epoch) times the most
    epochs any of them reached; 0.0 when none reported a time."""
    results = [result for result, _ in outcomes if result]
    per_epoch = [
        float(result["time_total_s"]) / result[EPOCH_KEY]
        for result in results
        if result.get("time_total_s") and result.get(EPOCH_KEY)
    ]
    if not per_epoch:
        return 0.0
    return sum(per_epoch) / len(per_epoch) * max(int(result.get(EPOCH_KEY, 0)) for result in results)


def read_choices(path: Path | None) -> dict[str, dict[str, Any]]:
    """The choices on record in `path`: per method, `run` (the chosen search index, or None when
    no search trial qualified) and `values` (its sampled values).

    Raises:
        DamagedState: the file does not read back whole, or is not a record of choices.
    """
    if path is None or not path.exists():
        return {}
    choices = read_json(path, "the record of each method's chosen search trial")

    def point(choice: Any) -> bool:
        return (
            isinstance(choice, dict)
            and (choice["run"] is None or isinstance(choice["run"], str))
            and (choice["values"] is None or isinstance(choice["values"], dict))
        )

    whole = isinstance(choices, dict) and all(
        isinstance(choice, dict)
        and set(choice) - {"front"} == {"run", "values"}
        and point(choice)
        and all(set(p) == {"run", "values"} and point(p) for p in choice.get("front", []))
        for choice in choices.values()
    )
    if not whole:
        raise DamagedState(f"{path}: the record of each method's chosen search trial is damaged; {FRESH_START}")
    return choices


def record_choice(
    path: Path,
    method: str,
    run: str | None,
    values: Mapping[str, Any] | None,
    front: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Adds `method`'s choice to `path`, written whole (a temporary file renamed); a choice on
    record is never replaced (`SweepSearcher` keeps it). A Pareto search's choice also lists the
    other `front` points its final stage retrains (search index -> values)."""
    choices = read_choices(path)
    if method in choices:
        return
    choice: dict[str, Any] = {"run": run, "values": None if values is None else dict(values)}
    if front:
        choice["front"] = [{"run": point, "values": dict(v)} for point, v in front.items()]
    write_json_atomically(path, choices | {method: choice})


def make_searcher(plan: SweepPlan, folder: Path | None = None, gate: TeacherGate | None = None) -> SweepSearcher:
    """The sweep's searcher: per method a seeded `OptunaSearch` over its dims (None when it
    samples nothing), its budget and its final runs; with the sweep's `folder`, the mirror of its
    studies (`STUDY_FILE`) and the record of its choices (`CHOICES_FILE`) there."""
    from ray.tune.search.optuna import OptunaSearch

    search = plan.space.search

    def optuna_search(method_plan: MethodPlan) -> OptunaSearch | None:
        if not method_plan.dims:
            return None
        sampler = (  # one study per method, each seeded alike: a method's draws do not depend on the others
            optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)
            if search.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=search.seed)
        )
        return OptunaSearch(
            space=DefineByRun(method_plan.distributions()), metric=choice.keys, mode=choice.modes, sampler=sampler
        )

    choice = make_choice(plan)
    metric, mode = search.primary
    return SweepSearcher(
        searchers={p.method: optuna_search(p) for p in plan.methods},
        budget={p.method: search_budget(p, plan.space) for p in plan.methods},
        final_runs=partial(final_runs, plan),
        metric=metric,
        mode=mode,
        trial_settings={p.method: trial_settings(p, search.trial_evaluation) for p in plan.methods},
        mirror=None
        if folder is None
        else StudyMirror(
            f"sqlite:///{folder / STUDY_FILE}", {p.method: p.distributions() for p in plan.methods}, choice.modes
        ),
        gate=gate,
        choices=None if folder is None else folder / CHOICES_FILE,
        choice=choice,
        front_runs=partial(front_runs, plan) if search.pareto else None,
    )


def trial_settings(plan: MethodPlan, evaluation: str) -> dict[str, Any]:
    """What a search trial of `plan` sets besides its samples: with `clean` evaluation, no noise, no
    attacks and the reference T as the only T of the curve."""
    if evaluation == "full":
        return {}
    return {"eval.noise": {}, "eval.attacks": {}, "eval.time_steps": [plan.config.eval.reference_time_steps]}
