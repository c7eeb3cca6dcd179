"""How a search's ended trials become what the final stage retrains: one best configuration, or a
Pareto front.

`SingleObjective` (`search.metric`, `search.mode`) picks the best trial, as it always has.
`ParetoFront` (`search.objectives`) is the multi-objective search:

- Each method's Optuna study is multi-objective (its `OptunaSearch` gets the objectives' result
  keys and modes as lists). A trial's objectives are read from its last result: `val_accuracy`
  (or `train_loss`), the efficiency figures counted on the validation split after its last epoch
  (`energy_uj` -> `val/energy_uj`, `harness.contract.objective_result_key`), and config keys from
  its resolved config (`snn.time_steps`), so no test data steer the search.
- A trial that lacks one (ASHA stopped it before its last epoch, where the costs are counted) is
  told to Optuna as pruned and is not on the front; one that failed, as failed.
- When a method's search ends, its front is the non-dominated set of its measured trials
  (`harness.pareto`). Its *reference configuration* is the front point whose T is closest to
  `eval.reference_time_steps`, the best in the primary objective among equals: it gets the full
  final stage (`final_repeats` seeds; the report's paired KD-versus-baseline intervals). Up to
  `search.final_front - 1` other front points, spread along the front in the primary objective,
  are retrained too, each at its own T over the first `search.front_repeats` final seeds
  (`Role.FRONT` runs, `front_runs`), for the report's Pareto table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.contract import Role, objective_result_key
from harness.pareto import closest_to, non_dominated, spread_along_front
from harness.sweep.final import final_seeds
from harness.sweep.plan import SweepPlan
from harness.sweep.protocol import FAILURE_KEY, TRAINED_T, PlannedTrial

Outcome = tuple[Mapping[str, Any] | None, bool]
"""A search trial's (last result, errored)."""


@dataclass(frozen=True)
class Selection:
    """What a method's final stage retrains: the search index of its reference (best) trial, or
    None when no trial qualified, and the other front points' indices (empty for one objective)."""

    reference: int | None
    front: tuple[int, ...] = ()


def complete(result: Mapping[str, Any] | None, errored: bool) -> bool:
    """A trial that ran every epoch and its final evaluation (it carries `test_accuracy`)."""
    return bool(result) and not errored and FAILURE_KEY not in result and "test_accuracy" in result


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


@dataclass(frozen=True)
class SingleObjective:
    """One objective: the best trial (`pick_best`)."""

    metric: str
    mode: str

    @property
    def keys(self) -> str:
        """What the method's `OptunaSearch` reads: the metric."""
        return self.metric

    @property
    def modes(self) -> str:
        return self.mode

    def for_optuna(self, method: str, sampled: Mapping[str, Any], result: Mapping[str, Any] | None) -> Any:
        return result

    def select(self, method: str, outcomes: Sequence[Outcome], sampled: Sequence[Mapping[str, Any]]) -> Selection:
        return Selection(pick_best(outcomes, self.metric, self.mode))


