"""White-box gradient attacks: FGSM (Goodfellow et al., 2015) and L-infinity PGD (Madry et al., 2018).

Both follow the sign of the input gradient of the cross-entropy of the method's attack model
(`AttackTarget.gradient`: for a spiking network, BPTT over all T steps through its surrogate, in
eval mode, its state reset before each forward pass; `Method.attack_model` says what else a
method differentiates). Images stay in [0, 1] and within eps of the clean ones.

- `fgsm`: `clip(x + eps sign(grad), 0, 1)`, one gradient.
- `pgd`: from `x` (or, with `random_start`, a uniform draw in the eps-ball seeded per image,
  `attack_seed`), `steps` steps `x <- proj(x + step_size sign(grad))` (default step size
  `2.5 eps / steps`, Madry et al.'s choice, so a walk can cross the ball and come back). It
  returns per image the iterate with the lowest margin (true logit minus the largest other) on
  the attack model, the last one included (one more forward pass): never weaker than any of
  its iterates, which a surrogate gradient, only an approximation of a spiking network's, can
  step away from. When the attack model is the evaluated network itself (`AttackTarget.exact`:
  the default, surrogate case) an image stops at its first misclassified iterate, which it
  keeps: the image is lost whatever follows, and the steps go to the others.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness.attacks import Attack, AttackConfig, AttackTarget, InputGradient, Logits, margins, sample_generators


def fgsm_step(gradient: InputGradient, images: Tensor, labels: Tensor, eps: float) -> Tensor:
    """`clip(x + eps sign(d CE / d x), 0, 1)`; the images themselves at eps = 0."""
    if eps == 0:
        return images.detach().clone()
    grad, _ = gradient(images, labels)
    return (images.detach() + eps * grad.sign()).clamp_(0.0, 1.0)


def random_start(images: Tensor, eps: float, generators: list[torch.Generator]) -> Tensor:
    """A uniform offset in [-eps, eps] per pixel, each image from its own generator."""
    draws = [torch.rand(images.shape[1:], generator=g) for g in generators]
    if not draws:
        return torch.zeros_like(images)
    return (torch.stack(draws).to(images.device, images.dtype) * 2 - 1) * eps


def pgd_images(
    gradient: InputGradient,
    logits: Logits,
    images: Tensor,
    labels: Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float | None = None,
    start: Tensor | None = None,
    stop_when_wrong: bool = False,
) -> Tensor:
    """L-infinity PGD from `images + start` (or the images), keeping per image the iterate of
    lowest margin on the model (see the module docstring).

    Args:
        gradient, logits: The model's input gradient and logits.
        images, labels: Clean images `[B, C, H, W]` in [0, 1] and their classes.
        eps: The L-infinity budget.
        steps: Gradient steps.
        step_size: Per-step move; None: `2.5 eps / steps`.
        start: An offset in [-eps, eps] to start from (a random start), or None.
        stop_when_wrong: An image stops at the first iterate the model misclassifies (when the
            model is the evaluated network itself, `AttackTarget.exact`, that image is lost
            whatever follows: the remaining steps go to the others).
    """
    clean = images.detach()
    if eps == 0:
        return clean.clone()
    size = 2.5 * eps / steps if step_size is None else step_size
    low, high = (clean - eps).clamp_(0.0, 1.0), (clean + eps).clamp_(0.0, 1.0)
    x = clean.clone() if start is None else torch.minimum(torch.maximum(clean + start, low), high)
    best, best_margin = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
    active = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        grad, out = gradient(x[active], labels[active])
        margin = margins(out.float(), labels[active])
        _keep_lower(best, best_margin, active, x, margin)
        if stop_when_wrong:
            going = margin >= 0
            active, grad = active[going], grad[going]
            if len(active) == 0:
                return best
        moved = x[active] + size * grad.sign()
        x[active] = torch.minimum(torch.maximum(moved, low[active]), high[active])
    _keep_lower(best, best_margin, active, x, margins(logits(x[active]).float(), labels[active]))
    return best


def _keep_lower(best: Tensor, best_margin: Tensor, active: Tensor, x: Tensor, margin: Tensor) -> None:
    """Where `margin` (of `x[active]`) is below the best so far, that iterate becomes the best (in place)."""
    lower = margin < best_margin[active]
    chosen = active[lower]
    best[chosen] = x[chosen]
    best_margin[chosen] = margin[lower]


class FGSMAttack(Attack):
    """`fgsm`: one signed-gradient step of size eps through the method's attack model."""

    def perturb(self, target: AttackTarget, images: Tensor, labels: Tensor, eps: float, indices: Tensor) -> Tensor:
        return fgsm_step(target.gradient, images, labels, eps)


class PGDConfig(AttackConfig):
    """`eval.attacks.pgd.*`: `steps` signed-gradient steps of `step_size` (None: 2.5 eps / steps),
    from a uniform random start in the eps-ball (`random_start`), seeded per image with `seed`."""

    steps: Annotated[int, Field(ge=1, le=1000)] = 10
    step_size: Annotated[float, Field(gt=0, le=1)] | None = None
    random_start: bool = True
    seed: Annotated[int, Field(ge=0)] = 0


class PGDAttack(Attack):
    """`pgd`: L-infinity projected gradient descent through the method's attack model."""

    options = PGDConfig

    def perturb(self, target: AttackTarget, images: Tensor, labels: Tensor, eps: float, indices: Tensor) -> Tensor:
        return run_pgd(
            self.name, self.config, target.gradient, target.logits, images, labels, eps, indices, target.exact
        )


def run_pgd(
    name: str,
    options: PGDConfig,
    gradient: InputGradient,
    logits: Logits,
    images: Tensor,
    labels: Tensor,
    eps: float,
    indices: Tensor,
    stop_when_wrong: bool = False,
) -> Tensor:
    """PGD with `options` (a `PGDConfig`), its random start drawn per image from `attack_seed`."""
    start = None
    if options.random_start and eps > 0:
        start = random_start(images, eps, sample_generators(name, eps, options.seed, indices))
    return pgd_images(
        gradient,
        logits,
        images,
        labels,
        eps,
        steps=options.steps,
        step_size=options.step_size,
        start=start,
        stop_when_wrong=stop_when_wrong,
    )
