"""The validated, frozen configuration of one trial, and the search-space file it comes from.

A search-space file (DESIGN §4) names values with dotted keys (`student.depth`,
`kd.temperature`, ...). `TrialConfig` is the same tree as small frozen pydantic models that
reject unknown keys, wrong types and non-finite numbers at load. Who owns which keys:

- The harness owns the core sections: `method`, `seed`, `dataset.*`, `teacher.*`, `student.*`,
  `snn.*`, `encoding.*`, `train.*`, `eval.*`.
- A method owns the section named after it: `kd.*` belongs to `kd`, `conversion.*` to
  `conversion`, a plugin's `dkd.*` to `dkd`. The method declares it (`Method.options`, a
  `Section` subclass); `TrialConfig.of` builds the trial's config class from the method it
  names (`config_class`), so a plugin's keys get the same one-line errors, `--set` and
  `space:` search as a built-in's. A trial's config holds only its own method's section;
  another method's section in the same file is checked against that method, then left out.
- A model family owns the arguments of `student.*` / `teacher.*` beside `arch`: a
  `ModelArgs` subclass (depth and width for the CNNs) validates them, chosen by `arch`.

`load_space` reads and validates a file; `resolve_trial_config` merges its `fixed` values, its
`eval` block, the chosen method and `--set key=value` overrides into one `TrialConfig`. Every
defect becomes a one-line `HarnessInputError` naming the file (or `--set KEY`) and the key.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from harness.errors import HarnessInputError, PluginError
from harness.registry import DATASETS, ENCODERS, METHODS, MODELS, NOISES, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
TimeSteps = Annotated[int, Field(ge=1, le=1024)]

DEFAULT_METHOD = "kd"


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys and non-finite numbers rejected.

    A method's own section (`Method.options`) and a model family's arguments (`ModelArgs`)
    subclass it; every key needs a default, so a section may be left out of a file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite_values(self) -> Section:
        # `allow_inf_nan=False` covers fields typed `float`; this covers every other way a float
        # gets in (fields typed `Any`, `dict[str, Any]`, a categorical's choices, a plugin's
        # section that allows inf/nan for its own fields).
        for name in type(self).model_fields:
            found = _non_finite(getattr(self, name), (name,))
            if found is not None:
                raise _error_at(found[0], found[1], "finite_number")
        return self


def _non_finite(value: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], float] | None:
    """The first non-finite float in `value` (mappings, sequences, non-Section models) and its path."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, Section):  # it checked itself when it was made
        return None
    if isinstance(value, BaseModel):
        items: Iterable[tuple[Any, Any]] = ((name, getattr(value, name)) for name in type(value).model_fields)
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, (*path, key if isinstance(key, (str, int)) else str(key)))
        if found is not None:
            return found
    return None


def _error_at(loc: tuple[str | int, ...], value: Any, kind: str = "value_error", message: str = "") -> ValidationError:
    """A ValidationError at `loc` (relative to the model being validated), to raise from a
    validator: pydantic prefixes the location of the field or model it validates."""
    detail: InitErrorDetails = {"type": kind, "loc": loc, "input": value}
    if kind == "value_error":
        detail["ctx"] = {"error": ValueError(message)}
    return ValidationError.from_exception_data("config", [detail])


def _lookup(registry: Registry[Any], name: str) -> str:
    """Checks `name` is registered and loads; a ValueError lets pydantic name the offending key."""
    try:
        registry.get(name)
    except HarnessInputError as exc:
        raise ValueError(str(exc)) from None
    return name


class DatasetConfig(Section):
    """Which data the trial uses; splits depend on `split_seed` only (see `harness.data`)."""

    name: str = "mnist-5k"
    root: str | None = None
    download: bool = False
    val_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    split_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return _lookup(DATASETS, name)


