"""The interface every way of producing an SNN implements (KD, direct training, conversion, a plugin's).

A method is a `Method` subclass registered under the entry-point group `snn_kd_harness.methods`
(`METHODS`); the entry point's name is the name used in YAML (`methods: [kd]`). It describes
itself:

- `options`: its own config section, a `harness.config.Section` subclass whose keys all have
  defaults. The section is named after the method (`kd.*` for `kd`), validated by the method
  (`validate_options`), overridable with `--set` and searchable in `space:` like every
  built-in key. None: the method takes none.
- `reads`: the core sections it reads beyond `harness.config.sections.ALWAYS_READ` (`snn`,
  `teacher`); a sweep samples only the dims of the sections a method reads, and a run logs
  only those params (`read_sections`).
- `capabilities` (`harness.contract.Capabilities`): whether it needs a teacher, trains at a T,
  reads its time-step curve off one run, which extra rows it adds to reports, and what its
  white-box attacks differentiate (`attack_gradient`, with `Method.attack_model`). The sweep
  and the reports act on these, never on names.
"""

from __future__ import annotations

import keyword
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from harness.attacks import AttackModel, attacks_need_teacher
from harness.config.base import Section
from harness.config.sections import ALWAYS_READ, OPTIONS_FIELD, TrialConfig, core_sections
from harness.context import TrialContext
from harness.contract import Capabilities
from harness.models import SpikingNetwork
from harness.registry import GROUP_PREFIX, Registry


class NoOptions(Section):
    """The section of a method that takes no options: any key is unknown."""


class Method(ABC):
    """One way of producing a spiking network.

    The trial loop calls `train_one_epoch` `train.epochs` times, evaluates `network()` at
    `eval_time_steps` after each epoch, and finally runs the shared final evaluation on it.
    """

    options: ClassVar[type[Section] | None] = None
    """The method's config section (named after the method), or None."""
    reads: ClassVar[frozenset[str]] = frozenset()
    """Core sections read beyond `ALWAYS_READ`: `snn` (a spiking student), `teacher`."""
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx

    @property
    def name(self) -> str:
        """The name the method is registered (and configured) under."""
        return self.ctx.config.method

    @classmethod
    def validate_options(cls, section: Any) -> Section | None:
        """This method's section from the file's form (a mapping; None: not given), or None
        when the method takes no options.

        Raises:
            ValidationError: located within the section (`alpha`, not `kd.alpha`).
        """
        model = cls.options or NoOptions
        validated = model.model_validate({} if section is None else section)
        return validated if cls.options is not None else None

    @classmethod  # noqa: B027 (an optional hook, a no-op for most methods)
    def preflight(cls, config: TrialConfig) -> None:
        """Checks a config before anything runs or is recorded (no data, no training).

        Raises:
            HarnessInputError: the config cannot work with this method.
        """

    @abstractmethod
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """Trains for one epoch; returns training metrics such as `train_loss`."""

    @abstractmethod
    def network(self) -> SpikingNetwork:
        """The spiking network to evaluate, in its current state."""

    @property
    def eval_time_steps(self) -> int:
        """T at which `val_accuracy`, `test_accuracy` and noise are measured: `snn.time_steps`
        for a method that trains at a T, else `eval.reference_time_steps`."""
        config = self.ctx.config
        return config.snn.time_steps if self.capabilities.trains_at_time_steps else config.eval.reference_time_steps

    def extra_metrics(self) -> dict[str, float]:
        """Method-specific final metrics (e.g. `teacher_test_accuracy`)."""
        return {}

    def attack_model(self) -> AttackModel:
        """What the white-box attacks of `eval.attacks` (`fgsm`, `pgd`) differentiate, with a
        one-line description (`harness.attacks.evaluate`). By default the spiking network
        itself at the evaluation T, through its surrogate gradient (BPTT over all T steps), as
        `Capabilities.attack_gradient = "surrogate"` declares. A method whose network has no
        usable gradient returns another differentiable network of the same images (and says
        which in `Capabilities.attack_gradient`); the adversarial images are evaluated on
        `network()` either way."""
        return AttackModel(self.network(), self.eval_time_steps)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training after a restart (weights, optimiser, RNG)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""


