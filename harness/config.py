"""The validated, frozen configuration of one trial, and the search-space file it comes from.

A search-space file (DESIGN §4) names values with dotted keys (`student.depth`,
`kd.temperature`, ...). `TrialConfig` is the same tree as small frozen pydantic models that
reject unknown keys and wrong types at load. `load_space` reads and validates a file;
`resolve_trial_config` merges its `fixed` values, its `eval` block, the chosen method and
`--set key=value` overrides into one `TrialConfig`. Every defect becomes a one-line
`HarnessInputError` naming the file and the dotted key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from harness.errors import HarnessInputError
from harness.registry import Registry

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DatasetConfig(_Section):
    """Which data the trial uses; splits depend on `split_seed` only (see `harness.data`)."""

    name: str = "mnist-5k"
    root: str | None = None
    download: bool = False
    val_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    split_seed: Annotated[int, Field(ge=0)] = 0

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from harness.data import DATASETS

        return _lookup(DATASETS, name)


class ModelConfig(_Section):
    """An architecture from the model registry: family, depth and base width (channels)."""

    arch: str = "resnet"
    depth: PositiveInt = 8
    width: PositiveInt = 16

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        from harness.models import MODELS

        return _lookup(MODELS, arch)

    @field_validator("depth")
    @classmethod
    def _supported_depth(cls, depth: int, info: ValidationInfo) -> int:
        from harness.models import MODELS

        arch = info.data.get("arch")
        if arch is not None:  # else the arch error is reported
            try:
                MODELS.get(arch).check_depth(depth)
            except HarnessInputError as exc:
                raise ValueError(str(exc)) from None
        return depth


class TeacherConfig(ModelConfig):
    """The ANN teacher: trained once per (dataset, teacher config, seed) and cached."""

    depth: PositiveInt = 18
    epochs: PositiveInt = 8
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    # None: the trial's seed (each student seed gets its own teacher). Fix it to distil every
    # student from one teacher, as with a downloaded pre-trained one.
    seed: Annotated[int, Field(ge=0)] | None = None

    def seed_for(self, trial_seed: int) -> int:
        """The seed this teacher is trained with in a trial seeded `trial_seed`."""
        return trial_seed if self.seed is None else self.seed


class SNNConfig(_Section):
    """Spiking neuron and simulation settings of the student (DESIGN §2, LIF)."""

    time_steps: Annotated[int, Field(ge=1, le=1024)] = 4
    tau: Annotated[float, Field(gt=1.0)] = 2.0
    v_threshold: PositiveFloat = 1.0
    reset: Literal["hard", "soft"] = "hard"
    surrogate: Literal["atan", "sigmoid", "triangle"] = "atan"
    surrogate_alpha: PositiveFloat | None = None
    detach_reset: bool = False


class KDConfig(_Section):
    """Response KD weight/temperature; feature KD on when `beta > 0`."""

    alpha: Fraction = 0.5
    temperature: PositiveFloat = 4.0
    beta: Annotated[float, Field(ge=0)] = 0.0
    student_layer: str = "pool"
    teacher_layer: str = "pool"


class DirectConfig(_Section):
    """Direct training: cross-entropy through the surrogate, optionally TET."""

    tet: bool = False


class ConversionConfig(_Section):
    """ANN-to-SNN conversion: `qcfs` (quantised ANN, thresholds learned) or threshold
    balancing of a ReLU ANN from the `max` or `percentile` of its activations."""

    variant: Literal["qcfs", "max", "percentile"] = "qcfs"
    levels: Annotated[int, Field(ge=1, le=256)] = 8
    # 2.0 rather than QCFS's 8.0: a short run barely moves lambda, and at 8.0 the ANN ended
    # 2-4 points lower on digits (measured by tests/baselines/test_conversion_core.py's author).
    threshold_init: PositiveFloat = 2.0
    percentile: Annotated[float, Field(gt=0, le=100)] = 99.9


class TrainConfig(_Section):
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
    threads: Annotated[int, Field(ge=0)] = 0
    # Spiking students only (kd, direct): recompute each residual/VGG block in the backward
    # pass instead of storing its activations over all T steps. Same results; less memory for
    # one more forward pass per step (figures in BENCHMARKS.md).
    checkpoint_activations: bool = False


class EvalConfig(_Section):
    """What the final evaluation measures (test accuracy, time-step curve, noise)."""

    reference_time_steps: Annotated[int, Field(ge=1, le=1024)] = 4
    time_steps: tuple[Annotated[int, Field(ge=1, le=1024)], ...] = (1, 2, 4, 8)
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
        from harness.noise import NOISES, check_level

        for name, levels in noise.items():
            _lookup(NOISES, name)
            for level in levels:
                try:
                    check_level(name, level)
                except HarnessInputError as exc:
                    raise ValueError(str(exc)) from None
        return noise


class TrialConfig(_Section):
    """Everything one trial needs; frozen, logged to MLflow and stored in every checkpoint."""

    method: str = "kd"
    seed: Annotated[int, Field(ge=0)] = 0
    dataset: DatasetConfig = DatasetConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: ModelConfig = ModelConfig()
    snn: SNNConfig = SNNConfig()
    kd: KDConfig = KDConfig()
    direct: DirectConfig = DirectConfig()
    conversion: ConversionConfig = ConversionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from harness.methods import METHODS

        return _lookup(METHODS, name)

    def flat(self) -> dict[str, Any]:
        """The config as dotted keys (`kd.alpha`, ...), the form used for MLflow params."""
        return flatten(self.model_dump(mode="json"))


class Distribution(_Section):
    """One searched dimension: exactly one of `categorical`, `int` or `float`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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


