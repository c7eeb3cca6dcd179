"""Shared machinery of methods that train a spiking student with BPTT (KD and direct)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from harness.methods.base import Method, TrialContext, network_for
from harness.models import SpikingNetwork, make_lif
from harness.training import make_optimizer, make_schedule, shift_for, train_one_epoch


def build_student(ctx: TrialContext) -> SpikingNetwork:
    """The spiking student of `student.*` with LIF neurons from `snn.*`."""
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

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.student = self.build_network()
        self.trainable: list[nn.Module] = [self.student, *self.build_extra_modules()]
        params = [p for module in self.trainable for p in module.parameters()]
        steps_per_epoch = -(-len(ctx.data.train_x) // cfg.train.batch_size)
        self.optimizer = make_optimizer(params, cfg.train)
        self.schedule = make_schedule(self.optimizer, cfg.train, cfg.train.epochs * steps_per_epoch)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def build_network(self) -> SpikingNetwork:
        """The network this method trains."""
        return build_student(self.ctx)

    def build_extra_modules(self) -> list[nn.Module]:
        """Modules trained with the student (e.g. feature-KD adapters); called once, after
        `self.student` exists."""
        return []

    @abstractmethod
    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """The training loss of one normalised batch; runs the student at `snn.time_steps`."""

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        data, cfg = self.ctx.data, self.ctx.config
        mean_loss = train_one_epoch(
            self.trainable,
            self.optimizer,
            self.schedule,
            data.train_x,
            data.train_y,
            self.loss,
            batch_size=cfg.train.batch_size,
            normalize=data.normalize,
            generator=self.generator,
            augment_shift=shift_for(data.image_size) if cfg.train.augment else 0,
            epoch=epoch,
        )
        return {"train_loss": mean_loss}

    def network(self) -> SpikingNetwork:
        return self.student

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": [module.state_dict() for module in self.trainable],
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "config": self.ctx.config.model_dump(mode="json"),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for module, saved in zip(self.trainable, state["modules"], strict=True):
            module.load_state_dict(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