@dataclass(frozen=True)
class ParetoFront:
    """Several objectives (see the module docstring). Pickles with the searcher (Tune saves it)."""

    plan: SweepPlan
    objectives: Mapping[str, str]

    @property
    def primary(self) -> str:
        return next(iter(self.objectives))

    @property
    def keys(self) -> list[str]:
        """The result keys the method's multi-objective `OptunaSearch` reads, in order."""
        return [objective_result_key(name) for name in self.objectives]

    @property
    def modes(self) -> list[str]:
        return list(self.objectives.values())

    def measure(self, method: str, sampled: Mapping[str, Any], result: Mapping[str, Any] | None) -> dict[str, float]:
        """The trial's objectives by name (those it lacks left out): its result's, and the config
        keys' values from its resolved config."""
        result = result or {}
        config_keys = [name for name in self.objectives if objective_result_key(name) not in result]
        flat = self.plan.of(method).trial_config(sampled).flat() if config_keys else {}
        measured: dict[str, float] = {}
        for name in self.objectives:
            value = result.get(objective_result_key(name), flat.get(name))
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                measured[name] = float(value)
        return measured

    def for_optuna(self, method: str, sampled: Mapping[str, Any], result: Mapping[str, Any] | None) -> Any:
        """The result the method's `OptunaSearch` is told: every objective's result key, or None
        (pruned) when the trial lacks one; a failed trial's own result (Optuna records it failed)."""
        if not result or FAILURE_KEY in result:
            return result
        measured = self.measure(method, sampled, result)
        if len(measured) < len(self.objectives):
            return None
        return {**result, **{objective_result_key(name): value for name, value in measured.items()}}

    def points(self, method: str, outcomes: Sequence[Outcome], sampled: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Per search trial, its objectives (empty unless it is complete and has them all)."""
        points = []
        for (result, errored), values in zip(outcomes, sampled, strict=True):
            measured = self.measure(method, values, result) if complete(result, errored) else {}
            points.append(measured if len(measured) == len(self.objectives) else {})
        return points

    def time_steps(self, method: str, values: Mapping[str, Any]) -> int:
        """The T a configuration is evaluated at: its own for a method that trains at a T, else the reference T."""
        method_plan = self.plan.of(method)
        if not method_plan.capabilities.trains_at_time_steps:
            return method_plan.config.eval.reference_time_steps
        return int(method_plan.trial_config(values).snn.time_steps)

    def select(self, method: str, outcomes: Sequence[Outcome], sampled: Sequence[Mapping[str, Any]]) -> Selection:
        points = self.points(method, outcomes, sampled)
        front = non_dominated(points, self.objectives)
        if not front:
            return Selection(None)
        with_t = [{**p, TRAINED_T: float(self.time_steps(method, v))} for p, v in zip(points, sampled, strict=True)]
        reference_t = self.plan.of(method).config.eval.reference_time_steps
        primary = self.primary
        reference = closest_to(with_t, front, TRAINED_T, reference_t, primary, self.objectives[primary])
        # A configuration sampled twice is one front point: retrain it once.
        seen = [dict(sampled[reference])]
        others = []
        for i in front:
            if dict(sampled[i]) not in seen:
                seen.append(dict(sampled[i]))
                others.append(i)
        keep = self.plan.space.search.final_front - 1
        spread = spread_along_front(points, others, self.objectives, keep, primary) if others and keep > 0 else []
        return Selection(reference, tuple(spread))


def make_choice(plan: SweepPlan) -> SingleObjective | ParetoFront:
    """The sweep's way of choosing what the final stage retrains."""
    search = plan.space.search
    if search.objectives is None:
        return SingleObjective(search.metric, search.mode)
    return ParetoFront(plan, dict(search.objectives))


FRONT_PREFIX = "p"


def front_run_id(point: int | str, seed: int) -> str:
    """`p3-s1`: the front point (search index 3) retrained with seed 1."""
    return f"{FRONT_PREFIX}{point}-s{seed}"


def front_point_of(run: str) -> str:
    """The search index a front run retrains (`p3-s1` -> `3`)."""
    return run.split("-", 1)[0].removeprefix(FRONT_PREFIX)


def front_runs(plan: SweepPlan, method: str, point: int | str, values: Mapping[str, Any]) -> list[PlannedTrial]:
    """The runs that retrain front point `point` (its sampled `values`), each at its own T, over
    the first `search.front_repeats` final seeds."""
    method_plan = plan.of(method)
    seeds = final_seeds(plan.space, method_plan.config.seed)[: plan.space.search.front_repeats]
    return [PlannedTrial(method, Role.FRONT, front_run_id(point, seed), {**values, "seed": seed}) for seed in seeds]


def final_stage(plan: SweepPlan, method: str, choice: Mapping[str, Any] | None) -> list[PlannedTrial]:
    """Every run the final stage makes for `method` from its choice on record (`choices.json`):
    the final runs of its best (reference) configuration, then the runs of its other front points."""
    from harness.sweep.final import final_runs

    if not choice or choice.get("values") is None:
        return []
    runs = final_runs(plan, method, choice["values"])
    for point in choice.get("front", []):
        runs += front_runs(plan, method, point["run"], point["values"])
    return runs
