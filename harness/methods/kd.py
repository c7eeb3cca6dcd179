"""KDSNN (Xu et al., CVPR 2023): response- and feature-based KD from an ANN teacher.

`L = (1 - alpha) CE(z_s, y) + alpha tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau))
     + beta MSE(adapter(f_s), f_t)`
with `z_s` the student's logits averaged over T and `f_s` its feature averaged over T.

`DistillationMethod` is what every teacher-student method shares (the cached teacher, its
metrics, its logits); a plugin's KD variant subclasses it and writes only its loss.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from harness.config import Section
from harness.context import TrialContext
from harness.contract import Capabilities
from harness.methods.student import StudentMethod
from harness.teacher import load_or_train_teacher, teacher_noise_accuracies


class KDConfig(Section):
    """`kd.*`: response KD weight and temperature; feature KD on when `beta > 0`."""

    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 4.0
    beta: Annotated[float, Field(ge=0)] = 0.0
    student_layer: str = "pool"
    teacher_layer: str = "pool"


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float, temperature: float) -> Tensor:
    """Hinton's response KD: `(1 - alpha) CE + alpha tau^2 KL(teacher || student)`."""
    hard = F.cross_entropy(student_logits, labels)
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - alpha) * hard + alpha * temperature**2 * soft


class FeatureAdapter(nn.Module):
    """Maps a time-averaged student feature onto the teacher's: 1x1 conv + BN when channels
    differ, average pooling when the student's map is larger."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.project: nn.Module = (
            nn.Sequential(
                nn.Conv2d(student_channels, teacher_channels, 1, bias=False), nn.BatchNorm2d(teacher_channels)
            )
            if student_channels != teacher_channels
            else nn.Identity()
        )

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() == 2:  # pooled features [B, C]
            return self.project(student[:, :, None, None]).flatten(1)
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
        return self.project(student)


class DistillationMethod(StudentMethod):
    """A spiking student trained against the frozen, cached ANN teacher of this (dataset,
    `teacher.*`, seed). Subclasses implement `loss`, typically with `self.teacher(images, 1)`."""

    reads = frozenset({"snn", "teacher"})
    capabilities = Capabilities(needs_teacher=True)

    def __init__(self, ctx: TrialContext) -> None:
        self.teacher_record = load_or_train_teacher(ctx)
        self.teacher = self.teacher_record.model.eval().requires_grad_(False)
        super().__init__(ctx)

    def extra_metrics(self) -> dict[str, float]:
        """The teacher's cached figures (`teacher_test_accuracy`, ...) and its test accuracy
        under every noise of `eval.noise` (`teacher_noise/<type>/<level>`), on the same seeded
        corruptions as the student's `noise/...`, so the report's teacher row compares."""
        return dict(self.teacher_record.metrics) | teacher_noise_accuracies(self.teacher_record, self.ctx)


class KDMethod(DistillationMethod):
    """KDSNN: response KD (`kd.alpha`, `kd.temperature`), feature KD when `kd.beta > 0`."""

    options = KDConfig

    def build_extra_modules(self) -> list[nn.Module]:
        kd: KDConfig = self.ctx.config.options
        self.adapter: FeatureAdapter | None = None
        if kd.beta == 0:
            return []
        self.adapter = FeatureAdapter(
            self.student.feature_channels()[kd.student_layer], self.teacher.feature_channels()[kd.teacher_layer]
        ).to(self.ctx.device)
        return [self.adapter]

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        kd: KDConfig = self.ctx.config.options
        with torch.inference_mode():  # the frozen teacher: no autograd bookkeeping at all
            teacher_steps, teacher_features = self.teacher(images, 1, return_features=True)
        student_steps, student_features = self.student(images, self.ctx.config.snn.time_steps, return_features=True)
        loss = kd_loss(student_steps.mean(0), teacher_steps.mean(0), labels, kd.alpha, kd.temperature)
        if self.adapter is not None:
            target = teacher_features[kd.teacher_layer].mean(0)
            mapped = self.adapter(student_features[kd.student_layer].mean(0), target)
            loss = loss + kd.beta * F.mse_loss(mapped, target)
        return loss
