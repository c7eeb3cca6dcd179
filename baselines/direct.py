"""Direct training: the same student, cross-entropy through the surrogate gradient (STBP).

With `direct.tet: true` the loss is TET (Deng et al., 2022): the mean over t of the
cross-entropy of each step's output, instead of the cross-entropy of the mean.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from harness.config import Section
from harness.methods.student import StudentMethod


class DirectConfig(Section):
    """`direct.*`: cross-entropy through the surrogate, or TET."""

    tet: bool = False


def tet_loss(step_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over time steps of the per-step cross-entropy; `step_logits` is `[T, B, K]`."""
    t = step_logits.shape[0]
    return F.cross_entropy(step_logits.flatten(0, 1), labels.repeat(t))


class DirectMethod(StudentMethod):
    """The spiking student trained on labels alone (KD with alpha = 0, no teacher)."""

    options = DirectConfig

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        steps = self.student(images, self.ctx.config.snn.time_steps)
        if self.ctx.config.options.tet:
            return tet_loss(steps, labels)
        return F.cross_entropy(steps.mean(0), labels)
