"""Temporal-decoupled KD (`tkd`, ICML 2025): the teacher distilled into every time step.

KDSNN (`kd`) matches the teacher with the student's time-averaged logits only, so a step may
stay poor as long as the average is right. `tkd` matches each step:

`L = (1 - alpha) CE(mean_t z_s[t], y)
     + alpha mean_t tau^2 KL(softmax(z_t / tau) || softmax(z_s[t] / tau))
     + gamma mean_t tau^2 KL(softmax(sg(zbar_s) / tau) || softmax(z_s[t] / tau))`

with `z_t` the frozen ANN teacher's logits, `z_s[t]` the student's logits at step t,
`zbar_s = mean_t z_s[t]` the student's time average and `sg` stop-gradient: the self-ensemble
term (`gamma` = `tkd.ensemble`) pulls every step toward the ensemble of all steps, which is a
target and is detached (no gradient flows through `zbar_s`). The detach changes no gradient:
at `zbar_s = mean_t z_s[t]` the term is stationary in its target (its derivative in the
target's logits is the same for every class, which the softmax takes to 0), so it only spares
that backward pass. Each KL is `batchmean`, as in `kd_loss`
(`harness.methods.stepwise.stepwise_kl`). With T = 1 the ensemble term is 0 and the loss is
`kd`'s response KD.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness.config import Section
from harness.methods.kd import DistillationMethod
from harness.methods.stepwise import mean_logit_cross_entropy, stepwise_kl


class TKDConfig(Section):
    """`tkd.*`: the per-step KD weight `alpha`, the temperature, and `ensemble`, the weight
    gamma of the self-ensemble term (each step against the student's detached time average;
    0 turns it off)."""

    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 4.0
    ensemble: Annotated[float, Field(ge=0)] = 0.0


def tkd_loss(
    step_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float, temperature: float, ensemble: float
) -> Tensor:
    """The `tkd` loss of the module docstring; `step_logits` `[T, B, K]`, `teacher_logits` `[B, K]`."""
    loss = (1 - alpha) * mean_logit_cross_entropy(step_logits, labels)
    loss = loss + alpha * stepwise_kl(step_logits, teacher_logits, temperature)
    if ensemble:
        loss = loss + ensemble * stepwise_kl(step_logits, step_logits.mean(0).detach(), temperature)
    return loss


class TKDMethod(DistillationMethod):
    """Temporal-decoupled KD: the teacher's soft labels at every step, plus the self-ensemble term."""

    options = TKDConfig

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        tkd: TKDConfig = self.ctx.config.options
        with torch.inference_mode():  # the frozen teacher
            teacher_steps = self.teacher(images, 1)
        student_steps = self.student(images, self.ctx.config.snn.time_steps)
        return tkd_loss(student_steps, teacher_steps.mean(0), labels, tkd.alpha, tkd.temperature, tkd.ensemble)
