"""Adversarial attacks on test images in [0, 1] pixel space, L-infinity bounded: the registry.

An attack is a registered `Attack` subclass, found through the entry-point group
`snn_kd_harness.attacks` (`ATTACKS`); the entry point's name is the name used in YAML
(`eval.attacks: {pgd: {eps: [0.03]}}`). The built-ins register the same way (pyproject.toml):

- `fgsm` (`harness.attacks.gradient`): one signed-gradient step of size eps;
- `pgd` (`harness.attacks.gradient`): projected gradient descent, optionally from a seeded
  random start;
- `transfer` (`harness.attacks.transfer`): PGD crafted once on the ANN teacher of `teacher.*`
  and cached beside it, so that every method sees the same adversarial images;
- `square` (`harness.attacks.square`): the gradient-free, score-based Square attack on a seeded
  subset of the test split, which tells whether a white-box figure is inflated by gradient
  masking.

An attack declares its options (`Attack.options`, an `AttackConfig` subclass: `eps`, the
budgets it is measured at, and its own keys, all with defaults) and whether it needs the ANN
teacher (`Attack.needs_teacher`). It sees the network through an `AttackTarget`: the input
gradient of the method's attack model (what `Method.attack_model` declares: for a spiking
network its surrogate gradient, BPTT over T), the attack model's logits, the scores of the
network that is evaluated (for score-based attacks), and the teacher on demand. It returns
adversarial images within eps of the clean ones in L-infinity and in [0, 1]; the harness
checks both (`check_adversarial`) and evaluates them on the method's network at its evaluation
T (`harness.attacks.evaluate`).

A plugin's attack::

    class NoiseAttack(Attack):
        def perturb(self, target, images, labels, eps, indices):
            return (images + eps * torch.randn_like(images).sign()).clamp(0, 1)

registered in its package's metadata as
`[project.entry-points."snn_kd_harness.attacks"] noise_sign = "my_package:NoiseAttack"`.

This module is a leaf (torch, the config base and the registry): the trial config validates
`eval.attacks` with it.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import ValidationError, field_validator
from torch import Tensor, nn

from harness.config.base import Section, error_at
from harness.data.stream import batches_of
from harness.errors import HarnessInputError, PluginError
from harness.registry import GROUP_PREFIX, Registry

__all__ = [
    "ATTACKS",
    "SURROGATE_GRADIENT",
    "Attack",
    "AttackConfig",
    "AttackModel",
    "AttackTarget",
    "InputGradient",
    "Logits",
    "TeacherSource",
    "attack_options",
    "attack_seed",
    "attacks_need_teacher",
    "check_adversarial",
    "check_attack",
    "create_attack",
    "list_attacks",
    "margins",
    "sample_generators",
]

InputGradient = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(images in [0, 1], labels) -> (the gradient of the summed cross-entropy with respect to the
images, the logits `[B, K]`, detached): one forward and one backward pass of a model."""

Logits = Callable[[Tensor], Tensor]
"""images in [0, 1] -> logits `[B, K]` (no gradient)."""

SURROGATE_GRADIENT = "the spiking network itself, through its surrogate gradient (BPTT over T)"
"""What a white-box attack differentiates by default (`Method.attack_model`)."""


class AttackConfig(Section):
    """The options every attack takes: `eps`, the L-infinity budgets it is measured at, in pixel
    units of images in [0, 1] (`attack/<name>/<eps>`, one metric each). Subclass it for an
    attack's own keys, each with a default."""

    eps: tuple[float, ...] = ()

    @field_validator("eps")
    @classmethod
    def _budgets_in_pixel_range(cls, eps: tuple[float, ...]) -> tuple[float, ...]:
        for value in eps:
            if not 0 <= value <= 1:
                raise ValueError(f"every eps must be in [0, 1] (pixels in [0, 1]), got {value:g}")
        return tuple(sorted(set(eps)))


@dataclass(frozen=True)
class AttackModel:
    """What a method's white-box attacks differentiate (`Method.attack_model`).

    Attributes:
        network: A network of `harness.models` (`network(images, time_steps)` -> per-step
            logits `[T', B, K]`, the logits their mean); the harness runs it in eval mode, its
            state reset before and after each forward pass, with gradients on.
        time_steps: The T it runs at (the method's evaluation T for a spiking network; 1 for an ANN).
        description: One line saying what it is and through what gradient (logged with the attack).
    """

    network: nn.Module
    time_steps: int
    description: str = SURROGATE_GRADIENT


@dataclass(frozen=True)
class TeacherSource:
    """The ANN teacher of `teacher.*` as an attack sees it (`AttackTarget.teacher`).

    Attributes:
        gradient: Its input gradient (fp32, eval mode, whatever the trial's precision).
        logits: Its logits.
        key: Its cache key (`harness.teacher.teacher_key_of`).
        folder: Its folder in the teacher cache, where an attack may cache what it crafts on it.
    """

    gradient: InputGradient
    logits: Logits
    key: str
    folder: Path


