"""Early stopping that keeps methods apart: each method's search trials go to its own ASHA.

`MethodScheduler` routes each search trial to its method's scheduler (ASHA on epochs), so a KD
trial is never stopped for being worse than a direct one, and lets final runs train to the end.
Tune does not save a scheduler with the experiment; `SchedulerState`, a callback, saves and
restores its methods' ASHA state with it, so a resumed search prunes against the rungs it had.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from harness.contract import Role
from harness.sweep.plan import SweepPlan
from harness.sweep.protocol import EPOCH_KEY, PlannedTrial


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
        if not PlannedTrial.in_tune(trial.config):
            return None
        planned = PlannedTrial.from_tune(trial.config)
        return self.schedulers.get(planned.method) if planned.role == Role.TRIAL else None

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
            metric=search.primary[0],  # a Pareto search's primary objective: ASHA stops on accuracy alone
            mode=search.primary[1],
            max_t=epochs,
            grace_period=min(search.scheduler.grace_period, epochs),
            reduction_factor=search.scheduler.reduction_factor,
        )
    return MethodScheduler(schedulers)