def check_method(name: str, entry: Any) -> None:
    """`METHODS`' check: a concrete `Method` subclass whose name can name its config section.

    Raises:
        TypeError, ValueError: one sentence on what is wrong (the registry names the plugin).
    """
    if not (isinstance(entry, type) and issubclass(entry, Method)):
        raise TypeError(f"expected a subclass of harness.methods.Method, got {entry!r}")
    if getattr(entry, "__abstractmethods__", None):
        raise TypeError(f"{entry.__name__} does not implement {', '.join(sorted(entry.__abstractmethods__))}")
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith(("model_", "_")):
        raise ValueError(f"the name {name!r} cannot name a config section (use letters, digits and _)")
    if name in core_sections() or name == OPTIONS_FIELD or hasattr(TrialConfig, name):
        raise ValueError(f"its config section {name!r} collides with the harness's own section {name!r}")
    if not isinstance(entry.capabilities, Capabilities):
        raise TypeError("capabilities must be a harness.contract.Capabilities")
    unknown = sorted(entry.reads - core_sections())
    if unknown:
        raise ValueError(f"reads names sections the harness does not have: {', '.join(unknown)}")
    if entry.capabilities.needs_teacher and "teacher" not in entry.reads | ALWAYS_READ:
        raise ValueError("it needs a teacher but does not read the `teacher` section")
    if not (isinstance(entry.capabilities.attack_gradient, str) and entry.capabilities.attack_gradient):
        raise TypeError("capabilities.attack_gradient must name what its white-box attacks differentiate")
    if entry.capabilities.trains_at_time_steps and "snn" not in entry.reads | ALWAYS_READ:
        raise ValueError("it trains at snn.time_steps but does not read the `snn` section")
    if entry.options is not None:
        if not (isinstance(entry.options, type) and issubclass(entry.options, Section)):
            raise TypeError("options must be a subclass of harness.config.Section")
        try:
            entry.options()
        except Exception as exc:  # noqa: BLE001 - whatever a plugin's section raises, say which
            raise ValueError(f"its options need a default for every key ({type(exc).__name__})") from None


METHODS: Registry[type[Method]] = Registry(GROUP_PREFIX + "methods", "method", check_method)


def describe_method(name: str) -> str:
    """`method 'kd' (entry point 'kd' (harness.methods.kd:KDMethod) of snn-kd-harness 0.1.0)`: for messages."""
    providers = METHODS.providers(name)
    return f"method {name!r}" + (f" ({providers[0].describe()})" if providers else "")


def create_method(name: str, ctx: TrialContext) -> Method:
    """Builds the method registered as `name` for one trial."""
    return METHODS.get(name)(ctx)


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return METHODS.names()


def uses_teacher(config: TrialConfig) -> bool:
    """Whether a trial of `config` uses the ANN teacher of `teacher.*`: its method distils from
    it (`Capabilities.needs_teacher`), or an attack of `eval.attacks` is crafted on it
    (`Attack.needs_teacher`: `transfer`). The one place that decides it: a sweep trains these
    teachers up front, a run is tagged with its teacher's key and its checkpoint is checked."""
    return METHODS.get(config.method).capabilities.needs_teacher or attacks_need_teacher(config.eval.attacks)


def read_sections(method: str) -> frozenset[str]:
    """The top-level keys a trial of `method` reads: `ALWAYS_READ`, its `reads`, its own section."""
    entry = METHODS.get(method)
    return ALWAYS_READ | entry.reads | ({method} if entry.options is not None else set())


def logged_params(config: TrialConfig) -> dict[str, Any]:
    """What a run of `config` logs as params: its dotted keys in the sections its method reads."""
    return config.params(read_sections(config.method))