@dataclass(frozen=True)
class AttackTarget:
    """What an attack runs against.

    Attributes:
        gradient: The input gradient of the method's attack model (`Method.attack_model`: by
            default the spiking network itself, through its surrogate, BPTT over T).
        logits: The attack model's logits, without gradient.
        scores: The logits of the network that is evaluated (the method's network at its
            evaluation T), without gradient: what a score-based attack queries.
        batch_size: Images per forward pass.
        teacher: The ANN teacher of `teacher.*`, loaded (or trained) through the teacher cache
            on the first call; for attacks that declare `needs_teacher`.
        test_digest: The test split's digest (its data and indices), for caches of adversarial images.
        log: Progress messages.
        exact: Whether the attack model is the evaluated network itself (its `logits` are the
            `scores`): an image it misclassifies is lost, and an attack may stop on it.
    """

    gradient: InputGradient
    logits: Logits
    scores: Logits
    batch_size: int
    teacher: Callable[[], TeacherSource]
    test_digest: str = ""
    log: Callable[[str], None] = lambda _: None
    exact: bool = False


class Attack(ABC):
    """One L-infinity attack on test images in [0, 1].

    Subclasses implement `perturb` (a batch at a time); one that attacks a subset of the test
    split overrides `attacked`, one that crafts the whole split at once (and caches it)
    overrides `batches`.

    Args:
        name: The name it is registered (and configured) under.
        options: Its validated options (`options`).
    """

    options: ClassVar[type[AttackConfig]] = AttackConfig
    """Its config section under `eval.attacks.<name>`: `eps` and its own keys, with defaults."""
    needs_teacher: ClassVar[bool] = False
    """It crafts its images on the ANN teacher of `teacher.*`: a sweep trains that teacher up
    front for every method whose config asks for this attack."""

    def __init__(self, name: str, options: AttackConfig) -> None:
        self.name = name
        self.config = options

    def attacked(self, n: int) -> Tensor | None:
        """The positions (sorted, CPU int64) of the test images it attacks among `n`; None: all.
        The others are reported as not evaluated (`harness.predictions.NOT_EVALUATED`)."""
        del n
        return None

    def batches(self, target: AttackTarget, x: Any, y: Tensor, eps: float) -> Iterator[tuple[Tensor, Tensor]]:
        """(positions in the test split `[b]` (CPU), adversarial images `[b, C, H, W]`) batch by
        batch, over the images `attacked` names; `x` is the test split's images (a tensor or a
        streamed split: indexing by positions gives a batch on the device), `y` its labels."""
        chosen = self.attacked(len(x))
        positions = torch.arange(len(x)) if chosen is None else chosen
        order = list(positions.split(target.batch_size))
        for index, images in zip(order, batches_of(x, order), strict=True):
            yield index, self.perturb(target, images, y[index.to(y.device)], eps, index)

    @abstractmethod
    def perturb(self, target: AttackTarget, images: Tensor, labels: Tensor, eps: float, indices: Tensor) -> Tensor:
        """Adversarial versions of a batch of clean `images` (`[B, C, H, W]` in [0, 1]), within
        `eps` of them in L-infinity and in [0, 1]; `indices` are their positions in the test
        split (for per-image seeds, `attack_seed`)."""


def check_attack(name: str, entry: Any) -> None:
    """`ATTACKS`' check: a concrete `Attack` subclass whose options are an `AttackConfig` with a
    default for every key.

    Raises:
        TypeError, ValueError: one sentence on what is wrong (the registry names the plugin).
    """
    if not (isinstance(entry, type) and issubclass(entry, Attack)):
        raise TypeError(f"expected a subclass of harness.attacks.Attack, got {entry!r}")
    if getattr(entry, "__abstractmethods__", None):
        raise TypeError(f"{entry.__name__} does not implement {', '.join(sorted(entry.__abstractmethods__))}")
    if not (isinstance(entry.options, type) and issubclass(entry.options, AttackConfig)):
        raise TypeError("options must be a subclass of harness.attacks.AttackConfig")
    if not isinstance(entry.needs_teacher, bool):
        raise TypeError("needs_teacher must be a bool")
    try:
        entry.options()
    except Exception as exc:  # noqa: BLE001 - whatever a plugin's section raises, say which
        raise ValueError(f"its options need a default for every key ({type(exc).__name__})") from None


ATTACKS: Registry[type[Attack]] = Registry(GROUP_PREFIX + "attacks", "attack", check_attack)


def list_attacks() -> list[str]:
    """The registered attack names, sorted."""
    return ATTACKS.names()


