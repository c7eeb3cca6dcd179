"""The MLflow contract: tag names, run roles, metric names and what a method declares.

docs/ARCHITECTURE.md, "The MLflow contract", lists them.

One module for what the writers (`harness train`, the sweep's callback) put into MLflow and
what the readers (`reports`) look for; the test fixtures build their stores with it too, so a
renamed tag cannot leave a reader behind. It imports nothing but the standard library:
`harness report` reads the contract without the training stack.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """`harness.role` of a run."""

    SWEEP = "sweep"  # the parent run of a sweep
    TRIAL = "trial"  # a search trial (or one `harness train`)
    FINAL = "final"  # a final-stage run: the chosen configuration retrained with another seed and T
    FRONT = "front"  # a Pareto search's other front point retrained with another seed (at its own T)


class Tag(StrEnum):
    """Tag names. Every trial and final run carries ROLE, METHOD, TRIAL_ID and CAPABILITIES."""

    ROLE = "harness.role"
    METHOD = "harness.method"
    TRIAL_ID = "harness.trial_id"  # stable across retries and resumes: one run per trial
    CAPABILITIES = "harness.capabilities"  # JSON of the method's `Capabilities`
    TEACHER = "harness.teacher"  # the teacher's cache key, on runs that use one (KD; a transfer attack)
    SPACE = "harness.space"  # the space file a run came from
    SEARCHED = "harness.searched"  # comma-separated dims the method's search sampled
    BEST = "harness.best"  # "true" on the search trial the final stage retrained
    FRONT_POINT = "harness.front_point"  # on a front run: the search index of the configuration it retrains
    OBJECTIVES = "harness.objectives"  # on a Pareto sweep's parent: JSON of search.objectives
    PRUNED = "harness.pruned"  # "true" on a trial ASHA stopped early
    NODE = "harness.node"  # the Ray node that ran the trial
    FAILURE_REASON = "harness.failure_reason"
    METHODS = "harness.methods"  # on the sweep's parent: its methods, comma-separated, in order
    VERSION = "harness.version"  # the harness's version, with its git commit in a checkout
    GIT_COMMIT = "mlflow.source.git.commit"  # the full commit (MLflow's own tag, shown in its UI)
    GIT_DIRTY = "harness.git_dirty"  # "true" when tracked files differed from that commit
    LIBRARY = "harness.lib."  # + torch, spikingjelly, ray, optuna, mlflow: their versions
    DEVICE = "harness.device"  # the CPU model or GPU name that ran the trial
    CHECKPOINT = "harness.checkpoint"  # a sweep trial's last checkpoint file (its network is also logged)
    EVALUATED = "harness.evaluated"  # JSON of the eval.* of the latest `harness evaluate` of the run
    PARENT = "mlflow.parentRunId"
    EXPERIMENT_KIND = "mlflow.experimentKind"


TRUE = "true"
DATA_CONTEXT = "mlflow.data.context"  # a dataset input's tag: training / validation / test
EXPERIMENT_KIND = "custom_model_development"  # the MLflow 3 UI's training-runs view

# Metric names (accuracies are fractions in [0, 1]).
VAL_ACCURACY = "val_accuracy"  # per epoch, step = epoch
TRAIN_LOSS = "train_loss"  # per epoch
TRAIN_SECONDS = "train_seconds"
TEST_ACCURACY = "test_accuracy"
PARAMS = "params"
FIRING_RATE = "firing_rate"
ACS = "acs"
MACS = "macs"
SYNOPS = "synops"
ENERGY_UJ = "energy_uj"
TEACHER_TEST_ACCURACY = "teacher_test_accuracy"
TEACHER_PARAMS = "teacher_params"
TEACHER_MACS = "teacher_macs"
TEACHER_ENERGY_UJ = "teacher_energy_uj"

VAL_COST = "val/"  # val/energy_uj, val/synops, ...: counted on the validation split after the last epoch
COST_METRICS = (ACS, MACS, SYNOPS, ENERGY_UJ, FIRING_RATE)
"""The efficiency figures of `harness.efficiency` (per sample, at the run's T)."""

NOISE = "noise/"  # noise/<type>/<level>: the method's network
TEACHER_NOISE = "teacher_noise/"  # the same corruptions, the ANN teacher
TIMESTEP = "timestep/"  # timestep/<T>
ATTACK = "attack/"  # attack/<name>/<eps>: accuracy under an L-infinity attack of that budget, at the reference T

PREDICTIONS_ARTIFACT = "predictions/test.npz"
"""A finished run's per-sample test predictions (`harness.predictions`): the predicted class of every
test image, clean and under each noise and attack, keyed by the accuracy's metric name."""


def noise_metric(kind: str, level: float, prefix: str = NOISE) -> str:
    """`noise/gaussian/0.1` (or `<prefix>gaussian/0.1`); the level printed with `:g`."""
    return f"{prefix}{kind}/{float(level):g}"


def parse_noise_metric(name: str) -> tuple[str, float]:
    """`noise/gaussian/0.1` -> (`gaussian`, 0.1); the inverse of `noise_metric` for any prefix."""
    kind, level = name.rsplit("/", 2)[-2:]
    return kind, float(level)


def attack_metric(name: str, eps: float) -> str:
    """`attack/pgd/0.03`: accuracy under attack `name` with L-infinity budget `eps` (printed with `:g`)."""
    return f"{ATTACK}{name}/{float(eps):g}"


def val_cost_metric(name: str) -> str:
    """`val/energy_uj`: an efficiency figure counted on the validation split."""
    return f"{VAL_COST}{name}"


def objective_result_key(objective: str) -> str:
    """The result key a search objective is read from: an efficiency figure from its validation
    count (`energy_uj` -> `val/energy_uj`), so that no test data steer the search; `val_accuracy`,
    `train_loss` and config keys (`snn.time_steps`) as they are."""
    return val_cost_metric(objective) if objective in COST_METRICS else objective


def timestep_metric(time_steps: int) -> str:
    """`timestep/4`: test accuracy after that many steps."""
    return f"{TIMESTEP}{int(time_steps)}"


def param_column(key: str) -> str:
    """The `mlflow.search_runs` column of a param (`params.kd.alpha`)."""
    return f"params.{key}"


def metric_column(name: str) -> str:
    """The `mlflow.search_runs` column of a metric (`metrics.test_accuracy`)."""
    return f"metrics.{name}"


def tag_column(tag: str) -> str:
    """The `mlflow.search_runs` column of a tag (`tags.harness.role`)."""
    return f"tags.{tag}"


@dataclass(frozen=True)
class ReportRow:
    """An extra row a method adds to the report's accuracy tables, read from its own metrics.

    Attributes:
        label: Shown after the method's name: `conversion (ANN)`.
        clean_metric: Its clean test accuracy (`ann_test_accuracy`).
        noise_prefix: Its accuracy under noise is `<noise_prefix><type>/<level>` (`ann_noise/`).
        note: One sentence the report prints under the table about what the row is.
        collapse_points: A final run whose own clean test accuracy falls more than this many points
            (percentage points, i.e. 100 x fraction) below this row's `clean_metric` of the same run
            is a collapse, which the report marks (`reports.collapse.collapses`); None: no check.
    """

    label: str
    clean_metric: str
    noise_prefix: str
    note: str = ""
    collapse_points: float | None = None


ATTACK_GRADIENT_SURROGATE = "surrogate"  # white-box attacks differentiate the spiking network (BPTT, surrogate)
ATTACK_GRADIENT_ANN = "ann"  # they differentiate the ANN the spiking network was converted from


@dataclass(frozen=True)
class Capabilities:
    """What a method does, declared by the method and written to every run it makes.

    The sweep and the reports act on these, never on method or section names.

    Attributes:
        needs_teacher: It distils from the ANN teacher of `teacher.*`: the sweep trains every
            teacher its runs need once, before them, and tags each run with the teacher's key.
        trains_at_time_steps: It trains its network at `snn.time_steps`, where its validation
            and test accuracy are measured, so the final stage retrains it at every T of the
            curve. False: it is evaluated at `eval.reference_time_steps` and retrained once.
        curve_from_one_run: Its network is causal in time and starts from rest, so the accuracy
            after t steps of one run at T_max equals a run at T = t: the whole `timestep/<T>`
            curve is read off one run. False: each T is evaluated separately.
        report_rows: Extra rows for the report's accuracy tables (conversion's ANN row).
        attack_gradient: What its white-box attacks (`attack/fgsm/...`, `attack/pgd/...`)
            differentiate (`Method.attack_model`): `surrogate`, the spiking network itself
            through its surrogate gradient (BPTT over T); `ann`, the ANN it was converted from
            (the conversion baseline, whose IF neurons have no surrogate). The report says which.
    """

    needs_teacher: bool = False
    trains_at_time_steps: bool = True
    curve_from_one_run: bool = True
    report_rows: tuple[ReportRow, ...] = field(default_factory=tuple)
    attack_gradient: str = ATTACK_GRADIENT_SURROGATE

    def to_tag(self) -> str:
        """The JSON text of tag `harness.capabilities`."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_tag(cls, text: str | None) -> Capabilities:
        """Parses `to_tag`'s text; a run without the tag (an older store) gets the defaults, and so
        does a field an older tag lacks (a report row without `collapse_points`, a tag without
        `attack_gradient`)."""
        if not text:
            return cls()
        raw: dict[str, Any] = json.loads(text)
        rows = tuple(ReportRow(**row) for row in raw.pop("report_rows", ()))
        fields = ("needs_teacher", "trains_at_time_steps", "curve_from_one_run", "attack_gradient")
        known = {key: raw[key] for key in fields if key in raw}
        return cls(**known, report_rows=rows)


def run_tags(
    role: Role,
    method: str,
    trial_id: str,
    capabilities: Capabilities,
    *,
    parent_run_id: str | None = None,
    teacher: str | None = None,
) -> dict[str, str]:
    """The tags every trial and final run is created with."""
    tags = {
        Tag.ROLE.value: role.value,
        Tag.METHOD.value: method,
        Tag.TRIAL_ID.value: trial_id,
        Tag.CAPABILITIES.value: capabilities.to_tag(),
    }
    if parent_run_id is not None:
        tags[Tag.PARENT.value] = parent_run_id
    if teacher is not None:
        tags[Tag.TEACHER.value] = teacher
    return tags
