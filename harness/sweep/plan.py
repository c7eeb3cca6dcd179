"""A validated sweep: per method its resolved `TrialConfig`, its dims and its capabilities.

The plan is the one place a sweep's trial configs come from: a `PlannedTrial`
(`harness.sweep.protocol`) resolves against it, in the workers and in the driver's callback.
It is also what `--resume` must find unchanged (`plan.json` in the sweep's folder).
`plan_sweep` checks everything `harness validate` promises before anything runs: the file, the
trials it makes, each method's preflight, and the dataset's files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.dotted import flatten
from harness.config.resolve import check_dataset_files, resolve, trial_config
from harness.config.sections import TrialConfig
from harness.config.space import EPOCH_METRICS, Distribution, SpaceFile, load_space, trial_overrides
from harness.contract import COST_METRICS, Capabilities
from harness.errors import HarnessInputError
from harness.files import FRESH_START, DamagedState, read_json, write_json_atomically
from harness.methods.base import METHODS, read_sections, uses_teacher

PLAN_FILE = "plan.json"  # the resolved plan of the sweep in its folder; --resume must match it


@dataclass(frozen=True)
class MethodPlan:
    """What the sweep runs for one method.

    Attributes:
        method: The method's registered name.
        config: Its resolved fixed config (the space's `fixed`, `eval` and `--set`).
        dims: The searched dimensions it samples: those of `space:` in the sections it reads.
        capabilities: What the method declares (teacher, training T, report rows).
    """

    method: str
    config: TrialConfig
    dims: dict[str, Distribution]
    capabilities: Capabilities

    def trial_config(self, values: Mapping[str, Any]) -> TrialConfig:
        """The config of one trial: `config` with `values` (sampled dims; seed and T of a final run).

        Raises:
            ValidationError: a value the config refuses. The sweep's own values cannot: every
                choice and both bounds of every searched dimension were checked when the space
                loaded (`load_space`).
        """
        return trial_config({**self.config.flat(), **values})

    def sampler_dims(self) -> dict[str, dict[str, Any]]:
        """`dims` in the YAML form (what `plan.json` records)."""
        return {key: dist.as_dict() for key, dist in self.dims.items()}

    def distributions(self) -> dict[str, Any]:
        """`dims` as Optuna distributions, which the searcher samples and its studies record."""
        return {key: dist.to_optuna() for key, dist in self.dims.items()}


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the space file and one `MethodPlan` per method, in the file's order."""

    space: SpaceFile
    source: str
    methods: tuple[MethodPlan, ...]

    def of(self, method: str) -> MethodPlan:
        """The plan of `method`."""
        return next(plan for plan in self.methods if plan.method == method)

    def record(self) -> dict[str, Any]:
        """What the sweep's trials are made of, as JSON values: per method its config and dims,
        and the search settings."""
        record = {
            "methods": {
                p.method: {"config": p.config.model_dump(mode="json"), "dims": p.sampler_dims()} for p in self.methods
            },
            "search": self.space.search.model_dump(mode="json"),
        }
        return json.loads(json.dumps(record, default=str))


def search_budget(plan: MethodPlan, space: SpaceFile) -> int:
    """Search trials of a method: `search.num_samples`, or one when it samples nothing."""
    return space.search.num_samples if plan.dims else 1


def plan_sweep(path: str | Path, overrides: list[tuple[str, Any]] | None = None) -> SweepPlan:
    """Validates a space file for a sweep (and `--set` overrides): the file, each method's
    trial and preflight, and the dataset's files. Every defect raises a one-line
    HarnessInputError naming the file and field, or the `--set KEY`."""
    space = load_space(path, overrides or [])  # `--set` of the file's own keys: search.*, resources.*, ...
    plans, trials = [], []
    for name in space.methods:
        resolved = resolve(space, method=name, overrides=trial_overrides(overrides or []), source=str(path))
        method = METHODS.get(name)
        method.preflight(resolved.config)
        read = read_sections(name)
        dims = {key: dist for key, dist in space.space.items() if key.split(".")[0] in read}
        plans.append(MethodPlan(name, resolved.config, dims, method.capabilities))
        trials.append(resolved)
    check_objectives(space, plans, str(path))
    from harness.teacher import check_teacher_checkpoint  # here: Ray workers import this module, not the teacher

    for resolved in trials:  # files last: a config that cannot work first
        check_dataset_files(resolved)
        if uses_teacher(resolved.config):
            check_teacher_checkpoint(resolved.config, resolved.label("teacher.checkpoint"))
    return SweepPlan(space, str(path), tuple(plans))


def check_objectives(space: SpaceFile, plans: list[MethodPlan], source: str) -> None:
    """Every objective of a Pareto search is something each method's trials measure: an epoch
    metric, an efficiency figure (counted on the validation split), or a key of its config.

    Raises:
        HarnessInputError: one line naming the file's `search.objectives.<key>`.
    """
    for name in space.search.objectives or {}:
        if name in EPOCH_METRICS or name in COST_METRICS:
            continue
        for method_plan in plans:
            if name not in method_plan.config.flat():
                measured = ", ".join((*EPOCH_METRICS, *COST_METRICS))
                raise HarnessInputError(
                    f"{source}: search.objectives.{name}: neither a metric the search measures ({measured}) nor a "
                    f"key of {method_plan.method}'s config"
                )


def check_same_plan(plan: SweepPlan, folder: Path) -> None:
    """Refuses to continue the sweep in `folder` with another plan than the one it started with
    (another space file or `--set`): its searcher and trials were made from the first.

    Raises:
        HarnessInputError: naming the first setting that differs.
        DamagedState: `plan.json` does not read back whole.
    """
    path = folder / PLAN_FILE
    if not path.exists():
        return
    recorded = read_json(path, "the plan the sweep started with")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("methods"), dict):
        raise DamagedState(f"{path}: the plan the sweep started with is damaged (not a plan); {FRESH_START}")
    before, now = flatten(recorded), flatten(plan.record())
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            raise HarnessInputError(
                f"{plan.source}: {key} is {now.get(key)!r}, but the sweep in {folder} started with "
                f"{before.get(key)!r}; resume it with the same space and --set, or remove that folder to start again"
            )


def record_plan(plan: SweepPlan, folder: Path) -> None:
    """Writes `plan.json` into `folder` once (the first start of the sweep)."""
    path = folder / PLAN_FILE
    if not path.exists():
        write_json_atomically(path, plan.record())
