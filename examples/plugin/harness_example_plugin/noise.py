"""`row_dropout`: each image row is lost (set to 0) with probability p, a sensor's line failure."""

from __future__ import annotations

import torch

from harness.noise import check_level_at_most


def row_dropout(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Zeroes every row of one image [C, H, W] with probability `level` (in [0, 1]).

    The random numbers come from the CPU `generator` the harness seeds per (noise, level,
    sample), so every method sees the same corrupted test set.
    """
    check_level_at_most("row_dropout", level, 1.0)
    if level == 0:
        return x
    lost = (torch.rand(x.shape[-2], generator=generator) < level).to(x.device)
    return x.masked_fill(lost[None, :, None], 0.0)
