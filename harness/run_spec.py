"""What a trial's MLflow run is made of, from its config and its method: one function for
`harness train` and for the sweep.

A run's tags are the contract's (`harness.contract.run_tags`: role, method, identity,
capabilities, parent, and the teacher's cache key for a method that needs one), its params the
dotted keys of the sections its method reads, its config the whole resolved tree. Its name reads
as the report's rows do: `kd-trial-3` (a search trial), `kd-final-T4-s1` (a final run),
`kd-digits-T2-s0` (`harness train`); the T appears for methods that train at one.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness import contract
from harness.config.sections import TrialConfig
from harness.contract import Role
from harness.methods.base import METHODS, logged_params, uses_teacher
from harness.teacher import teacher_key_of
from harness.tracking import RunSpec


def teacher_identity(config: TrialConfig) -> str | None:
    """The teacher's cache key when the config's trial uses a teacher (`uses_teacher`: its method
    distils from it, or a transfer attack is crafted on it; the tag `harness.teacher`, by which
    the report counts distinct teachers), else None."""
    return teacher_key_of(config) if uses_teacher(config) else None


def run_name(config: TrialConfig, role: Role, run: str | None = None) -> str:
    """`kd-trial-3` for search trial 3, `kd-final-T4-s1` for a final run, `kd-digits-T2-s0` for
    a trial of `harness train` (no `run` of a sweep's plan)."""
    steps = f"-T{config.snn.time_steps}" if METHODS.get(config.method).capabilities.trains_at_time_steps else ""
    if role == Role.FINAL:
        return f"{config.method}-final{steps}-s{config.seed}"
    if run is not None:
        return f"{config.method}-{role}-{run}"
    return f"{config.method}-{config.dataset.name}{steps}-s{config.seed}"


def run_spec(
    config: TrialConfig,
    role: Role,
    trial_id: str,
    *,
    run: str | None = None,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> RunSpec:
    """The run of one trial: its name, the contract's tags (and `extra_tags`), its params and config."""
    capabilities = METHODS.get(config.method).capabilities
    tags = contract.run_tags(
        role, config.method, trial_id, capabilities, parent_run_id=parent_run_id, teacher=teacher_identity(config)
    )
    return RunSpec(
        name=run_name(config, role, run),
        tags={**tags, **(extra_tags or {})},
        params=logged_params(config),
        config=config.model_dump(mode="json"),
    )
