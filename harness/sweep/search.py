"""One Tune experiment for the whole sweep: a searcher and a scheduler that keep methods apart.

Every method gets its own Optuna study (TPE over only its dims) and its own ASHA brackets, so
methods never compete in a study or a rung; but all their trials share one Tune experiment,
so a slot freed by one method's last trial runs another method's trial instead of idling
until a stage ends. `SweepSearcher` hands out each method's search trials (round-robin) and,
the moment a method's search is complete, its final runs; `MethodScheduler` routes each search
trial to its method's ASHA and lets final runs train to the end.

The order is chosen for a short tail: a pending search trial goes before any final run (a
search that ends late would queue its final runs last), and the final runs waiting go longest
first, a method's runs by the time its search trials took (seconds per epoch times the epochs
they reached), and within a method largest T first (`final_runs`).

Every trial's config carries `method`, `role` (`trial` for the search, `final`) and `run`, its
identity in the plan: the search index within its method, or the seed and T of a final run. A
trial re-issued after a crash (the searcher restored to its last save) has the same identity, so
it finds its MLflow run and its checkpoints again.

Each method's study is mirrored, trial by trial as they end, into a SQLite Optuna study named
after the method (`<storage>/<sweep>/optuna.db`), which optuna-dashboard and
`optuna.visualization` read. The search itself runs on the in-memory study that Tune saves with
the experiment; the mirror holds each ended search trial once (keyed by its identity), so it
stays whole and without duplicates across `--resume`. Each method's ASHA is saved with the
experiment too (`SchedulerState`), so a resumed search prunes against the rungs it had.

Tune saves the searcher only now and then, so after a killed driver the saved one can be older
than the final runs that already ran. The choice of each method's best trial is therefore
written the moment it is made (`<storage>/<sweep>/choices.json`), and a choice on record stands:
a resumed search that ends again (its last trial rerun, perhaps pruned differently by an older
ASHA state) retrains the configuration whose final runs exist, not a new one.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from harness.contract import Role
from harness.progress import write
from harness.sweep.final import final_runs
from harness.sweep.plan import MethodPlan, SweepPlan, search_budget
from harness.sweep.workers import EPOCH_KEY, FAILURE_KEY, ROLE_KEY, RUN_KEY
from harness.teacher import TEACHER_FAILED

STUDY_FILE = "optuna.db"  # the mirrored Optuna studies, in the sweep's folder
CHOICES_FILE = "choices.json"  # each method's chosen search trial, in the sweep's folder
RUN_ATTR = "harness_run"  # the mirrored trial's identity (its search index)


def optuna_distributions(dims: Mapping[str, Mapping[str, Any]]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions of `dims` (the YAML form), as `DefineByRun` samples them."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, dist in dims.items():
        if "categorical" in dist:
            out[key] = optuna.distributions.CategoricalDistribution(list(dist["categorical"]))
        elif "int" in dist:
            low, high = dist["int"]
            out[key] = optuna.distributions.IntDistribution(
                low, high, log=dist.get("log", False), step=int(dist.get("step") or 1)
            )
        else:
            low, high = dist["float"]
            out[key] = optuna.distributions.FloatDistribution(
                low, high, log=dist.get("log", False), step=dist.get("step")
            )
    return out


class StudyMirror:
    """Per method, an Optuna study in SQLite holding each ended search trial once.

    Args:
        storage: `sqlite:///<path>` of the studies.
        dims: per method, its dims in the YAML form.
        mode: "max" or "min" (the studies' direction).
    """

    def __init__(self, storage: str, dims: Mapping[str, Mapping[str, Mapping[str, Any]]], mode: str) -> None:
        self.storage, self.mode = storage, mode
        self.dims = {method: dict(d) for method, d in dims.items()}

    def record(self, method: str, run: str, values: Mapping[str, Any], result: Mapping | None, metric: str) -> None:
        """Adds search trial `run` of `method` (COMPLETE, PRUNED or FAIL) unless it is there already."""
        study = optuna.create_study(
            storage=self.storage,
            study_name=method,
            direction="maximize" if self.mode == "max" else "minimize",
            load_if_exists=True,
        )
        if any(trial.user_attrs.get(RUN_ATTR) == run for trial in study.get_trials(deepcopy=False)):
            return
        result = result or {}
        value = result.get(metric)
        complete = "test_accuracy" in result and value is not None and FAILURE_KEY not in result
        failed = value is None or FAILURE_KEY in result or not _finite(value)
        state = (
            optuna.trial.TrialState.COMPLETE
            if complete and not failed
            else optuna.trial.TrialState.FAIL
            if failed
            else optuna.trial.TrialState.PRUNED
        )
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=None if state == optuna.trial.TrialState.FAIL else float(value),
                params=dict(values),
                distributions=optuna_distributions(self.dims[method]),
                user_attrs={RUN_ATTR: run, "epochs": int(result.get(EPOCH_KEY, 0))},
            )
        )


def _finite(value: Any) -> bool:
    try:
        return float(value) not in (float("inf"), float("-inf")) and float(value) == float(value)
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class TeacherGate:
    """Per method, the teacher files its trials wait for. A teacher whose training failed
    (`TEACHER_FAILED` beside it) opens the gate too: the trial then fails with the teacher's error."""

    files: dict[str, tuple[str, ...]]

    def ready(self, method: str) -> bool:
        """Whether every teacher of `method` is cached (or has failed)."""
        return all(Path(f).exists() or Path(f).with_name(TEACHER_FAILED).exists() for f in self.files.get(method, ()))


class DefineByRun:
    """An Optuna define-by-run space sampling exactly `dims` (no computation inside).

    A class rather than a closure: Tune pickles the searcher with the experiment state.
    """

    def __init__(self, dims: Mapping[str, Mapping[str, Any]]) -> None:
        self.dims = {key: dict(dist) for key, dist in dims.items()}

    def __call__(self, trial: optuna.Trial) -> None:
        for key, dist in self.dims.items():
            if "categorical" in dist:
                trial.suggest_categorical(key, list(dist["categorical"]))
            elif "int" in dist:
                low, high = dist["int"]
                trial.suggest_int(key, low, high, log=dist.get("log", False), step=int(dist.get("step") or 1))
            else:
                low, high = dist["float"]
                trial.suggest_float(key, low, high, log=dist.get("log", False), step=dist.get("step"))


def pick_best(candidates: Iterable[tuple[Mapping[str, Any] | None, bool]], metric: str, mode: str) -> int | None:
    """Index of the best `(last_result, errored)` candidate: trials that ran every epoch (they
    carry `test_accuracy`) before pruned ones, then by `metric`; ties keep the earliest.
    Errored, failed and metric-less candidates never win; None when none qualifies."""
    best: tuple[tuple[bool, float], int] | None = None
    for index, (metrics, errored) in enumerate(candidates):
        if errored or not metrics or metric not in metrics or FAILURE_KEY in metrics:
            continue
        key = ("test_accuracy" in metrics, metrics[metric] if mode == "max" else -metrics[metric])
        if best is None or key > best[0]:
            best = (key, index)
    return None if best is None else best[1]


class SweepSearcher(Searcher):
    """Search trials of every method (each from its own `OptunaSearch`), then final runs.

    Args:
        searchers: per method, in sweep order, its Optuna searcher, or None when the method
            searches nothing (it then runs one trial of its fixed config).
        budget: search trials per method.
        final_runs: `final_runs(method, best)` -> the configs of the final runs that retrain
            `best` (the chosen trial's sampled values), each with its identity under `run`;
            must pickle (Tune saves the searcher).
        metric, mode: the search objective.
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
        final_runs: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
        metric: str,
        mode: str,
        mirror: StudyMirror | None = None,
        gate: TeacherGate | None = None,
        trial_settings: Mapping[str, Mapping[str, Any]] | None = None,
        choices: Path | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
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
        self.queued: list[dict[str, Any]] = []  # final runs not yet handed out
        self.best: dict[str, dict[str, Any] | None] = {}  # per method whose search is complete
        self.chosen: dict[str, str | None] = {}  # the identity (`run`) of that best configuration
        self.turn = 0

    @classmethod
    def saved(cls, folder: str | Path) -> SweepSearcher:
        """The searcher as Tune last saved it with the experiment in `folder`: the one record of
        which trial each method chose (its final runs retrain that one) and of what is left."""
        searcher = cls.__new__(cls)
        searcher.restore_from_dir(str(folder))
        return searcher

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
            return self.queued.pop(0)
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
        return {**settings, **values, "method": method, ROLE_KEY: Role.TRIAL.value, RUN_KEY: str(index)}

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
            searcher.on_trial_complete(trial_id, result=result, error=error)
        self.outcomes[method][index] = (result, error)
        if self.mirror is not None and self.searchers[method] is not None:
            self.mirror.record(method, str(index), self.sampled[method][index], None if error else result, self.metric)
        if len(self.outcomes[method]) == self.budget[method] and method not in self.best:
            self._end_search(method)

    def _end_search(self, method: str) -> None:
        recorded = read_choices(self.choices).get(method)
        if recorded is not None:  # made before a killed driver: its final runs may exist already
            run, best = recorded["run"], recorded["values"]
        else:
            outcomes = self.outcomes[method]
            chosen = pick_best((outcomes[i] for i in range(len(outcomes))), self.metric, self.mode)
            run, best = (None, None) if chosen is None else (str(chosen), self.sampled[method][chosen])
            if self.choices is not None:
                record_choice(self.choices, method, run, best)
        self.best[method] = best
        self.chosen[method] = run
        runs = [] if best is None else self.final_runs(method, best)
        self.queued.extend({**run, "method": method, ROLE_KEY: Role.FINAL.value} for run in runs)
        seconds = self.run_seconds
        self.queued.sort(key=lambda queued: -seconds[queued["method"]])  # stable: each method's T order stays
        write(f"search {method}: done, best {best}; {len(runs)} final run(s) queued")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))  # noqa: S301 - Tune's own state file, as OptunaSearch does


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
    """The choices on record in `path`: per method, `run` (the chosen search index) and `values`."""
    if path is None or not path.exists():
        return {}
    return json.loads(path.read_text())


def record_choice(path: Path, method: str, run: str | None, values: Mapping[str, Any] | None) -> None:
    """Adds `method`'s choice to `path`, written whole (a temporary file renamed)."""
    choices = read_choices(path) | {method: {"run": run, "values": None if values is None else dict(values)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(choices, indent=1, sort_keys=True))
    os.replace(scratch, path)


class MethodScheduler(FIFOScheduler):
    """Routes each search trial to its method's scheduler (ASHA); final runs always continue.

    Tune does not save a scheduler with the experiment; `SchedulerState`, a callback, saves and
    restores its methods' ASHA state with it, so a resumed search keeps its rungs.

    Args:
        schedulers: per method, the scheduler of its search trials.
    """

    def __init__(self, schedulers: Mapping[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = dict(schedulers)

    def _of(self, trial: Any) -> TrialScheduler | None:
        config = trial.config
        return self.schedulers.get(config.get("method")) if config.get(ROLE_KEY) == Role.TRIAL else None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # every method's scheduler was built with the metric and mode

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        scheduler = self._of(trial)
        return (
            TrialScheduler.CONTINUE if scheduler is None else scheduler.on_trial_result(tune_controller, trial, result)
        )

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{method}: {s.debug_string()}" for method, s in self.schedulers.items())

    def state(self) -> dict[str, bytes]:
        """Each method's scheduler state, pickled (ASHA's brackets and rungs)."""
        return {method: pickle.dumps(scheduler.__dict__) for method, scheduler in self.schedulers.items()}

    def load_state(self, state: Mapping[str, bytes]) -> None:
        """Restores what `state` returned."""
        for method, saved in state.items():
            if method in self.schedulers:
                self.schedulers[method].__dict__.update(pickle.loads(saved))  # noqa: S301 - our own saved state


class SchedulerState(tune.Callback):
    """Saves `MethodScheduler`'s state with the experiment and restores it on `--resume`.

    Tune pickles the tuner (scheduler and callbacks together, so this callback and the
    restored scheduler are the same objects again) and calls `get_state` / `set_state` with
    each experiment checkpoint.
    """

    def __init__(self, scheduler: MethodScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {"schedulers": self.scheduler.state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state(state.get("schedulers", {}))


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
            space=DefineByRun(method_plan.sampler_dims()), metric=search.metric, mode=search.mode, sampler=sampler
        )

    return SweepSearcher(
        searchers={p.method: optuna_search(p) for p in plan.methods},
        budget={p.method: search_budget(p, plan.space) for p in plan.methods},
        final_runs=partial(final_runs, plan),
        metric=search.metric,
        mode=search.mode,
        trial_settings={p.method: trial_settings(p, search.trial_evaluation) for p in plan.methods},
        mirror=None
        if folder is None
        else StudyMirror(
            f"sqlite:///{folder / STUDY_FILE}", {p.method: p.sampler_dims() for p in plan.methods}, search.mode
        ),
        gate=gate,
        choices=None if folder is None else folder / CHOICES_FILE,
    )


def trial_settings(plan: MethodPlan, evaluation: str) -> dict[str, Any]:
    """What a search trial of `plan` sets besides its samples: with `clean` evaluation, no noise and
    the reference T as the only T of the curve."""
    if evaluation == "full":
        return {}
    return {"eval.noise": {}, "eval.time_steps": [plan.config.eval.reference_time_steps]}


def make_scheduler(plan: SweepPlan) -> MethodScheduler:
    """The sweep's scheduler: an ASHA on epochs per method (none with `scheduler.name: none`)."""
    from ray.tune.schedulers import ASHAScheduler

    search = plan.space.search
    if search.scheduler.name != "asha":
        return MethodScheduler({})
    schedulers = {}
    for method_plan in plan.methods:
        epochs = method_plan.config.train.epochs
        schedulers[method_plan.method] = ASHAScheduler(
            time_attr=EPOCH_KEY,  # the trial's own epoch: right also for a trial resumed from its checkpoint
            metric=search.metric,
            mode=search.mode,
            max_t=epochs,
            grace_period=min(search.scheduler.grace_period, epochs),
            reduction_factor=search.scheduler.reduction_factor,
        )
    return MethodScheduler(schedulers)


__all__ = [
    "DefineByRun",
    "MethodScheduler",
    "SchedulerState",
    "StudyMirror",
    "SweepSearcher",
    "make_scheduler",
    "make_searcher",
    "pick_best",
]
