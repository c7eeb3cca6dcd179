"""The interface every way of producing an SNN implements (KD, direct training, conversion)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.config import ModelConfig, TrialConfig
from harness.data import DataSplits
from harness.models import ActivationFactory, SpikingNetwork, create_model


@dataclass(frozen=True)
class TrialContext:
    """What a method gets from the trial loop.

    Attributes:
        config: The resolved trial config.
        data: Dataset splits on `device`, images in [0, 1].
        device: Where tensors and networks live.
        teacher_cache: Folder of the content-addressed teacher cache.
        log: Progress messages for the user (stderr in `harness train`).
    """

    config: TrialConfig
    data: DataSplits
    device: torch.device
    teacher_cache: Path
    log: Callable[[str], None]


def network_for(
    ctx: TrialContext, spec: ModelConfig, activation: ActivationFactory, pool: str = "max", seed: int | None = None
) -> SpikingNetwork:
    """A network of `spec` (`teacher.*` or `student.*`) sized for the trial's data, on its device.

    Initialised from `seed` (default: the trial's seed) right here, so its weights do not
    depend on what ran before (a teacher trained or loaded, another network built).
    """
    torch.manual_seed(ctx.config.seed if seed is None else seed)
    data = ctx.data
    return create_model(
        spec.arch,
        depth=spec.depth,
        width=spec.width,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        activation=activation,
        pool=pool,
    ).to(ctx.device)


class Method(ABC):
    """One way of producing a spiking network, registered in `METHODS` under `name`.

    The trial loop calls `train_one_epoch` `train.epochs` times, evaluates `network()` at
    `eval_time_steps` after each epoch, and finally runs the shared final evaluation on it.
    """

    name: ClassVar[str]
    sections: ClassVar[frozenset[str]] = frozenset({"student", "train"})
    """Config sections the method reads; a sweep samples only the dims inside them."""

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx

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
        """T at which `val_accuracy`, `test_accuracy` and noise are measured."""
        return self.ctx.config.snn.time_steps

    def extra_metrics(self) -> dict[str, float]:
        """Method-specific final metrics (e.g. `teacher_test_accuracy`)."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training after a restart (weights, optimiser, RNG)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""