class ModelArgs(Section):
    """A model family: its own arguments (beside `arch`) and how to build it.

    Subclass it once per family and register the subclass under the entry-point group
    `snn_kd_harness.models`; the entry point's name is the `arch` users write. Declare the
    family's knobs as fields with defaults and validators (depth and width for a CNN; an
    embedding dimension, heads and a patch size for a transformer), and implement `build`.
    """

    arch: str

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: int,
        activation: Callable[[], nn.Module],
        pool: str = "max",
    ) -> nn.Module:
        """A network of this family (a `harness.models.SpikingNetwork`) for inputs of the given
        shape, with `activation()` as every neuron (ReLU: an ANN; LIF: a spiking network).
        `pool` is "max" or "avg" (conversion asks for average pooling)."""
        raise NotImplementedError


def check_model_family(name: str, entry: Any) -> None:
    """`MODELS`' check: a `ModelArgs` subclass with `build` and a default for every argument."""
    if not (isinstance(entry, type) and issubclass(entry, ModelArgs)):
        raise TypeError(f"expected a subclass of harness.config.ModelArgs, got {entry!r}")
    if entry.build is ModelArgs.build:
        raise TypeError(f"{entry.__name__} does not implement build()")
    try:
        entry(arch=name)
    except ValidationError as exc:
        raise ValueError(f"every argument needs a default ({exc.errors()[0]['loc']} has none)") from None


class TeacherTraining(Section):
    """How the ANN teacher is trained: once per (dataset, teacher config, seed), then cached."""

    epochs: PositiveInt = 8
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    # None: the trial's seed (each student seed gets its own teacher). Fix it to distil every
    # student from one teacher, as with a downloaded pre-trained one.
    seed: NonNegativeInt | None = None

    def seed_for(self, trial_seed: int) -> int:
        """The seed this teacher is trained with in a trial seeded `trial_seed`."""
        return trial_seed if self.seed is None else self.seed


# What `student.*` and `teacher.*` default to. A key given without `arch` adds to these; another
# `arch` starts from that family's own defaults.
STUDENT_DEFAULTS: dict[str, Any] = {"arch": "resnet"}
TEACHER_DEFAULTS: dict[str, Any] = {"arch": "resnet", "depth": 18}


class _Arch(Section):
    arch: str

    @field_validator("arch")
    @classmethod
    def _known(cls, arch: str) -> str:
        return _lookup(MODELS, arch)


@functools.cache
def teacher_class(arch: str) -> type[ModelArgs]:
    """The teacher section for family `arch`: the family's arguments plus `TeacherTraining`."""
    family = MODELS.get(arch)
    clash = sorted(set(family.model_fields) & set(TeacherTraining.model_fields))
    if clash:
        provider = MODELS.providers(arch)[0].describe()
        raise PluginError(f"{provider}: its argument {clash[0]!r} collides with teacher.{clash[0]} of the harness")
    return create_model(f"Teacher_{_identifier(arch)}", __base__=(TeacherTraining, family))


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _model_section(value: Any, handler: ValidatorFunctionWrapHandler, defaults: Mapping[str, Any], teacher: bool):
    """Validates `student.*` / `teacher.*` with the family `arch` names."""
    if isinstance(value, ModelArgs) and (isinstance(value, TeacherTraining) or not teacher):
        return value
    if isinstance(value, ModelArgs):  # a family's arguments given as a teacher's: add the training keys
        value = value.model_dump()
    if not isinstance(value, Mapping):
        return handler(value)  # pydantic's own "expected a mapping" error
    arch = value.get("arch", defaults["arch"])
    _Arch.model_validate({"arch": arch})  # unknown family: an error at `<section>.arch`
    family = teacher_class(arch) if teacher else MODELS.get(arch)
    base = defaults if arch == defaults["arch"] else {"arch": arch}
    return family.model_validate({**base, **value})


class SNNConfig(Section):
    """Spiking neuron and simulation settings of the student (DESIGN §2, LIF)."""

    time_steps: TimeSteps = 4
    tau: Annotated[float, Field(gt=1.0)] = 2.0
    v_threshold: PositiveFloat = 1.0
    reset: Literal["hard", "soft"] = "hard"
    surrogate: Literal["atan", "sigmoid", "triangle"] = "atan"
    surrogate_alpha: PositiveFloat | None = None
    detach_reset: bool = False