def attack_options(name: str, value: Any) -> AttackConfig:
    """The options of attack `name` from the file's form: a list of eps (shorthand for
    `{eps: [...]}`) or a mapping of its keys; at least one eps.

    Raises:
        ValidationError: located within `eval.attacks` (`(name,)` or `(name, key)`), each
            message naming the attack and the option, so that a `--set eval.attacks={...}` of
            the whole mapping still says which key.
        PluginError: the attack's entry point is broken.
    """
    try:
        cls = ATTACKS.get(name)
    except PluginError:
        raise
    except HarnessInputError as exc:
        raise error_at((name,), value, message=str(exc)) from None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = {"eps": list(value)}
    if not isinstance(value, Mapping):
        message = f"attack {name!r} takes a list of eps or a mapping of its options, got {value!r}"
        raise error_at((name,), value, message=message)
    try:
        options = cls.options.model_validate(dict(value))
    except ValidationError as exc:
        raise _option_error(name, cls.options, exc) from None
    if not options.eps:
        raise error_at((name, "eps"), list(options.eps), message=f"attack {name!r} needs at least one eps")
    return options


def _option_error(name: str, options: type[AttackConfig], error: ValidationError) -> ValidationError:
    """The first error of an attack's options at `(name, key)`, its message naming the attack and key."""
    line = error.errors(include_url=False)[0]
    loc = tuple(line["loc"])
    key = ".".join(str(part) for part in loc)
    if line["type"] == "extra_forbidden":
        expected = ", ".join(sorted(options.model_fields))
        message = f"attack {name!r} has no option {key!r}; expected one of: {expected}"
    else:
        detail = line["msg"].removeprefix("Value error, ")
        given = "" if line["type"] == "value_error" else f" (got {line.get('input')!r})"
        message = f"attack {name!r}, option {key!r}: {detail}{given}"
    return error_at((name, *loc), line.get("input"), message=message)


def create_attack(name: str, **options: Any) -> Attack:
    """The attack registered as `name` with `options` (its keys: `eps=[0.03], steps=10`, ...).

    Raises:
        HarnessInputError: an unknown attack or options it refuses (one line).
    """
    try:
        validated = attack_options(name, options)
    except ValidationError as exc:
        line = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in line["loc"])
        raise HarnessInputError(f"eval.attacks.{where}: {line['msg'].removeprefix('Value error, ')}") from None
    return ATTACKS.get(name)(name, validated)


def attacks_need_teacher(attacks: Mapping[str, Any]) -> bool:
    """Whether any attack of `eval.attacks` crafts its images on the ANN teacher."""
    return any(ATTACKS.get(name).needs_teacher for name in attacks)


# -- shared pieces of the built-ins ------------------------------------------------------------


def attack_seed(name: str, eps: float, seed: int, index: int) -> int:
    """A stable 63-bit seed for one (attack, eps, seed option, test image): the first 8 bytes of
    `blake2b("<name>/<eps>/<seed>/<index>")`, the same on every machine and process, so an
    image's random draws depend on nothing but these (not its batch, device or method)."""
    key = f"{name}/{float(eps)!r}/{int(seed)}/{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & (2**63 - 1)


def sample_generators(name: str, eps: float, seed: int, indices: Tensor) -> list[torch.Generator]:
    """One CPU generator per image of a batch, seeded by `attack_seed`."""
    return [torch.Generator().manual_seed(attack_seed(name, eps, seed, int(i))) for i in indices.tolist()]


def margins(logits: Tensor, labels: Tensor) -> Tensor:
    """Per image, the true class's logit minus the largest other one: negative when misclassified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf).amax(dim=1)
    return true - others


def check_adversarial(name: str, clean: Tensor, adversarial: Any, eps: float, tolerance: float = 1e-6) -> None:
    """An attack's images: a tensor of the clean images' shape, finite, in [0, 1] and within
    `eps` of them in L-infinity (up to float rounding, `tolerance`).

    Raises:
        PluginError: naming the attack, its entry point and what is wrong.
    """
    problem = None
    if not isinstance(adversarial, Tensor):
        problem = f"returned {type(adversarial).__name__}, not a tensor"
    elif adversarial.shape != clean.shape:
        problem = f"returned images of shape {list(adversarial.shape)} for clean ones of {list(clean.shape)}"
    elif not bool(torch.isfinite(adversarial).all()):
        problem = "returned non-finite values"
    elif float(adversarial.min()) < -tolerance or float(adversarial.max()) > 1 + tolerance:
        problem = "returned pixels outside [0, 1]"
    else:
        distance = float((adversarial.float() - clean.float()).abs().max()) if clean.numel() else 0.0
        if distance > eps + tolerance:
            problem = f"moved a pixel by {distance:.6g}, more than eps = {eps:g}"
    if problem is not None:
        providers = ATTACKS.providers(name)
        who = f" ({providers[0].describe()})" if providers else ""
        raise PluginError(f"attack {name!r}{who} {problem}; its images must stay in [0, 1] and within eps")
