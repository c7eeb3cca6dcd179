"""The Square attack (Andriushchenko et al., ECCV 2020), L-infinity: gradient-free, score-based.

It queries only the scores of the network that is evaluated (`AttackTarget.scores`: the
method's network at its evaluation T, no gradient), so it is blind to how good a surrogate
gradient is. A white-box figure (`fgsm`, `pgd`) well above Square's at the same eps is the sign
of gradient masking: the gradient, not the network, resisted.

Per image (Algorithm 1 of the paper, its L-infinity variant): start from vertical stripes of
+-eps (a random sign per column and channel); then, `queries - 1` times, draw a square window
of side `round(sqrt(p h w))` at a random place and a random sign per channel, set the
perturbation in the window to that sign times eps, and keep the candidate when the margin (true
logit minus the largest other) does not rise (ties kept: a spiking network's scores are flat
under most small changes, and a step along the plateau can reach its edge). `p` starts at
`p_init` and halves on the paper's schedule, rescaled to the budget. An image stops when it is
misclassified. Each image's draws come from its own generator (`attack_seed`), so its result
depends on neither the batch nor the device.

The attack runs on `samples` test images drawn with `seed` (the same for every method); the
others are reported as not evaluated, and the metric is the accuracy over the attacked ones.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness.attacks import Attack, AttackConfig, AttackTarget, Logits, margins, sample_generators


class SquareConfig(AttackConfig):
    """`eval.attacks.square.*`: at most `queries` score queries per image (the first is the
    initial stripes), on `samples` test images drawn with `seed`; `p_init` is the share of the
    image the first windows cover (0.3 for a short budget on small images)."""

    queries: Annotated[int, Field(ge=1, le=10_000)] = 300
    samples: Annotated[int, Field(ge=1)] = 100
    p_init: Annotated[float, Field(gt=0, le=1)] = 0.3
    seed: Annotated[int, Field(ge=0)] = 0


def window_share(p_init: float, query: int, queries: int) -> float:
    """The share `p` of the image the window covers at `query` of `queries` (the paper's schedule,
    defined for 10,000 queries, rescaled)."""
    step = int(query / queries * 10_000)
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128)):
        if step <= bound:
            return p_init / divisor
    return p_init / (256 if step <= 8000 else 512)


def square_attack(
    scores: Logits,
    images: Tensor,
    labels: Tensor,
    eps: float,
    generators: list[torch.Generator],
    *,
    queries: int,
    p_init: float,
) -> Tensor:
    """The Square attack on a batch (see the module docstring); one generator per image."""
    clean = images.detach()
    if eps == 0 or len(clean) == 0:
        return clean.clone()
    n, c, h, w = clean.shape
    device, dtype = clean.device, clean.dtype
    # Every draw an image can need, up front from its own generator: stripes, then per query a
    # window position (two uniforms) and a sign per channel.
    stripes = torch.stack([torch.randint(0, 2, (c, 1, w), generator=g) for g in generators])
    places = torch.stack([torch.rand(queries, 2, generator=g) for g in generators])
    signs = torch.stack([torch.randint(0, 2, (queries, c), generator=g) for g in generators])
    stripes = (stripes.to(device, dtype) * 2 - 1) * eps
    best = (clean + stripes).clamp(0.0, 1.0)
    best_margin = margins(scores(best).float(), labels)
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    for query in range(1, queries):
        active = (best_margin > 0).nonzero().squeeze(1)
        if len(active) == 0:
            break
        side = min(h, w, max(1, round(math.sqrt(window_share(p_init, query, queries) * h * w))))
        place = places[active.cpu(), query].to(device)
        top = (place[:, 0] * (h - side + 1)).long()
        left = (place[:, 1] * (w - side + 1)).long()
        inside_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + side)
        inside_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + side)
        window = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]  # [k, 1, H, W]
        sign = (signs[active.cpu(), query].to(device, dtype) * 2 - 1)[:, :, None, None] * eps  # [k, C, 1, 1]
        x = clean[active]
        delta = torch.where(window, sign, best[active] - x)
        candidate = (x + delta).clamp(0.0, 1.0)
        margin = margins(scores(candidate).float(), labels[active])
        keep = margin <= best_margin[active]
        best[active[keep]] = candidate[keep]
        best_margin[active[keep]] = margin[keep]
    return best


class SquareAttack(Attack):
    """`square`: the score-based Square attack on a seeded subset of the test split."""

    options = SquareConfig

    def attacked(self, n: int) -> Tensor:
        options: SquareConfig = self.config
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(options.seed))[: options.samples]
        return chosen.sort().values

    def perturb(self, target: AttackTarget, images: Tensor, labels: Tensor, eps: float, indices: Tensor) -> Tensor:
        options: SquareConfig = self.config
        generators = sample_generators(self.name, eps, options.seed, indices)
        return square_attack(
            target.scores, images, labels, eps, generators, queries=options.queries, p_init=options.p_init
        )
