"""What the sweep's driver and its Ray workers say to each other through Tune.

Downward, a trial's Tune config is one `PlannedTrial`: its method, its role (a search trial or
a final run), its identity within them (`run`: the search index, or the seed and T of a final
run) and the values that override its method's plan (sampled dims; seed and T). The searcher
makes them, Tune carries them as a flat dict (`to_tune`), and every reader (the trainable, the
MLflow callback, the scheduler, the progress display) reads them back with `from_tune`. A
trial's config is resolved from its method's plan by `resolve`, once where it is needed.

Upward, a worker's results carry, besides the metrics, the keys below (`EPOCH_KEY`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.contract import Role

if TYPE_CHECKING:
    from harness.config.sections import TrialConfig
    from harness.sweep.plan import SweepPlan

METHOD_KEY = "method"  # the trial's method, in its Tune config
ROLE_KEY = "role"  # `trial` (search) or `final`
RUN_KEY = "run"  # the trial's identity within its method and role: search index, or `s1-T4` for a final run

EPOCH_KEY = "epoch"  # every result carries it (the scheduler's time attribute)
FAILURE_KEY = "harness_failure_reason"  # a trial's last result carries it when it failed
NODE_KEY = "harness_node_id"  # the Ray node that ran the epoch; becomes the run's tag `harness.node`
BACKFILL_KEY = "harness_backfill"  # the first result after a restart: {epoch: metrics} of the saved epochs
PROVENANCE_KEY = "harness_provenance"  # the first result of a (re)start: JSON of `harness.trial.provenance`
PREDICTIONS_FILE = "predictions.npz"  # a finished trial's test predictions (harness.predictions), by its checkpoints

TRAINED_T = "snn.time_steps"  # the key a final run of a method that trains at a T sets


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of the sweep's plan, as the searcher hands it out and Tune carries it.

    Attributes:
        method: The method's registered name.
        role: `Role.TRIAL` (a search trial) or `Role.FINAL` (a final run).
        run: Its identity within method and role: the search index (`"0"`), or the seed and T
            of a final run (`"s1-T4"`, `"s1"` for a method that does not train at a T).
        values: Dotted keys that override the method's plan: the sampled dims (and, for a
            search trial, its evaluation settings); for a final run, the chosen values with its
            seed and T.
    """

    method: str
    role: Role
    run: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """`<role>/<method>/<run>`: the same for every Tune trial that runs this planned trial
        (a retry, a resume, a re-issue after a crash); it names its checkpoints and its MLflow run."""
        return f"{self.role}/{self.method}/{self.run}"

    def trial_id(self, sweep: str) -> str:
        """The tag `harness.trial_id` of its MLflow run: `<sweep>/<role>/<method>/<run>`."""
        return f"{sweep}/{self.identity}"

    def to_tune(self) -> dict[str, Any]:
        """The flat dict Tune carries as the trial's config."""
        return {**self.values, METHOD_KEY: self.method, ROLE_KEY: self.role.value, RUN_KEY: self.run}

    @classmethod
    def from_tune(cls, config: Mapping[str, Any]) -> PlannedTrial:
        """The planned trial a Tune trial's config carries (`to_tune`'s inverse)."""
        values = {key: value for key, value in config.items() if key not in (METHOD_KEY, ROLE_KEY, RUN_KEY)}
        return cls(str(config[METHOD_KEY]), Role(config[ROLE_KEY]), str(config[RUN_KEY]), values)

    @classmethod
    def in_tune(cls, config: Mapping[str, Any]) -> bool:
        """Whether a Tune config carries a planned trial (every trial of a sweep does)."""
        return all(key in config for key in (METHOD_KEY, ROLE_KEY, RUN_KEY))

    def resolve(self, plan: SweepPlan) -> TrialConfig:
        """Its trial config: its method's plan with its values, validated."""
        return plan.of(self.method).trial_config(self.values)

    def label(self) -> str:
        """`kd trial 3` for a search trial, `direct final T4 s1` for a final run (progress lines)."""
        if self.role == Role.FRONT:
            return f"{self.method} front {self.run}"
        if self.role != Role.FINAL:
            return f"{self.method} trial {self.run}"
        steps = f" T{self.values[TRAINED_T]}" if TRAINED_T in self.values else ""
        seed = f" s{self.values['seed']}" if "seed" in self.values else ""
        return f"{self.method} final{steps}{seed}"
