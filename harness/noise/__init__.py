"""Input corruptions applied to test images in [0, 1] pixel space.

A noise type is a registered `NoiseFn` (see `harness.noise.corruptions` for the eight
built-ins: gaussian, salt_pepper, poisson, speckle, uniform, gaussian_blur, contrast,
occlusion). `apply_noise` corrupts a batch one sample at a time, each with its own CPU
generator seeded by `noise_seed(noise, level, index)`, so a sample's corrupted version
depends only on (noise, level, index): never on the batch it sits in, the device, or the
method and trial asking. Every method therefore sees exactly the same corrupted test
set. Normalisation happens later, elsewhere.

Adding a noise type is one entry point in the group `snn_kd_harness.noises` naming a `NoiseFn`
(the built-ins register the same way, in pyproject.toml)::

    def my_noise(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
        check_level_at_most("my_noise", level, 1.0)
        return x + level * torch.randn(x.shape, generator=generator).to(x.device)

The function receives ONE image `x` shaped [C, H, W] with values in [0, 1], a severity `level`
(0 = clean) and a CPU `torch.Generator`; it returns the corrupted image with the same shape on
the same device, drawing random numbers on the generator only (then moved to the image's
device), and checks its own upper bound, if it has one.

A noise of event streams (`harness.noise.events`: `event_drop`, `background_activity`,
`spatial_jitter`, `temporal_jitter`, `polarity_flip`) registers the same way, as an
`EventNoise`: its function corrupts one sample's raw events before they are binned into frames;
it applies to event datasets only, as the image noises apply to images only.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessInputError, PluginError
from harness.registry import GROUP_PREFIX, Registry

__all__ = [
    "NOISES",
    "EventNoise",
    "EventNoiseFn",
    "NoiseFn",
    "apply_noise",
    "check_level",
    "check_level_at_most",
    "check_noise_function",
    "is_event_noise",
    "list_noises",
    "noise_seed",
]

NoiseFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

EventNoiseFn = Callable[[np.ndarray, float, np.random.Generator, Sequence[int]], np.ndarray]
"""(one sample's structured events x, y, t, p; level; a seeded numpy generator; the sensor's
(W, H, P)) -> the corrupted events, sorted by t, never the input modified."""


@dataclass(frozen=True)
class EventNoise:
    """A registered corruption of event streams (`harness.noise.events`).

    Attributes:
        fn: The corruption of one sample's events.
        maximum: The level's upper bound (None: unbounded); levels are finite and >= 0.
    """

    fn: EventNoiseFn
    maximum: float | None = None

    def check(self, noise: str, level: float) -> float:
        """`level` as a float; a one-line HarnessInputError naming the noise and its range if
        it is not a finite number in [0, maximum]."""
        allowed = f"in [0, {self.maximum:g}]" if self.maximum is not None else "a finite number >= 0"
        try:
            value = float(level)
        except (TypeError, ValueError):
            value = math.nan
        bad = isinstance(level, bool) or not math.isfinite(value) or value < 0
        if bad or (self.maximum is not None and value > self.maximum):
            raise HarnessInputError(f"noise level for {noise!r} must be {allowed}, got {level!r}")
        return value


def check_noise_function(name: str, entry: Any) -> None:
    """`NOISES`' check: a function of (image, level, generator), or an `EventNoise`."""
    if isinstance(entry, EventNoise):
        if not callable(entry.fn):
            raise TypeError(f"EventNoise.fn must be a function (events, level, rng, sensor_size), got {entry.fn!r}")
        return
    if not callable(entry):
        raise TypeError(f"expected a function (image, level, generator) -> image, got {entry!r}")
    try:
        inspect.signature(entry).bind(None, 0.0, None)
    except TypeError:
        raise TypeError(f"{entry!r} does not take (image, level, generator)") from None
    except ValueError:  # no signature to inspect (a builtin): trust it
        pass


NOISES: Registry[NoiseFn] = Registry(GROUP_PREFIX + "noises", "noise type", check_noise_function)


def check_level_at_most(noise: str, level: float, maximum: float) -> None:
    """Raises a one-line HarnessInputError if `level` is above `maximum` (for noise functions)."""
    if level > maximum:
        raise HarnessInputError(f"noise level for {noise!r} must be in [0, {maximum:g}], got {level!r}")


def list_noises() -> list[str]:
    """The registered noise names, sorted."""
    return NOISES.names()


def is_event_noise(noise: str) -> bool:
    """Whether `noise` corrupts event streams (an `EventNoise`) rather than images."""
    return isinstance(NOISES.get(noise), EventNoise)


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
    entry = NOISES.get(noise)
    if isinstance(entry, EventNoise):
        entry.check(noise, level)
        return
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
        PluginError: The noise function returned another shape, dtype or device than its
            input's, or a non-finite value (named with its entry point and distribution).
        ValueError: If `images` is not 4-D.
    """
    fn = NOISES.get(noise)
    if isinstance(fn, EventNoise):
        raise HarnessInputError(f"noise {noise!r} corrupts event streams, not images")
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
        sample = out[i]
        corrupted = fn(sample, value, torch.Generator().manual_seed(seed))
        _check_sample(noise, sample, corrupted)
        out[i] = corrupted
    # One check of the whole batch (one host sync per call, not per sample): values outside
    # [0, 1] are clipped, as documented; a NaN or an infinity cannot be.
    if not bool(torch.isfinite(out).all()):
        raise _broken(noise, f"returned non-finite values (NaN or inf) at level {value:g}")
    return out.clamp_(0.0, 1.0)


def _check_sample(noise: str, sample: torch.Tensor, corrupted: object) -> None:
    """A noise returns a tensor of its input's shape, dtype and device (checked without a sync)."""
    if not isinstance(corrupted, torch.Tensor):
        raise _broken(noise, f"returned {type(corrupted).__name__}, not a tensor")
    for what, want, got in (
        ("shape", tuple(sample.shape), tuple(corrupted.shape)),
        ("dtype", sample.dtype, corrupted.dtype),
        ("device", sample.device, corrupted.device),
    ):
        if want != got:
            raise _broken(noise, f"returned an image of {what} {got} for an input of {what} {want}")


def _broken(noise: str, what: str) -> PluginError:
    providers = NOISES.providers(noise)
    who = providers[0].describe() if providers else f"noise {noise!r}"
    return PluginError(f"noise {noise!r} ({who}) {what}; it must return the image's shape, dtype and device, finite")
