"""Shared machinery of methods that train one network with the shared loop (KD, direct, conversion)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from torch import Tensor, nn

from harness.context import TrialContext, network_for
from harness.methods.base import Method, describe_method
from harness.models import SpikingNetwork, make_lif
from harness.training import Fitting


def build_student(ctx: TrialContext) -> SpikingNetwork:
    """The spiking student of `student.*` with LIF neurons from `snn.*` and the trial's encoding."""
    snn = ctx.config.snn
    lif = make_lif(
        tau=snn.tau,
        v_threshold=snn.v_threshold,
        reset=snn.reset,
        surrogate_name=snn.surrogate,
        surrogate_alpha=snn.surrogate_alpha,
        detach_reset=snn.detach_reset,
    )
    student = network_for(ctx, ctx.config.student, lif)
    student.checkpoint_activations = ctx.config.train.checkpoint_activations
    return student


class StudentMethod(Method):
    """Trains one network (`build_network()`, by default the spiking student) with the loss
    of the subclass: BPTT through the surrogate for KD and direct training; the conversion
    baseline trains its ANN here and converts it afterwards."""

    reads = frozenset({"snn"})

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.student = self.build_network()
        self.trainable: list[nn.Module] = [self.student, *self.build_extra_modules()]
        self.fitting = Fitting(
            self.trainable,
            cfg.train,
            epochs=cfg.train.epochs,
            samples=len(ctx.data.train_x),
            seed=cfg.seed,
            owner=describe_method(cfg.method),
        )

    def build_network(self) -> SpikingNetwork:
        """The network this method trains."""
        return build_student(self.ctx)

    def build_extra_modules(self) -> list[nn.Module]:
        """Modules trained with the student (e.g. feature-KD adapters); called once, after
        `self.student` exists."""
        return []

    @abstractmethod
    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """The training loss of one batch of images in [0, 1]; runs the student at `snn.time_steps`."""

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        data = self.ctx.data
        return {"train_loss": self.fitting.epoch(self.loss, data.train_x, data.train_y, epoch)}

    def network(self) -> SpikingNetwork:
        return self.student

    def state_dict(self) -> dict[str, Any]:
        return {**self.fitting.state_dict(), "config": self.ctx.config.model_dump(mode="json")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fitting.load_state_dict(state)
