"""The search-space file: its schema, its distributions, and `load_space`.

A space file (docs/ARCHITECTURE.md, "The search-space file") names the sweep (`name`, the
MLflow experiment), its `methods`, the `fixed` values every trial starts from, the `space:`
searched (one `Distribution` per dotted key), how to search (`search`), the `eval` block and
per-trial `resources`. `load_space` reads one with the strict loader (`harness.config.yaml`)
and checks it whole before anything runs: its schema, then the trial its fixed values make and
every value a searched dimension can take (`harness.config.resolve`), so a bad file is refused
in one line naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.config.base import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    TimeSteps,
    error_at,
    fields_of,
    registered,
)
from harness.config.resolve import Origin, one_line, resolve
from harness.config.sections import DEFAULT_METHOD
from harness.config.yaml import DuplicateKeyError, read_yaml
from harness.errors import HarnessInputError, PluginError
from harness.methods.base import METHODS

if TYPE_CHECKING:
    import optuna


class Distribution(Section):
    """One searched dimension: exactly one of `categorical`, `int` or `float`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    categorical: tuple[Any, ...] | None = None
    int_range: tuple[int, int] | None = Field(None, alias="int")
    float_range: tuple[float, float] | None = Field(None, alias="float")
    log: bool = False
    step: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        kinds = [k for k in ("categorical", "int_range", "float_range") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("expected exactly one of categorical: [...], int: [low, high], float: [low, high]")
        if self.categorical is not None and not self.categorical:
            raise ValueError("categorical needs at least one choice")
        bounds = self.int_range or self.float_range
        if bounds is not None:
            if not bounds[0] < bounds[1]:
                raise ValueError(f"expected low < high, got {list(bounds)}")
            if self.log and bounds[0] <= 0:
                raise ValueError("log: true needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("log and step cannot be combined")
        return self

    def values_to_check(self) -> tuple[Any, ...]:
        """Values that must each form a valid config: every choice, or both bounds."""
        return self.categorical or self.int_range or self.float_range or ()

    def as_dict(self) -> dict[str, Any]:
        """The YAML form (`{"int": [1, 8], "log": True}`), as the sweep's plan records it."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) | (
            {"log": True} if self.log else {}
        )

    def to_optuna(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of this dimension: the one conversion, which the searcher
        samples (`suggest`) and the studies it mirrors record."""
        import optuna

        if self.categorical is not None:
            return optuna.distributions.CategoricalDistribution(list(self.categorical))
        if self.int_range is not None:
            low, high = self.int_range
            return optuna.distributions.IntDistribution(low, high, log=self.log, step=int(self.step or 1))
        assert self.float_range is not None
        low, high = self.float_range
        return optuna.distributions.FloatDistribution(low, high, log=self.log, step=self.step)


class SchedulerConfig(Section):
    """Early stopping of the search: ASHA on epochs, or none."""

    name: Literal["asha", "none"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0


Direction = Literal["max", "min"]

EPOCH_METRICS = ("val_accuracy", "train_loss")
"""Metrics every epoch reports: what ASHA can stop on."""


class SearchConfig(Section):
    """How the sweep searches: per-method budget, concurrency, objective(s), sampler, final stage.

    One objective (`metric`, `mode`) or several (`objectives`, a Pareto search): see
    `objectives` below and README's "The accuracy x energy front".
    """

    num_samples: PositiveInt = 8
    max_concurrent: PositiveInt = 2
    metric: Literal["val_accuracy", "train_loss"] = "val_accuracy"  # reported every epoch, for ASHA
    mode: Direction = "max"
    # A Pareto search: metric -> direction, in order; the first is the primary objective (what
    # ASHA stops on, what the reference configuration is best in, what the front is spread along),
    # reported every epoch. Others: an efficiency figure (energy_uj, synops, acs, macs,
    # firing_rate), counted on the validation split, or a config key (snn.time_steps, student.depth).
    objectives: dict[str, Direction] | None = None
    # Pareto mode's final stage: up to this many configurations of each method's front (its
    # reference configuration and others spread along the front) are retrained ...
    final_front: PositiveInt = 3
    # ... the others over the first `front_repeats` final seeds (the reference over all `final_repeats`).
    front_repeats: NonNegativeInt = 2
    sampler: Literal["tpe", "random"] = "tpe"
    seed: NonNegativeInt = 0
    scheduler: SchedulerConfig = SchedulerConfig()
    final_repeats: NonNegativeInt = 3
    # T values the final stage retrains methods that train at a T at, besides
    # eval.reference_time_steps; None: every eval.time_steps value. Other T of the curve are
    # then read off those runs.
    final_time_steps: tuple[TimeSteps, ...] | None = None
    # What a search trial measures after its last epoch. `full`: everything a final run does.
    # `clean`: test accuracy at the reference T only (no noise, no other T), which the search
    # needs no more of; noise, the time-step curve and efficiency come from the final runs.
    trial_evaluation: Literal["full", "clean"] = "full"

    @field_validator("objectives")
    @classmethod
    def _several_with_an_epoch_metric_first(cls, objectives: dict[str, str] | None) -> dict[str, str] | None:
        if objectives is None:
            return None
        if len(objectives) < 2:
            raise ValueError("a Pareto search needs at least two objectives; one is search.metric and search.mode")
        first = next(iter(objectives))
        if first not in EPOCH_METRICS:
            raise ValueError(
                f"the first objective is the primary one, reported every epoch: one of {', '.join(EPOCH_METRICS)}, "
                f"not {first!r}"
            )
        return objectives

    @model_validator(mode="after")
    def _one_way_to_name_the_objective(self) -> SearchConfig:
        if self.objectives is not None and {"metric", "mode"} & self.model_fields_set:
            raise error_at(
                ("metric" if "metric" in self.model_fields_set else "mode",),
                self.metric if "metric" in self.model_fields_set else self.mode,
                message="give search.objectives or search.metric and search.mode, not both",
            )
        return self

    @property
    def pareto(self) -> bool:
        """Whether the search is multi-objective (`objectives` given)."""
        return self.objectives is not None

    @property
    def primary(self) -> tuple[str, str]:
        """(metric, mode) of the one objective, or of the first of `objectives`: what ASHA stops
        on and what a failed trial is reported worst in."""
        if self.objectives is None:
            return self.metric, self.mode
        metric, mode = next(iter(self.objectives.items()))
        return metric, mode


class ResourcesConfig(Section):
    """Per-trial resources; fractional GPUs share a device (a scheduling promise only)."""

    cpu: PositiveFloat = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0


class SpaceFile(Section):
    """A search-space file (docs/ARCHITECTURE.md, "The search-space file")."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    methods: tuple[str, ...] = (DEFAULT_METHOD,)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Distribution] = Field(default_factory=dict)
    search: SearchConfig = SearchConfig()
    eval: dict[str, Any] = Field(default_factory=dict)
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        if not methods:
            raise ValueError("expected at least one method")
        for index, name in enumerate(methods):
            if name in methods[:index]:
                raise error_at((index,), name, message=f"{name!r} is listed twice")
            registered(METHODS, name)
        return methods

    @field_validator("fixed", "space")
    @classmethod
    def _no_method_key(cls, values: dict[str, Any]) -> dict[str, Any]:
        if "method" in values:  # each trial's method is one of `methods`, never a value to fix or search
            raise error_at(("method",), values["method"], message="the methods to run are listed under `methods`")
        return values


SPACE_KEYS = frozenset({"name", "methods"})
"""Top-level keys of the file that `--set` replaces whole (`--set methods=[kd,direct]`)."""
SPACE_SECTIONS = frozenset({"search", "resources", "space"})
"""Sections of the file whose keys `--set` reaches: `--set search.num_samples=8`,
`--set resources.cpu=2`, `--set space.kd.alpha={float: [0.1, 0.9]}` (null drops a dimension).
Every other key is a trial's (`fixed`, `eval`, a method's section) and goes to `resolve`."""
PLAN_KEYS = frozenset({"methods", "search", "space"})
"""What of the file, besides every trial key, makes a sweep's plan: a `--resume` that changes
one is refused (`harness.sweep.plan.check_same_plan`). `name` names the sweep (another name is
another sweep); `resources` may change between resumes."""


def is_space_key(key: str) -> bool:
    """Whether `--set key` changes the space file itself rather than the trials' config."""
    return key in SPACE_KEYS or key.split(".", 1)[0] in SPACE_SECTIONS


def changes_the_plan(key: str) -> bool:
    """Whether a sweep resumed with another value of `key` is another plan (refused): every trial
    key, and `methods`, `search.*`, `space.*`; not `name` (another sweep) nor `resources.*`."""
    return not is_space_key(key) or key.split(".", 1)[0] in PLAN_KEYS


def trial_overrides(overrides: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The overrides that go to the trials' config (those `load_space` does not take)."""
    return [(key, value) for key, value in overrides if not is_space_key(key)]


def load_space(path: str | Path, overrides: Iterable[tuple[str, Any]] = ()) -> SpaceFile:
    """Reads and validates a search-space file, with the `--set` overrides of its own keys
    (`is_space_key`: `name`, `methods`, `search.*`, `resources.*`, `space.*`) applied first;
    the others are the trials' and left to `resolve`.

    The YAML is read with `StrictSafeLoader`: a key given twice in one mapping is an error.

    Raises:
        HarnessInputError: the file is unreadable, not YAML, repeats a key or breaks the schema;
            the message names the file and the first offending field (or line), or the
            `--set KEY` that brought it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read the space file ({exc.strerror})") from None
    try:
        raw = read_yaml(text)
    except DuplicateKeyError as exc:
        raise HarnessInputError(f"{path}: line {exc.line}: {exc.describe()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HarnessInputError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise HarnessInputError(f"{path}: expected a mapping with `name`, `methods`, `fixed`, ...")
    origin: dict[str, Origin] = {}
    for key, value in overrides:
        if is_space_key(key):
            _set(raw, key, value)
            origin[key] = Origin(f"--set {key}", nested=False)
    try:
        space = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessInputError(one_line(str(path), exc, origin, known=fields_of(SpaceFile))) from None
    # The fixed values and eval block must form a valid trial on their own, and so must every
    # value a searched dimension can take.
    resolve(space, method=space.methods[0], source=str(path))
    for key, dist in space.space.items():
        given = origin.get(f"space.{key}")
        where = given.label if given is not None else f"{path}: space.{key}"
        for value in dist.values_to_check():
            label = Origin(f"{where}: value {value!r} is invalid", nested=False)
            try:
                resolve(space, method=space.methods[0], overrides=[(key, value)], source=str(path), labels={key: label})
            except PluginError as exc:  # the value names a plugin that cannot be used
                raise PluginError(f"{label.label}: {exc}") from None
    return space


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """Puts `--set key=value` into the file's mapping: a whole top-level key, a dimension of
    `space` (its key is dotted itself; null drops it), or a key of `search` / `resources`."""
    if key in SPACE_KEYS:
        raw[key] = value
        return
    section, rest = key.split(".", 1) if "." in key else (key, "")
    if not rest:
        raise HarnessInputError(f"--set {key}: is a section; set one of its keys instead")
    node = raw.setdefault(section, {})
    if not isinstance(node, dict):
        raise HarnessInputError(f"--set {key}: {section} is a value, not a section")
    if section == "space":
        if value is None:
            node.pop(rest, None)
        else:
            node[rest] = value
        return
    *parents, leaf = rest.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise HarnessInputError(f"--set {key}: {section}.{part} is a value, not a section")
    node[leaf] = value
