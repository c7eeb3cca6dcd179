"""DKD: Decoupled Knowledge Distillation (Zhao et al., CVPR 2022) into a spiking student.

The KL of classic KD splits into target-class KD (TCKD: the binary "target vs the rest"
distributions) and non-target-class KD (NCKD: the distribution over the other classes); DKD
weights them separately:

    L = ce_weight * CE(z_s, y) + alpha * TCKD + beta * NCKD,   both KL terms scaled by tau^2,

with `z_s` the student's logits averaged over T. Its own section is `dkd.*`.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from harness.config import Section
from harness.methods.kd import DistillationMethod


class DKDConfig(Section):
    """`dkd.*`: the weights of the two decoupled terms and the temperature (every key has a default)."""

    alpha: Annotated[float, Field(ge=0)] = 1.0
    beta: Annotated[float, Field(ge=0)] = 8.0
    temperature: Annotated[float, Field(gt=0)] = 4.0
    ce_weight: Annotated[float, Field(ge=0)] = 1.0


def dkd_loss(student: Tensor, teacher: Tensor, labels: Tensor, alpha: float, beta: float, temperature: float) -> Tensor:
    """alpha * TCKD + beta * NCKD (without the cross-entropy)."""
    target = F.one_hot(labels, student.shape[-1]).bool()
    p_student = F.softmax(student / temperature, dim=-1)
    p_teacher = F.softmax(teacher / temperature, dim=-1)

    def binary(p: Tensor) -> Tensor:  # [B, 2]: probability of the target class, and of the rest
        on_target = (p * target).sum(-1, keepdim=True)
        return torch.cat([on_target, 1 - on_target], dim=-1).clamp_min(1e-8)

    tckd = F.kl_div(binary(p_student).log(), binary(p_teacher), reduction="batchmean")
    masked = 1000.0 * target  # removes the target class from both distributions
    nckd = F.kl_div(
        F.log_softmax(student / temperature - masked, dim=-1),
        F.softmax(teacher / temperature - masked, dim=-1),
        reduction="batchmean",
    )
    return (alpha * tckd + beta * nckd) * temperature**2


class DKDMethod(DistillationMethod):
    """A spiking student distilled with DKD from the harness's cached ANN teacher.

    `DistillationMethod` brings the teacher (trained once per dataset, teacher config and seed,
    shared with `kd`), its metrics and the capability `needs_teacher`; this class adds its
    section and its loss.
    """

    options = DKDConfig

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        dkd: DKDConfig = self.ctx.config.options
        with torch.no_grad():
            teacher = self.teacher(images, 1).mean(0)
        student = self.student(images, self.ctx.config.snn.time_steps).mean(0)
        hard = F.cross_entropy(student, labels)
        return dkd.ce_weight * hard + dkd_loss(student, teacher, labels, dkd.alpha, dkd.beta, dkd.temperature)
