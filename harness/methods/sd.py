"""Temporal self-distillation (`sd`, NeurIPS 2025 style): no external teacher.

The spiking student is its own teacher: the ensemble of its time steps (the time-averaged
logits, its prediction) is the soft target of every single step:

`L = (1 - alpha) CE(zbar_s, y) + alpha mean_t tau^2 KL(softmax(sg(zbar_s) / tau) || softmax(z_s[t] / tau))`

with `z_s[t]` the student's logits at step t, `zbar_s = mean_t z_s[t]` and `sg` stop-gradient
(the target is detached). The detach changes no gradient: at `zbar_s = mean_t z_s[t]` the term
is stationary in its target (its derivative in the target's logits is the same for every class,
which the softmax takes to 0), so it only spares that backward pass. Each KL is `batchmean`, as
in `kd_loss` (`harness.methods.stepwise.stepwise_kl`). With T = 1 the KL term is 0 and the loss
is direct training's cross-entropy scaled by `1 - alpha`.

It reads only `snn` (no teacher is trained or loaded), so it takes part in the noise, time-step
and efficiency tables as a student method, like `direct`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor

from harness.config import Section
from harness.methods.stepwise import mean_logit_cross_entropy, stepwise_kl
from harness.methods.student import StudentMethod


class SDConfig(Section):
    """`sd.*`: the weight `alpha` of the self-distillation term and its temperature."""

    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 4.0


def sd_loss(step_logits: Tensor, labels: Tensor, alpha: float, temperature: float) -> Tensor:
    """The `sd` loss of the module docstring; `step_logits` `[T, B, K]`."""
    hard = mean_logit_cross_entropy(step_logits, labels)
    return (1 - alpha) * hard + alpha * stepwise_kl(step_logits, step_logits.mean(0).detach(), temperature)


class SDMethod(StudentMethod):
    """The spiking student distilled from the ensemble of its own time steps."""

    options = SDConfig

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        sd: SDConfig = self.ctx.config.options
        return sd_loss(self.student(images, self.ctx.config.snn.time_steps), labels, sd.alpha, sd.temperature)
