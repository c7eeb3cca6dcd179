"""One Tune experiment for the whole sweep: a searcher and a scheduler that keep methods apart.

Every method gets its own Optuna study (TPE over only its dims) and its own ASHA brackets, so
methods never compete in a study or a rung; but all their trials share one Tune experiment,
so a slot freed by one method's last trial runs another method's trial instead of idling
until a stage ends. `SweepSearcher` hands out each method's search trials (round-robin) and,
the moment a method's search is complete, its final runs (longest first); `MethodScheduler`
routes each search trial to its method's ASHA and lets final runs train to the end.

Every trial's config carries `method` and `role` (`trial` for the search, `final`).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from harness.contract import Role
from harness.sweep.final import final_runs
from harness.sweep.plan import MethodPlan, SweepPlan, search_budget
from harness.sweep.workers import FAILURE_KEY, ROLE_KEY


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
            `best` (the chosen trial's sampled values); must pickle (Tune saves the searcher).
        metric, mode: the search objective.
    """

    def __init__(
        self,
        searchers: Mapping[str, Searcher | None],
        budget: Mapping[str, int],
        final_runs: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
        metric: str,
        mode: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.methods = list(searchers)
        self.searchers = dict(searchers)
        self.budget = dict(budget)
        self.final_runs = final_runs
        self.sampled: dict[str, list[dict[str, Any]]] = {m: [] for m in self.methods}  # in suggestion order
        self.outcomes: dict[str, dict[int, tuple[dict | None, bool]]] = {m: {} for m in self.methods}
        self.trials: dict[str, tuple[str, int]] = {}  # search trial id -> (method, suggestion index)
        self.queued: list[dict[str, Any]] = []  # final runs not yet handed out
        self.best: dict[str, dict[str, Any] | None] = {}  # per method whose search is complete
        self.chosen: dict[str, str | None] = {}  # the trial id of that best configuration
        self.turn = 0

    @classmethod
    def saved(cls, folder: str | Path) -> SweepSearcher:
        """The searcher as Tune last saved it with the experiment in `folder`: the one record of
        which trial each method chose (its final runs retrain that one) and of what is left."""
        searcher = cls.__new__(cls)
        searcher.restore_from_dir(str(folder))
        return searcher

    @property
    def done(self) -> bool:
        """Every method's search has ended and every final run has been handed out."""
        return len(self.best) == len(self.methods) and not self.queued

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # set at construction, as every sub-searcher's

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.queued:
            return self.queued.pop(0)
        for _ in self.methods:
            method = self.methods[self.turn % len(self.methods)]
            self.turn += 1
            if len(self.sampled[method]) < self.budget[method]:
                return self._suggest_search(method, trial_id)
        if len(self.best) == len(self.methods):
            return Searcher.FINISHED
        return None  # a search still runs; its final runs come when it ends

    def _suggest_search(self, method: str, trial_id: str) -> dict[str, Any] | None:
        searcher = self.searchers[method]
        values = {} if searcher is None else searcher.suggest(trial_id)
        if values is None:
            self.turn -= 1  # ask the same method again next time
            return None
        self.trials[trial_id] = (method, len(self.sampled[method]))
        self.sampled[method].append(dict(values))
        return {**values, "method": method, ROLE_KEY: Role.TRIAL.value}

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
        if len(self.outcomes[method]) == self.budget[method] and method not in self.best:
            self._end_search(method)

    def _end_search(self, method: str) -> None:
        outcomes = self.outcomes[method]
        chosen = pick_best((outcomes[i] for i in range(len(outcomes))), self.metric, self.mode)
        best = None if chosen is None else self.sampled[method][chosen]
        self.best[method] = best
        ids = {index: trial_id for trial_id, (m, index) in self.trials.items() if m == method}
        self.chosen[method] = None if chosen is None else ids[chosen]
        runs = [] if best is None else self.final_runs(method, best)
        self.queued.extend({**run, "method": method, ROLE_KEY: Role.FINAL.value} for run in runs)
        print(f"search {method}: done, best {best}; {len(runs)} final run(s) queued", file=sys.stderr, flush=True)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))  # noqa: S301 - Tune's own state file, as OptunaSearch does


class MethodScheduler(FIFOScheduler):
    """Routes each search trial to its method's scheduler (ASHA); final runs always continue.

    Tune does not save a scheduler with the experiment: after `--resume` each method's ASHA
    starts with empty rungs, so the search trials still to run are compared only with each
    other (none is pruned against the trials that ended before the interruption).

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


def make_searcher(plan: SweepPlan) -> SweepSearcher:
    """The sweep's searcher: per method a seeded `OptunaSearch` over its dims (None when it
    samples nothing), its budget, and its final runs."""
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
    )


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
            time_attr="training_iteration",
            metric=search.metric,
            mode=search.mode,
            max_t=epochs,
            grace_period=min(search.scheduler.grace_period, epochs),
            reduction_factor=search.scheduler.reduction_factor,
        )
    return MethodScheduler(schedulers)


__all__ = ["DefineByRun", "MethodScheduler", "SweepSearcher", "make_scheduler", "make_searcher", "pick_best"]