class EncodingConfig(Section):
    """How static images become the spiking network's input over T steps (`harness.models.encoders`)."""

    name: str = "direct"

    @field_validator("name")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        return _lookup(ENCODERS, name)


class TrainConfig(Section):
    """Optimisation of whatever network the method trains (the teacher has its own
    `teacher.optimizer` / `teacher.lr` / `teacher.epochs` and shares the rest).

    Adam at 1e-2 is the default: spiking students pool sparse rates into the classifier
    and learn several times slower with SGD at ANN learning rates (measured in the README).
    """

    epochs: PositiveInt = 5
    batch_size: PositiveInt = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    augment: bool = True
    eval_batch_size: PositiveInt = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegativeInt = 0
    # Spiking students only (kd, direct): recompute each residual/VGG block in the backward
    # pass instead of storing its activations over all T steps. Same results; less memory for
    # one more forward pass per step (figures in BENCHMARKS.md).
    checkpoint_activations: bool = False


class EvalConfig(Section):
    """What the final evaluation measures (test accuracy, time-step curve, noise)."""

    reference_time_steps: TimeSteps = 4
    time_steps: tuple[TimeSteps, ...] = (1, 2, 4, 8)
    noise: dict[str, tuple[Annotated[float, Field(ge=0)], ...]] = Field(default_factory=dict)

    @field_validator("time_steps")
    @classmethod
    def _sorted_unique(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("expected at least one time step")
        return tuple(sorted(set(steps)))

    @field_validator("noise")
    @classmethod
    def _known_noise(cls, noise: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        from harness.noise import check_level

        # Errors at `eval.noise.<name>`, so a message names the `--set eval.noise.<name>` (or
        # the file's key) that brought the offending noise.
        for name, levels in noise.items():
            try:
                _lookup(NOISES, name)
                for level in levels:
                    check_level(name, level)
            except (ValueError, HarnessInputError) as exc:
                raise _error_at((name,), levels, message=str(exc)) from None
        return noise


ALWAYS_READ = frozenset({"method", "seed", "dataset", "student", "encoding", "train", "eval"})
"""Top-level keys every method reads; `Method.reads` adds `teacher`, `snn`, its own section is added too."""


class TrialConfig(Section):
    """Everything one trial needs; frozen, logged to MLflow and stored in every checkpoint.

    Build one with `TrialConfig.of(tree)`: the class it returns is `config_class(method)`, this
    class plus the method's own section (an attribute named after the method, `config.kd`).
    """

    method: str = DEFAULT_METHOD
    seed: NonNegativeInt = 0
    dataset: DatasetConfig = DatasetConfig()
    teacher: SerializeAsAny[ModelArgs] = Field(default=TEACHER_DEFAULTS, validate_default=True)
    student: SerializeAsAny[ModelArgs] = Field(default=STUDENT_DEFAULTS, validate_default=True)
    snn: SNNConfig = SNNConfig()
    encoding: EncodingConfig = EncodingConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    method_section: ClassVar[str | None] = None
    """The name of this class's method section (None: the method takes no options)."""

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        return _lookup(METHODS, name)

    @field_validator("student", mode="wrap")
    @classmethod
    def _student_family(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> ModelArgs:
        return _model_section(value, handler, STUDENT_DEFAULTS, teacher=False)

    @field_validator("teacher", mode="wrap")
    @classmethod
    def _teacher_family(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> ModelArgs:
        return _model_section(value, handler, TEACHER_DEFAULTS, teacher=True)

    @classmethod
    def of(cls, tree: Mapping[str, Any]) -> TrialConfig:
        """Validates a nested config tree (`{"method": "kd", "kd": {"alpha": 0.5}, ...}`).

        The tree's `method` picks the class; a section of another registered method is checked
        against that method's options and left out of the result.

        Raises:
            ValidationError: the first offending key (`describe_error` words it).
            PluginError: the method's (or another named method's) plugin does not load.
        """
        tree = dict(tree)
        method = tree.get("method", DEFAULT_METHOD)
        if not (isinstance(method, str) and method in METHODS):
            return TrialConfig.model_validate(tree)  # reports the unknown method at `method`
        config = config_class(method).model_validate(
            {key: value for key, value in tree.items() if not _is_other_section(key, method)}
        )
        for key, value in tree.items():
            if _is_other_section(key, method):
                section_checker(key).model_validate({key: value})
        return config

    @property
    def options(self) -> Section | None:
        """The method's own section (`config.kd` for `kd`), or None when it takes none."""
        return getattr(self, self.method_section) if self.method_section else None

    def flat(self) -> dict[str, Any]:
        """The config as dotted keys (`kd.alpha`, ...), the form used for MLflow params."""
        return flatten(self.model_dump(mode="json"))

    def read_sections(self) -> frozenset[str]:
        """The top-level keys this trial's method reads: `ALWAYS_READ`, its `reads`, its section."""
        method = METHODS.get(self.method)
        own = {self.method_section} if self.method_section else set()
        return ALWAYS_READ | method.reads | own

    def params(self) -> dict[str, Any]:
        """`flat()` restricted to the sections the method reads: what a run logs as params."""
        read = self.read_sections()
        return {key: value for key, value in self.flat().items() if key.split(".")[0] in read}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The class is made at run time (`config_class`): pickle the values and rebuild (Ray
        # ships plans to workers this way; each worker finds the method's plugin itself).
        return (_rebuild, (self.model_dump(mode="json"),))


def _rebuild(values: dict[str, Any]) -> TrialConfig:
    return TrialConfig.of(values)


def _is_other_section(key: str, method: str) -> bool:
    return key != method and key not in TrialConfig.model_fields and key in METHODS


class _NoOptions(Section):
    """The section of a method that takes no options: any key is unknown."""


@functools.cache
def config_class(method: str) -> type[TrialConfig]:
    """`TrialConfig` plus the section of `method`, named after it (cached per method).

    Raises:
        HarnessInputError: unknown method.
        PluginError: its plugin does not load or declares an unusable section.
    """
    options = METHODS.get(method).options
    fields: dict[str, Any] = {"method": (Literal[method], method)}  # type: ignore[valid-type]
    if options is not None:
        fields[method] = (options, Field(default_factory=options))
    cls = create_model(f"TrialConfig_{method}", __base__=TrialConfig, **fields)
    cls.method_section = method if options is not None else None
    return cls


@functools.cache
def section_checker(method: str) -> type[Section]:
    """A model with one field, `method`'s section, to check it where another method runs."""
    options = METHODS.get(method).options or _NoOptions
    return create_model(f"Section_{method}", __base__=Section, **{method: (options, Field(default_factory=options))})


def core_sections() -> frozenset[str]:
    """The top-level keys the harness owns (a method may not be named like one)."""
    return frozenset(TrialConfig.model_fields)


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
        """The YAML form (`{"int": [1, 8], "log": True}`), as the sampler reads it."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) | (
            {"log": True} if self.log else {}
        )


class SchedulerConfig(Section):
    """Early stopping of the search: ASHA on epochs, or none."""

    name: Literal["asha", "none"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0


class SearchConfig(Section):
    """How the sweep searches: per-method budget, concurrency, objective, sampler, final stage."""

    num_samples: PositiveInt = 8
    max_concurrent: PositiveInt = 2
    metric: Literal["val_accuracy", "train_loss"] = "val_accuracy"  # reported every epoch, for ASHA
    mode: Literal["max", "min"] = "max"
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


class ResourcesConfig(Section):
    """Per-trial resources; fractional GPUs share a device (a scheduling promise only)."""

    cpu: PositiveFloat = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0


class SpaceFile(Section):
    """A search-space file (DESIGN §4)."""

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
                raise _error_at((index,), name, message=f"{name!r} is listed twice")
            _lookup(METHODS, name)
        return methods

    @field_validator("fixed", "space")
    @classmethod
    def _no_method_key(cls, values: dict[str, Any]) -> dict[str, Any]:
        if "method" in values:  # each trial's method is one of `methods`, never a value to fix or search
            raise _error_at(("method",), values["method"], message="the methods to run are listed under `methods`")
        return values


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; dict-valued leaves such as `eval.noise` stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in _DICT_LEAVES:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


_DICT_LEAVES = {"eval.noise"}


class _KeyClash(HarnessInputError):
    """A dotted key used both as a value and as a section (`unflatten`)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested dicts; a key that is both a leaf and a section is an error."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise _KeyClash(dotted, f"{'.'.join(parents)} is a value, not a section")
        if isinstance(node.get(leaf), dict) and not isinstance(value, Mapping):
            raise _KeyClash(dotted, "is a section; set one of its keys instead")
        node[leaf] = value
    return tree


def trial_config(flat: Mapping[str, Any]) -> TrialConfig:
    """`TrialConfig.of` from dotted keys (`{"method": "kd", "kd.alpha": 0.5}`)."""
    return TrialConfig.of(unflatten(flat))


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping key given twice in one mapping (`StrictSafeLoader`).

    Attributes:
        key: The key, as written.
        parents: The dotted path of the mapping that holds it ("" at the top).
        line: The 1-based line of the second occurrence; `first_line` that of the first.
    """

    def __init__(self, key: Any, parents: str, key_node: yaml.Node, first: yaml.Node) -> None:
        self.key, self.parents = key, parents
        self.line, self.first_line = key_node.start_mark.line + 1, first.start_mark.line + 1
        super().__init__(None, None, self.describe(), key_node.start_mark)

    def describe(self, lines: bool = True) -> str:
        """`duplicate key 'train.epochs' in fixed (first at line 5)`."""
        where = f" in {self.parents}" if self.parents else ""
        first = f" (first at line {self.first_line})" if lines and self.first_line != self.line else ""
        return f"duplicate key {str(self.key)!r}{where}{first}"


class StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (the same safe tags and types) that refuses a key given twice in one
    mapping, at any depth, instead of keeping the last value silently (`DuplicateKeyError`).
    A key that overrides one brought in by a merge (`<<: *defaults`) is fine, as YAML intends."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique_keys(node, (), set())
        return super().construct_document(node)

    def _check_unique_keys(self, node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias: checked where its anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique_keys(item, (*path, str(index)), seen)
        elif isinstance(node, yaml.MappingNode):
            keys: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_unique_keys(value_node, path, seen)
                    continue
                label = "?"  # a sequence or mapping as a key: the constructor refuses it (unhashable)
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node, deep=True)  # typed: `1` and `'1'` differ
                    try:
                        if key in keys:
                            raise DuplicateKeyError(key, ".".join(path), key_node, keys[key])
                        keys[key] = key_node
                    except TypeError:  # unhashable: the constructor says so in its own words
                        pass
                    label = str(key)
                self._check_unique_keys(value_node, (*path, label), seen)


def read_yaml(text: str) -> Any:
    """`text` as YAML, read with `StrictSafeLoader`.

    Raises:
        DuplicateKeyError: a mapping repeats a key.
        yaml.YAMLError: anything else that is not valid YAML.
    """
    return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[str, Any]:
    """Parses one `--set key=value`; the value is read as YAML (`4`, `0.5`, `[1, 2]`, `true`),
    strictly (`StrictSafeLoader`): a mapping that repeats a key is an error naming `--set KEY`.
    A value that is not valid YAML is kept as the string given."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise HarnessInputError(f"--set {text!r}: expected key=value, e.g. --set kd.alpha=0.5")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise HarnessInputError(f"--set {key}: {exc.describe(lines=False)}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def _known_keys(parents: tuple[Any, ...], tree: Mapping[str, Any]) -> list[str]:
    """The keys the section at `parents` accepts, for an "unknown key" message."""
    if not parents:
        return sorted(set(TrialConfig.model_fields) | set(METHODS.names()))
    head, rest = parents[0], parents[1:]
    model: Any
    try:
        if head in ("student", "teacher"):
            given = tree.get(head)
            defaults = STUDENT_DEFAULTS if head == "student" else TEACHER_DEFAULTS
            arch = (given if isinstance(given, Mapping) else {}).get("arch", defaults["arch"])
            model = teacher_class(arch) if head == "teacher" else MODELS.get(arch)
        elif head in TrialConfig.model_fields:
            model = TrialConfig.model_fields[head].annotation
        elif head in METHODS:
            model = METHODS.get(head).options or _NoOptions
        else:
            return []
    except HarnessInputError:
        return []
    for part in rest:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def describe_error(error: Mapping[str, Any], tree: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """One pydantic error as (dotted key, what was expected)."""
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        keys = _known_keys(tuple(error["loc"][:-1]), tree or {})
        return loc, f"unknown key; expected one of: {', '.join(keys)}" if keys else "unknown key"
    if error["type"] == "value_error":  # our validators' messages already name the value
        return loc, error["msg"].removeprefix("Value error, ")
    return loc, f"{error['msg']} (got {error.get('input')!r})"


class Origin(NamedTuple):
    """Where a dotted key of a resolved config was given.

    Attributes:
        label: What a message names: `<file>: fixed.train.lr`, `--set train.lr`, `--method`.
        nested: Whether a deeper key may be appended to `label` (`<file>: fixed.train` + `.lr`);
            false for what the user typed as one flag (`--set eval.noise` stays as typed).
    """

    label: str
    nested: bool = True


def config_origins(
    space: SpaceFile,
    *,
    method: str | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    source: str = "space file",
) -> dict[str, Origin]:
    """Where each dotted key `resolve_trial_config` merges comes from (the same arguments):
    the file's `fixed` and `eval` blocks, `--method` and `--set`, the later winning."""
    origin = {key: Origin(f"{source}: fixed.{key}") for key in space.fixed}
    origin.update((key, Origin(f"{source}: {key}")) for key in flatten(space.eval, "eval."))
    origin["method"] = Origin("--method", nested=False) if method else Origin(f"{source}: methods")
    origin.update((key, Origin(f"--set {key}", nested=False)) for key, _ in overrides)
    return origin


def origin_label(origin: Mapping[str, Origin], dotted: str, default: str) -> str:
    """What a message about `dotted` names: the most specific given key at or above it
    (`--set train.lr` for `train.lr`; `<file>: fixed.train.lr` for a `fixed: {train: {lr: ..}}`),
    or `default` (`<file>: <dotted>`, say) when the value is a default."""
    given = _given_at(origin, dotted)
    if given is None:
        return default
    found = origin[given]
    return found.label + (dotted[len(given) :] if found.nested and len(given) < len(dotted) else "")


def _given_at(origin: Mapping[str, Origin], dotted: str) -> str | None:
    """The longest key of `origin` that is `dotted` or a section above it; else a key below it
    (`--set train.lr.x=5` made `train.lr` a mapping), a flag before the file."""
    matches = [key for key in origin if dotted == key or dotted.startswith(key + ".")]
    if matches:
        return max(matches, key=len)
    below = sorted((key for key in origin if key.startswith(dotted + ".")), key=lambda key: origin[key].nested)
    return below[0] if below else None


def _one_line(
    where: str,
    error: ValidationError,
    origin: Mapping[str, Origin] | None = None,
    tree: Mapping[str, Any] | None = None,
) -> str:
    """The first validation error as `<where>: <dotted key>: <what was expected>`, or, with
    `origin`, as `<the source of that key>: <what was expected>`."""
    loc, message = describe_error(error.errors()[0], tree)
    if origin is None:
        return f"{where}: {loc}: {message}"
    label = origin_label(origin, loc, f"{where}: {loc}")
    head = loc.split(".")[0]
    arch = f"{head}.arch"
    if head in ("student", "teacher") and loc != arch and arch in origin and not origin[arch].nested:
        given = _given_at(origin, loc)
        if given is None or origin[given].nested:
            # A family chosen on the command line rejects an argument the file (or the family's
            # defaults) gives: name the flag that changed the family, and where the argument is.
            where_set = f" (given at {label})" if given is not None else ""
            return f"{origin[arch].label}: {message}{where_set}"
    return f"{label}: {message}"


def load_space(path: str | Path) -> SpaceFile:
    """Reads and validates a search-space file.

    The YAML is read with `StrictSafeLoader`: a key given twice in one mapping is an error.

    Raises:
        HarnessInputError: the file is unreadable, not YAML, repeats a key or breaks the schema;
            the message names the file and the first offending field (or line).
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
    try:
        space = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessInputError(_one_line(str(path), exc)) from None
    # The fixed values and eval block must form a valid trial on their own, and so must every
    # value a searched dimension can take.
    resolve_trial_config(space, method=space.methods[0], source=str(path))
    for key, dist in space.space.items():
        for value in dist.values_to_check():
            label = Origin(f"{path}: space.{key}: value {value!r} is invalid", nested=False)
            try:
                _resolve(space, space.methods[0], [(key, value)], str(path), {key: label})
            except PluginError as exc:  # the value names a plugin that cannot be used
                raise PluginError(f"{label.label}: {exc}") from None
    return space


def resolve_trial_config(
    space: SpaceFile,
    *,
    method: str | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
    source: str = "space file",
) -> TrialConfig:
    """Merges a space's `fixed` values, `eval` block, a method and overrides into a TrialConfig.

    Args:
        space: The validated space file.
        method: The method to run; defaults to the first of `space.methods`.
        overrides: `(dotted key, value)` pairs, e.g. from `--set`; they win over `fixed`.
            `method` is not one of them: `--method` (or the file's `methods`) chooses it.
        source: The file name used in error messages.

    Raises:
        HarnessInputError: naming `--set <key>` or `<file>: fixed.<key>` and what was expected.
    """
    overrides = list(overrides)
    for key, _ in overrides:
        if key == "method":
            raise HarnessInputError(
                "--set method: choose the method with --method (harness train); a sweep runs each of the "
                "space file's `methods`"
            )
    return _resolve(space, method, overrides, source, {})


def _resolve(
    space: SpaceFile,
    method: str | None,
    overrides: list[tuple[str, Any]],
    source: str,
    labels: Mapping[str, Origin],
) -> TrialConfig:
    """`resolve_trial_config`; `labels` replaces the origin of some keys in messages."""
    flat: dict[str, Any] = dict(space.fixed)
    flat.update(flatten(space.eval, "eval."))
    flat["method"] = method or space.methods[0]
    flat.update(overrides)
    # A copy: `unflatten` merges an override such as `eval.noise.gaussian` into the mapping
    # the file gives for `eval.noise`, which must stay as the file says for the next trial.
    flat = copy.deepcopy(flat)
    origin = {**config_origins(space, method=method, overrides=overrides, source=source), **labels}
    try:
        tree = unflatten(flat)
    except _KeyClash as exc:  # a key used both as a value and as a section
        raise HarnessInputError(f"{origin_label(origin, exc.key, f'{source}: {exc.key}')}: {exc.problem}") from None
    try:
        return TrialConfig.of(tree)
    except ValidationError as exc:
        raise HarnessInputError(_one_line(source, exc, origin, tree)) from None


# -- `harness keys`: every key a file or `--set` accepts -------------------------------------------

KeyRow = tuple[str, str, str, str]
"""(dotted key, type, default, owner), as `harness keys` prints them."""

_NAMED_BY_REGISTRY: dict[str, Registry[Any]] = {
    "method": METHODS,
    "dataset.name": DATASETS,
    "teacher.arch": MODELS,
    "student.arch": MODELS,
    "encoding.name": ENCODERS,
}


def key_table() -> tuple[list[KeyRow], list[str]]:
    """Every dotted key a space file's `fixed:` / `space:` or `--set` accepts, then the space
    file's own `search.*` and `resources.*`: the core sections, each model family's arguments
    under `student.*` / `teacher.*` (one row per family), each method's own section.

    Returns:
        The rows, and one line per plugin that does not load (its keys are missing).
    """
    rows: list[KeyRow] = []
    broken: list[str] = []
    for name, field in TrialConfig.model_fields.items():
        if name in ("student", "teacher"):
            defaults = STUDENT_DEFAULTS if name == "student" else TEACHER_DEFAULTS
            rows.append((f"{name}.arch", _type_of(f"{name}.arch", str), _show(defaults["arch"]), "harness"))
            if name == "teacher":
                rows += _section_rows(TeacherTraining, "teacher.", "harness")
            for family in MODELS.names():
                try:
                    args = MODELS.get(family)
                except PluginError as exc:
                    broken.append(str(exc))
                    continue
                given = {k: v for k, v in defaults.items() if k != "arch"} if family == defaults["arch"] else {}
                skip = {"arch", *TeacherTraining.model_fields} if name == "teacher" else {"arch"}
                rows += _section_rows(args, f"{name}.", _owner(MODELS, "model", family), given, skip)
        else:
            rows += _field_rows(name, field, "harness")
    for method in METHODS.names():
        try:
            options = METHODS.get(method).options
        except PluginError as exc:
            broken.append(str(exc))
            continue
        if options is not None:
            rows += _section_rows(options, f"{method}.", _owner(METHODS, "method", method))
    for name in ("name", "methods", "search", "resources"):
        rows += _field_rows(name, SpaceFile.model_fields[name], "space file")
    return rows, broken


def _owner(registry: Registry[Any], kind: str, name: str) -> str:
    providers = registry.providers(name)
    return f"{kind} {name}: {providers[0].distribution}" if providers else f"{kind} {name}"


def _section_rows(
    model: type[BaseModel], prefix: str, owner: str, defaults: Mapping[str, Any] | None = None, skip: Iterable[str] = ()
) -> list[KeyRow]:
    rows: list[KeyRow] = []
    for name, field in model.model_fields.items():
        if name not in set(skip):
            rows += _field_rows(prefix + name, field, owner, (defaults or {}).get(name, _NO_DEFAULT))
    return rows


_NO_DEFAULT = object()


def _field_rows(key: str, field: Any, owner: str, default: Any = _NO_DEFAULT) -> list[KeyRow]:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and key not in _DICT_LEAVES:
        return _section_rows(annotation, key + ".", owner)
    if default is _NO_DEFAULT:
        default = "(required)" if field.is_required() else _show(field.get_default(call_default_factory=True))
    else:
        default = _show(default)
    return [(key, _type_of(key, annotation, field.metadata), default, owner)]


def _type_of(key: str, annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """`int >= 1`, `float (0, 0.5]`, `hard|soft`, `list[int [1, 1024]]`, `float > 0 or null`."""
    import types
    import typing

    if key in _NAMED_BY_REGISTRY:
        return "|".join(_NAMED_BY_REGISTRY[key].names()) or "str"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        inner_metadata = [m for arg in args[1:] for m in getattr(arg, "metadata", [arg])]
        return _type_of("", args[0], [*inner_metadata, *metadata])
    if annotation is type(None):
        text = "null"
    elif origin is Literal:
        text = "|".join(str(arg) for arg in args)
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(_type_of("", arg) for arg in args)
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        text = f"list[{_type_of('', args[0])}]"
    elif origin is tuple:
        text = "[" + ", ".join(_type_of("", arg) for arg in args) + "]"
    elif origin is dict:
        text = f"dict[{_type_of('', args[0])}, {_type_of('', args[1])}]"
    elif annotation is Any:
        text = "any"
    elif isinstance(annotation, type):
        text = annotation.__name__
    else:
        text = str(annotation)
    return text + _bounds(metadata)


def _bounds(metadata: Iterable[Any]) -> str:
    low = high = None
    for item in metadata:
        for attribute, bracket in (("ge", "["), ("gt", "(")):
            if getattr(item, attribute, None) is not None:
                low = (bracket, getattr(item, attribute))
        for attribute, bracket in (("le", "]"), ("lt", ")")):
            if getattr(item, attribute, None) is not None:
                high = (bracket, getattr(item, attribute))
    if low and high:
        return f" {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def _show(value: Any) -> str:
    """A default as one would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_show(item)}" for key, item in value.items()) + "}"
    return str(value)