class SchedulerConfig(_Section):
    """Early stopping of the search: ASHA on epochs, or none."""

    name: Literal["asha", "none"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0


class SearchConfig(_Section):
    """How the sweep searches: per-method budget, concurrency, objective, sampler, final stage."""

    num_samples: PositiveInt = 8
    max_concurrent: PositiveInt = 2
    metric: Literal["val_accuracy", "train_loss"] = "val_accuracy"  # reported every epoch, for ASHA
    mode: Literal["max", "min"] = "max"
    sampler: Literal["tpe", "random"] = "tpe"
    seed: Annotated[int, Field(ge=0)] = 0
    scheduler: SchedulerConfig = SchedulerConfig()
    final_repeats: Annotated[int, Field(ge=0)] = 3
    # T values the final stage retrains KD and direct at, besides eval.reference_time_steps;
    # None: every eval.time_steps value. Other T of the curve are then read off those runs.
    final_time_steps: tuple[Annotated[int, Field(ge=1, le=1024)], ...] | None = None


class ResourcesConfig(_Section):
    """Per-trial resources; fractional GPUs share a device (a scheduling promise only)."""

    cpu: PositiveFloat = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0


class SpaceFile(_Section):
    """A search-space file (DESIGN §4)."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    methods: tuple[str, ...] = ("kd",)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Distribution] = Field(default_factory=dict)
    search: SearchConfig = SearchConfig()
    eval: dict[str, Any] = Field(default_factory=dict)
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        from harness.methods import METHODS

        if not methods:
            raise ValueError("expected at least one method")
        for name in methods:
            _lookup(METHODS, name)
        return methods


def _lookup(registry: Registry[Any], name: str) -> str:
    """Checks `name` is registered; a ValueError lets pydantic name the offending key."""
    try:
        registry.get(name)
    except HarnessInputError as exc:
        raise ValueError(str(exc)) from None
    return name


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


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested dicts; a key that is both a leaf and a section is an error."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise HarnessInputError(f"{dotted}: {'.'.join(parents)} is a value, not a section")
        if isinstance(node.get(leaf), dict) and not isinstance(value, Mapping):
            raise HarnessInputError(f"{dotted}: is a section; set one of its keys instead")
        node[leaf] = value
    return tree


def parse_override(text: str) -> tuple[str, Any]:
    """Parses one `--set key=value`; the value is read as YAML (`4`, `0.5`, `[1, 2]`, `true`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise HarnessInputError(f"--set {text!r}: expected key=value, e.g. --set kd.alpha=0.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _section_keys(root: type[BaseModel], parents: tuple[Any, ...]) -> list[str]:
    """The keys a section accepts, found by walking the schema from `root` along `parents`."""
    model: Any = root
    for part in parents:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return sorted(model.model_fields)


def _describe_error(error: Mapping[str, Any], root: type[BaseModel]) -> tuple[str, str]:
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        keys = _section_keys(root, tuple(error["loc"][:-1]))
        return loc, f"unknown key; expected one of: {', '.join(keys)}" if keys else "unknown key"
    if error["type"] == "value_error":  # our validators' messages already name the value
        return loc, error["msg"].removeprefix("Value error, ")
    return loc, f"{error['msg']} (got {error.get('input')!r})"


def _one_line(
    where: str, error: ValidationError, root: type[BaseModel], origin: Mapping[str, str] | None = None
) -> str:
    """The first validation error as `<where>: <dotted key>: <what was expected>`."""
    first = error.errors()[0]
    loc, message = _describe_error(first, root)
    if origin is not None:
        for dotted, source in origin.items():
            if loc == dotted or loc.startswith(dotted + "."):
                return f"{source}: {message}"
    return f"{where}: {loc}: {message}"


def load_space(path: str | Path) -> SpaceFile:
    """Reads and validates a search-space file.

    Raises:
        HarnessInputError: the file is unreadable, not YAML, or breaks the schema; the message
            names the file and the first offending field.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read the space file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HarnessInputError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise HarnessInputError(f"{path}: expected a mapping with `name`, `methods`, `fixed`, ...")
    try:
        space = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessInputError(_one_line(str(path), exc, SpaceFile)) from None
    # The fixed values and eval block must form a valid trial on their own, and so must every
    # value a searched dimension can take.
    resolve_trial_config(space, method=space.methods[0], source=str(path))
    for key, dist in space.space.items():
        for value in dist.values_to_check():
            try:
                resolve_trial_config(space, method=space.methods[0], overrides=[(key, value)], source=str(path))
            except HarnessInputError as exc:
                detail = str(exc).split(": ", 2)[-1]
                raise HarnessInputError(f"{path}: space.{key}: value {value!r} is invalid: {detail}") from None
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
        source: The file name used in error messages.

    Raises:
        HarnessInputError: naming `--set <key>` or `<file>: fixed.<key>` and what was expected.
    """
    flat: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in space.fixed.items():
        flat[key] = value
        origin[key] = f"{source}: fixed.{key}"
    for key, value in flatten(space.eval, "eval.").items():
        flat[key] = value
        origin[key] = f"{source}: {key}"
    flat["method"] = method or space.methods[0]
    origin["method"] = "--method" if method else f"{source}: methods"
    for key, value in overrides:
        flat[key] = value
        origin[key] = f"--set {key}"
    try:
        return TrialConfig.model_validate(unflatten(flat))
    except ValidationError as exc:
        raise HarnessInputError(_one_line(source, exc, TrialConfig, origin)) from None
    except HarnessInputError as exc:  # a key used both as a value and as a section
        raise HarnessInputError(f"{source}: {exc}") from None
