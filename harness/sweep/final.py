"""The final stage: each method's chosen configuration retrained over new seeds (and T values).

A method that trains at a T (`Capabilities.trains_at_time_steps`) is retrained at the reference
T, at `search.final_time_steps` (default: every `eval.time_steps`) and at its search's best T;
any other method once, at the reference T (its curve is read off that run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config.space import SpaceFile
from harness.contract import Role
from harness.sweep.plan import MethodPlan, SweepPlan, search_budget
from harness.sweep.protocol import TRAINED_T, PlannedTrial


def final_seeds(space: SpaceFile, base_seed: int) -> list[int]:
    """Seeds of the final stage: `final_repeats` seeds after the search's own."""
    return [base_seed + 1 + k for k in range(space.search.final_repeats)]


def final_time_steps(plan: MethodPlan, space: SpaceFile, best: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """T values the final stage trains `plan`'s method at (see the module docstring)."""
    reference = plan.config.eval.reference_time_steps
    if not plan.capabilities.trains_at_time_steps:
        return (reference,)
    extra = space.search.final_time_steps
    steps = {reference, *(plan.config.eval.time_steps if extra is None else extra)}
    if best is not None and TRAINED_T in best:
        steps.add(int(best[TRAINED_T]))
    return tuple(sorted(steps))


def final_runs(plan: SweepPlan, method: str, best: Mapping[str, Any]) -> list[PlannedTrial]:
    """The final runs that retrain `best` (a method's chosen sampled values): one per seed of
    `final_seeds` and T of `final_time_steps`, longest (largest T) first so that the
    schedule's tail is short. Each one's `run` is `s<seed>`, or `s<seed>-T<T>`."""
    method_plan = plan.of(method)
    seeds = final_seeds(plan.space, method_plan.config.seed)
    if not method_plan.capabilities.trains_at_time_steps:
        return [PlannedTrial(method, Role.FINAL, f"s{seed}", {**best, "seed": seed}) for seed in seeds]
    steps = sorted(final_time_steps(method_plan, plan.space, best), reverse=True)
    return [
        PlannedTrial(method, Role.FINAL, f"s{seed}-T{t}", {**best, TRAINED_T: t, "seed": seed})
        for t in steps
        for seed in seeds
    ]


def final_run_count(plan: MethodPlan, space: SpaceFile, best: Mapping[str, Any] | None = None) -> int:
    """How many final runs a method gets: seeds x the T values it trains at."""
    return space.search.final_repeats * len(final_time_steps(plan, space, best))


def describe_plan(plan: SweepPlan) -> str:
    """A short human-readable plan (what `harness validate` prints): budgets and final runs."""
    search = plan.space.search
    lines = [f"sweep {plan.space.name!r} from {plan.source}"]
    for method_plan in plan.methods:
        dims = ", ".join(method_plan.dims) or "nothing (one trial of its fixed config)"
        lines.append(
            f"  {method_plan.method}: {_count(search_budget(method_plan, plan.space), 'trial')}, searching {dims}"
        )
    finals = sum(final_run_count(method_plan, plan.space) for method_plan in plan.methods)
    total = sum(search_budget(method_plan, plan.space) for method_plan in plan.methods) + finals
    if search.objectives is not None:
        front = len(plan.methods) * (search.final_front - 1) * min(search.front_repeats, search.final_repeats)
        objectives = ", ".join(f"{name} ({direction})" for name, direction in search.objectives.items())
        lines.append(
            f"  Pareto search of {objectives}; up to {search.final_front - 1} more front point(s) per method retrained "
            f"on {_count(min(search.front_repeats, search.final_repeats), 'seed')} (up to {_count(front, 'run')})"
        )
        total += front
    lines.append(
        f"  final stage: {_count(search.final_repeats, 'seed')} per method and T ({_count(finals, 'run')}, more if a "
        f"search's best T is another); {_count(total, 'trial')} in all"
    )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
