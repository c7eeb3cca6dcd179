"""Per-time-step distillation terms shared by the KD family (`tkd`, `sd`, a plugin's variant).

A spiking network's prediction is the mean over T of its per-step logits `[T, B, K]`; KDSNN
(`harness.methods.kd.kd_loss`) distils into that mean. The temporal variants distil into every
step instead: `stepwise_kl` is the mean over t of the softened KL of each step against a target
(the teacher's logits, or the student's own time average), with the `tau^2` factor and the
`batchmean` reduction `kd_loss` uses, so the two kinds of term are on one scale.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def stepwise_kl(step_logits: Tensor, target_logits: Tensor, temperature: float) -> Tensor:
    """`mean_t tau^2 KL(softmax(target[t] / tau) || softmax(z[t] / tau))`, each KL summed over the
    classes and averaged over the batch (`batchmean`).

    Args:
        step_logits: The student's per-step logits `z`, `[T, B, K]`.
        target_logits: The target, `[B, K]` (the same at every step: a teacher's logits, the
            student's time average) or `[T, B, K]` (one per step). Used as given: detach it
            first where it must not be trained (the student's own average).
        temperature: `tau > 0`.

    Returns:
        A scalar; 0 when every step equals its target.
    """
    if step_logits.dim() != 3:
        raise ValueError(f"expected per-step logits [T, B, K], got {list(step_logits.shape)}")
    target = F.log_softmax(target_logits / temperature, dim=-1)
    if target.dim() == 2:
        target = target.unsqueeze(0)
    target = target.expand_as(step_logits)
    # batchmean over the T*B rows = the mean over t of each step's batchmean KL.
    kl = F.kl_div(
        F.log_softmax(step_logits / temperature, dim=-1).flatten(0, 1),
        target.flatten(0, 1),
        reduction="batchmean",
        log_target=True,
    )
    return temperature**2 * kl


def mean_logit_cross_entropy(step_logits: Tensor, labels: Tensor) -> Tensor:
    """`CE(mean_t z[t], y)`: the cross-entropy of the prediction (the logits averaged over T)."""
    return F.cross_entropy(step_logits.mean(0), labels)
