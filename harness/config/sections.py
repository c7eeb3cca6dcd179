"""The core sections of a trial config, and `TrialConfig`, the frozen config of one trial.

A search-space file (docs/ARCHITECTURE.md, "The search-space file") names values with dotted
keys (`student.depth`, `kd.temperature`, ...). `TrialConfig` is the same tree as small frozen
pydantic models that reject unknown keys, wrong types and non-finite numbers. Who owns which
keys:

- The harness owns the core sections: `method`, `seed`, `dataset.*` (`harness.data.DatasetConfig`),
  `teacher.*`, `student.*`, `snn.*`, `encoding.*`, `train.*`, `eval.*`.
- A method owns the section named after it (`kd.*` belongs to `kd`, a plugin's `dkd.*` to
  `dkd`) and validates it itself (`Method.options`). `TrialConfig.options` holds it; the
  config dumps and flattens it under the method's name (`kd.alpha`), and `config.kd` reads it.
- A model family owns the arguments of `student.*` / `teacher.*` beside `arch`: a
  `harness.models.ModelArgs` subclass, chosen by `arch`, validates them. The teacher's own
  training keys (`teacher.epochs`, ...) sit beside them in the file and apart from them here
  (`TeacherConfig.model` is the family's arguments).

Nothing here knows a method: `harness.config.resolve` builds a `TrialConfig` from a tree
(`build_trial_config`), asking the method named in it for its section's class.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.attacks import AttackConfig, attack_options
from harness.config.base import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    TimeSteps,
    error_at,
    registered,
)
from harness.config.dotted import flatten
from harness.data.augment import AUGMENTATIONS, AUTO
from harness.data.entry import DATASETS, DatasetConfig
from harness.errors import HarnessInputError, PluginError
from harness.models.args import MODELS, ModelArgs, family_name, model_family
from harness.models.encoders import ENCODERS
from harness.noise import NOISES, check_level, is_event_noise
from harness.noise.presets import noise_preset

DEFAULT_METHOD = "kd"

# What `student.*` and `teacher.*` default to. A key given without `arch` adds to these; another
# `arch` starts from that family's own defaults.
STUDENT_DEFAULTS: dict[str, Any] = {"arch": "resnet"}
TEACHER_DEFAULTS: dict[str, Any] = {"arch": "resnet", "depth": 18}

OPTIONS_FIELD = "options"
"""`TrialConfig`'s field for the method's own section; in a file and in a dump it is the method's name."""


def _family(arch: Any) -> type[ModelArgs]:
    """The family `arch` names; an unknown one is an error at `<section>.arch`."""
    try:
        return model_family(arch)
    except HarnessInputError as exc:
        if isinstance(exc, PluginError):
            raise
        raise error_at(("arch",), arch, message=str(exc)) from None


