"""Input corruptions applied to test images in [0, 1] pixel space.

A noise type is a registered `NoiseFn` (see `harness.noise.corruptions` for the eight
built-ins: gaussian, salt_pepper, poisson, speckle, uniform, gaussian_blur, contrast,
occlusion). `apply_noise` corrupts a batch one sample at a time, each with its own CPU
generator seeded by `noise_seed(noise, level, index)`, so a sample's corrupted version
depends only on (noise, level, index): never on the batch it sits in, the device, or the
method and trial asking. Every method therefore sees exactly the same corrupted test
set. Normalisation happens later, elsewhere.

Adding a noise type::

    @register_noise("my_noise")
    def my_noise(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
        return x + level * torch.randn(x.shape, generator=generator).to(x.device)
"""

from __future__ import annotations

import hashlib
import math

import torch

from harness.errors import HarnessInputError
from harness.noise.corruptions import NOISES, NoiseFn, register_noise

__all__ = [
    "NOISES",
    "NoiseFn",
    "apply_noise",
    "check_level",
    "list_noises",
    "noise_seed",
    "register_noise",
]


def list_noises() -> list[str]:
    """The registered noise names, sorted."""
    return NOISES.names()


def noise_seed(noise: str, level: float, index: int) -> int:
    """A stable 63-bit seed for one (noise, level, sample index).

    The seed is the first 8 bytes of `blake2b(f"{noise}/{float(level)!r}/{index}")`,
    masked to 63 bits, so it is the same on every machine, process and Python version
    (unlike `hash`), and `level=1` and `level=1.0` give the same seed.

    Args:
        noise: The noise name.
        level: The noise level.
        index: The index of the sample in the test set.

    Returns:
        An integer in [0, 2**63).
    """
    key = f"{noise}/{float(level)!r}/{int(index)}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def _check_level(noise: str, level: float) -> float:
    """Returns `level` as a float, or raises HarnessInputError if it is not >= 0."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise HarnessInputError(f"noise level for {noise!r} must be a number, got {level!r}") from None
    if not math.isfinite(value) or value < 0:
        raise HarnessInputError(f"noise level for {noise!r} must be a finite number >= 0, got {level!r}")
    return value


def check_level(noise: str, level: float) -> None:
    """Validates a (noise, level) pair before any evaluation runs.

    The noise's own range check runs on a tiny probe image, so user-registered noises get
    validated the same way as the built-ins.

    Raises:
        HarnessInputError: an unknown noise, or a level outside its valid range.
    """
    apply_noise(torch.full((1, 1, 4, 4), 0.5), noise, level)


def apply_noise(images: torch.Tensor, noise: str, level: float, start_index: int = 0) -> torch.Tensor:
    """Corrupts a batch of test images, reproducibly per sample.

    Sample `i` of the batch is corrupted by the registered function for `noise` with a
    fresh CPU generator seeded with `noise_seed(noise, level, start_index + i)`; the
    result is clipped to [0, 1]. Level 0 returns an exact float32 copy of the input for
    every noise. The input is never modified.

    Args:
        images: Float images [N, C, H, W] with values in [0, 1], on any device.
        noise: A registered noise name (see `list_noises`).
        level: The severity, >= 0 (0 = clean); its upper bound depends on the noise.
        start_index: The test-set index of `images[0]`.

    Returns:
        The corrupted images: a new float32 tensor [N, C, H, W] on `images.device`.

    Raises:
        HarnessInputError: For an unknown noise name, or a level that is negative, not
            finite, or above the noise's valid range.
        ValueError: If `images` is not 4-D.
    """
    fn = NOISES.get(noise)
    value = _check_level(noise, level)
    if images.dim() != 4:
        raise ValueError(f"images must be shaped [N, C, H, W], got {tuple(images.shape)}")
    # A float32 copy: the noise functions work on (and may even modify) its samples,
    # never on the caller's tensor.
    out = images.detach().to(torch.float32, copy=True)
    if value == 0:
        return out
    for i in range(out.shape[0]):
        seed = noise_seed(noise, value, start_index + i)
        out[i] = fn(out[i], value, torch.Generator().manual_seed(seed))
    return out.clamp_(0.0, 1.0)
