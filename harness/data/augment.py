"""Training-time augmentation policies, registered by the name `train.augment` uses.

A policy is a function `(images, generator) -> images`: a batch `[B, C, H, W]` in [0, 1] on the
trial's device, and the CPU `torch.Generator` of the training run's data order (seeded by the
trial), on which it draws every random number (then moves them to the batch's device). It returns
the augmented batch, same shape, device and dtype. The same seed gives the same augmented
batches, on every device. Policies see training batches only; validation, test and noise
evaluation see the images as they are.

Adding a policy is one entry point in the group `snn_kd_harness.augmentations`; the built-ins
register the same way (pyproject.toml):

- `none`: the images as they are.
- `shift`: a random translation by up to 1 pixel (images under 16 pixels on their short side)
  or 2 pixels (larger), zero-filled: the MNIST-like default.
- `crop_flip`: the CIFAR recipe of the SNN literature (KDSNN, QCFS, TET train this way, after
  He et al. 2016): zero-pad by `ceil(min(H, W) / 8)` pixels (4 at 32x32), take a random crop
  of the original size, and flip it horizontally with probability 1/2.
- `cutout`: `crop_flip`, then one square of side `2 * (min(H, W) // 4)` (16 at 32x32, as in
  DeVries and Taylor 2017) set to 0, centred on a random pixel and clipped at the border. It is zeroed
  in pixel space (black), before the encoder normalises.

`train.augment: auto` (the default) resolves, when the trial config is built, to the dataset's
own default (`harness.data.DatasetEntry.augment`): `crop_flip` for CIFAR and image folders,
`shift` for the others. The resolved name is what MLflow and checkpoints record.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.registry import GROUP_PREFIX, Registry

AugmentFn = Callable[[Tensor, torch.Generator], Tensor]

AUTO = "auto"
"""`train.augment`'s default: the dataset's own policy."""


def check_augmentation(name: str, entry: Any) -> None:
    """`AUGMENTATIONS`' check: a function of (images, generator)."""
    if not callable(entry):
        raise TypeError(f"expected a function (images, generator) -> images, got {entry!r}")
    try:
        inspect.signature(entry).bind(None, None)
    except TypeError:
        raise TypeError(f"{entry!r} does not take (images, generator)") from None
    except ValueError:  # no signature to inspect (a builtin): trust it
        pass


AUGMENTATIONS: Registry[AugmentFn] = Registry(GROUP_PREFIX + "augmentations", "augmentation policy", check_augmentation)


def list_augmentations() -> list[str]:
    """The registered policy names, sorted."""
    return AUGMENTATIONS.names()


def create_augmentation(name: str) -> AugmentFn:
    """The policy registered as `name` (`auto` must have been resolved by the trial config).

    Raises:
        HarnessInputError: unknown name. PluginError: a broken entry.
        ValueError: `auto`, which only a trial config can resolve (it knows the dataset).
    """
    if name == AUTO:
        raise ValueError("train.augment 'auto' is resolved by the trial config, which knows the dataset")
    return AUGMENTATIONS.get(name)


# --- the built-ins ------------------------------------------------------------------------------


def translate(images: Tensor, generator: torch.Generator, max_shift: int) -> Tensor:
    """Translates each image by up to `max_shift` pixels along each axis (zero fill), drawn
    per image: the same as a random crop of the original size after zero-padding by `max_shift`.
    Vectorised over the batch."""
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).to(images.device)
    rows = torch.arange(h, device=images.device)[None, :] + offsets[0][:, None]  # [B, H]
    cols = torch.arange(w, device=images.device)[None, :] + offsets[1][:, None]  # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    # [B, H, W, C] after advanced indexing on dims 0, 2, 3; move channels back.
    shifted = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return shifted.permute(0, 3, 1, 2).contiguous()


def flip_horizontally(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirrors each image left to right with probability 1/2, drawn per image."""
    flips = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flips[:, None, None, None], images.flip(-1), images)


def crop_padding(images: Tensor) -> int:
    """`crop_flip`'s padding: an eighth of the short side, rounded up (4 at 32x32)."""
    return math.ceil(min(images.shape[-2:]) / 8)


def none(images: Tensor, generator: torch.Generator) -> Tensor:
    """The images as they are."""
    return images


def shift(images: Tensor, generator: torch.Generator) -> Tensor:
    """A translation by up to 1 pixel (short side under 16) or 2 pixels, zero-filled."""
    return translate(images, generator, 1 if min(images.shape[-2:]) < 16 else 2)


def crop_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """A random crop after zero-padding by `crop_padding`, then a horizontal flip with p = 1/2."""
    return flip_horizontally(translate(images, generator, crop_padding(images)), generator)


def cutout(images: Tensor, generator: torch.Generator) -> Tensor:
    """`crop_flip`, then a zeroed square of side `2 * (min(H, W) // 4)` centred on a random pixel."""
    images = crop_flip(images, generator)
    b, _, h, w = images.shape
    half = min(h, w) // 4  # the square spans [centre - half, centre + half)
    centres = torch.stack(
        [torch.randint(0, h, (b,), generator=generator), torch.randint(0, w, (b,), generator=generator)]
    ).to(images.device)
    rows = torch.arange(h, device=images.device)[None, :]
    cols = torch.arange(w, device=images.device)[None, :]
    inside_rows = (rows >= centres[0][:, None] - half) & (rows < centres[0][:, None] + half)  # [B, H]
    inside_cols = (cols >= centres[1][:, None] - half) & (cols < centres[1][:, None] + half)  # [B, W]
    hole = inside_rows[:, :, None] & inside_cols[:, None, :]  # [B, H, W]
    return images.masked_fill(hole[:, None], 0.0)