def _family_arguments(value: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[type[ModelArgs], dict[str, Any]]:
    """The family `value` names and the arguments to validate it with: `defaults` under them
    when `value` keeps the default family, else only `arch`."""
    arch = value.get("arch", defaults["arch"])
    family = _family(arch)
    base = defaults if arch == defaults["arch"] else {"arch": arch}
    return family, {**base, **value}


class TeacherConfig(Section):
    """`teacher.*`: the ANN teacher, trained once per (dataset, teacher config, seed), then cached.

    In the file its family's arguments (`teacher.arch`, `teacher.depth`, ...) sit beside its
    training keys; here the family validates its own (`model`) and the training keys are this
    section's fields. A dump puts them side by side again.
    """

    # 0: use `checkpoint` as it is; more: train (or, from a checkpoint, fine-tune) that long.
    epochs: NonNegativeInt = 8
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    # None: the trial's seed (each student seed gets its own teacher). Fix it to distil every
    # student from one teacher, as with a downloaded pre-trained one.
    seed: NonNegativeInt | None = None
    # A pre-trained teacher: a state dict of the family's network (`harness.teacher`), read with
    # `torch.load(..., weights_only=True)`; the path is made absolute when the config is built.
    checkpoint: str | None = None
    model: SerializeAsAny[ModelArgs]

    @field_validator("checkpoint")
    @classmethod
    def _absolute_existing_file(cls, path: str | None) -> str | None:
        if path is None:
            return None
        absolute = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(absolute):
            raise ValueError(f"no such file: {absolute}")
        return absolute

    @model_validator(mode="after")
    def _epochs_or_checkpoint(self) -> TeacherConfig:
        if self.epochs == 0 and self.checkpoint is None:
            raise error_at(("epochs",), 0, message="0 epochs uses a pre-trained teacher: set teacher.checkpoint")
        return self

    @property
    def arch(self) -> str:
        """The teacher's model family."""
        return self.model.arch

    def seed_for(self, trial_seed: int) -> int:
        """The seed this teacher is trained with in a trial seeded `trial_seed`."""
        return trial_seed if self.seed is None else self.seed

    @classmethod
    def training_keys(cls) -> frozenset[str]:
        """The keys of `teacher.*` that are the harness's, not the family's."""
        return frozenset(cls.model_fields) - {"model"}

    @model_validator(mode="wrap")
    @classmethod
    def _family_and_training(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> TeacherConfig:
        if isinstance(value, TeacherConfig):
            return value
        if isinstance(value, ModelArgs):  # a family's arguments given as a teacher's: default training
            value = value.model_dump()
        if not isinstance(value, Mapping):
            return handler(value)  # pydantic's own "expected a mapping" error
        training = cls.training_keys()
        family, arguments = _family_arguments({k: v for k, v in value.items() if k not in training}, TEACHER_DEFAULTS)
        clash = sorted((set(family.model_fields) & training) | ({"model"} & set(family.model_fields)))
        if clash:
            provider = MODELS.providers(family_name(arguments["arch"]))[0].describe()
            raise PluginError(f"{provider}: its argument {clash[0]!r} collides with teacher.{clash[0]} of the harness")
        model = family.model_validate(arguments)
        return handler({**{k: v for k, v in value.items() if k in training}, "model": model})

    @model_serializer(mode="wrap")
    def _side_by_side(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {**data.pop("model"), **data}


class SNNConfig(Section):
    """Spiking neuron and simulation settings of the student (docs/ARCHITECTURE.md, "The science")."""

    time_steps: TimeSteps = 4
    tau: Annotated[float, Field(gt=1.0)] = 2.0
    v_threshold: PositiveFloat = 1.0
    reset: Literal["hard", "soft"] = "hard"
    surrogate: Literal["atan", "sigmoid", "triangle"] = "atan"
    surrogate_alpha: PositiveFloat | None = None
    detach_reset: bool = False


class EncodingConfig(Section):
    """How the data become the spiking network's input over T steps (`harness.models.encoders`).

    `auto` (the default) becomes the dataset's own (`DatasetEntry.encoding`: `direct` for
    images, `events` for event frames) when the trial config is built."""

    name: str = AUTO

    @field_validator("name")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        return name if name == AUTO else registered(ENCODERS, name)


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
    # A registered policy (`harness.data.augment`); `auto` becomes the dataset's own default
    # when the trial config is built, so every record names the policy that ran.
    augment: str = AUTO
    eval_batch_size: PositiveInt = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegativeInt = 0
    # Spiking students only (kd, direct): recompute each residual/VGG block in the backward
    # pass instead of storing its activations over all T steps. Same results; less memory for
    # one more forward pass per step (figures in BENCHMARKS.md).
    checkpoint_activations: bool = False
    # bf16: autocast to bfloat16 on CUDA, membranes in fp32 (`harness.training.precision`).
    precision: Literal["fp32", "bf16"] = "fp32"

    @field_validator("augment", mode="before")
    @classmethod
    def _policy_not_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):  # the key was a switch before policies were named
            raise ValueError(
                f"expected a policy name ({AUTO}, {', '.join(AUGMENTATIONS.names())}); true was {AUTO}, false none"
            )
        return value

    @field_validator("augment")
    @classmethod
    def _known_augmentation(cls, name: str) -> str:
        return name if name == AUTO else registered(AUGMENTATIONS, name)


class EvalConfig(Section):
    """What the final evaluation measures (test accuracy, time-step curve, noise)."""

    reference_time_steps: TimeSteps = 4
    time_steps: tuple[TimeSteps, ...] = (1, 2, 4, 8)
    noise: dict[str, tuple[Annotated[float, Field(ge=0)], ...]] = Field(default_factory=dict)
    # L-infinity attacks (`harness.attacks`): name -> its options (`{eps: [...], steps: 10}`; a
    # list of eps is short for `{eps: [...]}`), each eps an `attack/<name>/<eps>` metric.
    attacks: dict[str, SerializeAsAny[AttackConfig]] = Field(default_factory=dict)

    @field_validator("attacks", mode="before")
    @classmethod
    def _known_attacks(cls, attacks: Any) -> Any:
        # Errors at `eval.attacks.<name>[.<key>]`, each naming the attack and key (`attack_options`).
        if not isinstance(attacks, Mapping):
            return attacks  # pydantic's own "expected a mapping"
        return {
            name: value if isinstance(value, AttackConfig) else attack_options(name, value)
            for name, value in attacks.items()
        }

    @field_validator("time_steps")
    @classmethod
    def _sorted_unique(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("expected at least one time step")
        return tuple(sorted(set(steps)))

    @field_validator("noise", mode="before")
    @classmethod
    def _preset(cls, noise: Any) -> Any:
        # `eval.noise: cifar-c` names a preset (`harness.noise.presets`): it becomes its levels
        # here, so the resolved config (and what a run logs) holds the levels themselves.
        if not isinstance(noise, str):
            return noise
        try:
            return noise_preset(noise)
        except HarnessInputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("noise")
    @classmethod
    def _known_noise(cls, noise: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        # Errors at `eval.noise.<name>`, so a message names the `--set eval.noise.<name>` (or
        # the file's key) that brought the offending noise.
        for name, levels in noise.items():
            try:
                registered(NOISES, name)
                for level in levels:
                    check_level(name, level)
            except (ValueError, HarnessInputError) as exc:
                raise error_at((name,), levels, message=str(exc)) from None
        return noise


ALWAYS_READ = frozenset({"method", "seed", "dataset", "student", "encoding", "train", "eval"})
"""Top-level keys every method reads; `Method.reads` adds `teacher`, `snn`, its own section is added too."""


class TrialConfig(Section):
    """Everything one trial needs; frozen, logged to MLflow and stored in every checkpoint.

    Build one with `harness.config.resolve.build_trial_config(tree)` (or `trial_config(flat)`),
    which validates the method's own section with the method's class and puts it in `options`.
    A dump (`model_dump`, `flat`) names that section after the method, as the file does.
    """

    method: str = DEFAULT_METHOD
    seed: NonNegativeInt = 0
    dataset: DatasetConfig = DatasetConfig()
    teacher: TeacherConfig = Field(default=TEACHER_DEFAULTS, validate_default=True)
    student: SerializeAsAny[ModelArgs] = Field(default=STUDENT_DEFAULTS, validate_default=True)
    snn: SNNConfig = SNNConfig()
    encoding: EncodingConfig = EncodingConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    options: SerializeAsAny[Section] | None = None
    """The method's own section (`kd.*` for `kd`), or None when the method takes none."""

    @field_validator("student", mode="wrap")
    @classmethod
    def _student_family(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> ModelArgs:
        if isinstance(value, ModelArgs):
            return value
        if not isinstance(value, Mapping):
            return handler(value)  # pydantic's own "expected a mapping" error
        family, arguments = _family_arguments(value, STUDENT_DEFAULTS)
        if family.ann_only:
            message = f"{arguments['arch']} builds ANNs only: use it as teacher.arch, not as a spiking student"
            raise error_at(("arch",), arguments["arch"], message=message)
        return family.model_validate(arguments)

    @model_validator(mode="after")
    def _dataset_defaults(self) -> TrialConfig:
        # `auto` is the dataset's own policy and encoding (`DatasetEntry.augment`, `.encoding`),
        # decided here once: everything downstream (the loop, MLflow, the teacher's key) reads
        # the names.
        entry = DATASETS.get(self.dataset.name)
        if self.train.augment == AUTO:
            policy = registered(AUGMENTATIONS, entry.augment)
            object.__setattr__(self, "train", self.train.model_copy(update={"augment": policy}))
        if self.encoding.name == AUTO:
            name = registered(ENCODERS, entry.encoding)
            object.__setattr__(self, "encoding", self.encoding.model_copy(update={"name": name}))
        if ENCODERS.get(self.encoding.name).takes_frames != entry.frames:
            what = "event frames" if entry.frames else "images"
            raise error_at(
                ("encoding", "name"),
                self.encoding.name,
                message=f"dataset {self.dataset.name!r} holds {what}, which encoding {self.encoding.name!r} "
                f"does not take; use {entry.encoding!r} (or leave encoding.name out)",
            )
        for noise in self.eval.noise:
            if is_event_noise(noise) != entry.frames:
                kinds = ("event streams", "images") if entry.frames else ("images", "event streams")
                raise error_at(
                    ("eval", "noise", noise),
                    list(self.eval.noise[noise]),
                    message=f"noise {noise!r} corrupts {kinds[1]}, and dataset {self.dataset.name!r} holds {kinds[0]}",
                )
        if entry.frames and self.eval.attacks:
            name = next(iter(self.eval.attacks))
            raise error_at(
                ("eval", "attacks", name),
                list(self.eval.attacks[name].eps),
                message=f"attack {name!r} perturbs images in [0, 1]; dataset {self.dataset.name!r} holds event frames",
            )
        if entry.frames and self.dataset.image_size is not None:
            raise error_at(
                ("dataset", "image_size"), self.dataset.image_size, message="event data keeps its sensor's size"
            )
        return self

    @model_serializer(mode="wrap")
    def _options_named_after_the_method(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        options = data.pop(OPTIONS_FIELD, None)
        if self.options is not None:
            data[self.method] = options
        return data

    def __getattr__(self, name: str) -> Any:
        # `config.kd` is the `kd` trial's own section, as the file names it.
        fields = self.__dict__
        if name == fields.get("method") and fields.get(OPTIONS_FIELD) is not None:
            return fields[OPTIONS_FIELD]
        return super().__getattr__(name)  # type: ignore[misc]

    def flat(self) -> dict[str, Any]:
        """The config as dotted keys (`kd.alpha`, ...), the form used for MLflow params."""
        return flatten(self.model_dump(mode="json"))

    def params(self, read: Collection[str]) -> dict[str, Any]:
        """`flat()` restricted to the top-level sections in `read` (`Method.read_sections()`):
        what a run logs as params."""
        return {key: value for key, value in self.flat().items() if key.split(".")[0] in read}


def core_sections() -> frozenset[str]:
    """The top-level keys the harness owns (a method may not be named like one)."""
    return frozenset(TrialConfig.model_fields) - {OPTIONS_FIELD}
