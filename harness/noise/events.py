"""Corruptions of event streams: the event-camera counterpart of the image noises.

Each corruption is a pure function `fn(events, level, rng, sensor_size) -> events` on ONE
sample's structured event array (fields x, y, t, p; t in µs, sorted by t; `sensor_size` is
tonic's `(W, H, P)`). It returns a new array of the same dtype, sorted by t (stably, so
events with equal t keep their order), and never modifies its input. Level 0 returns an
exact copy; a negative or non-finite level, or one above the noise's bound, raises a
one-line HarnessInputError. All random numbers come from the `numpy.random.Generator`
passed in (tonic's own transforms draw from numpy's global state, so none is used here).

* `event_drop`: level = probability, in [0, 1], that each event is removed (independently).
* `background_activity`: level = noise events per pixel per second (>= 0): a Poisson number
  (mean level * W * H * span / 1e6) of events uniform in pixel, polarity and integer time
  over the sample's span [t_min, t_max]; none when the span is 0 (or the sample is empty).
* `spatial_jitter`: level = standard deviation in pixels (>= 0): x and y each plus Gaussian
  noise rounded to the nearest integer; events that leave the sensor are dropped.
* `temporal_jitter`: level = standard deviation in µs (>= 0): t plus Gaussian noise,
  rounded to whole µs (for integer t), clipped at 0, then re-sorted.
* `polarity_flip`: level = probability, in [0, 1], that each event's polarity is flipped.

`apply_event_noise` corrupts a list of samples, each with a fresh
`np.random.default_rng(noise_seed(noise, level, start_index + i))`, so a sample's corrupted
version depends only on (noise, level, index), as for the image noises (`harness.noise`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.errors import HarnessInputError
from harness.noise import NOISES, EventNoise, EventNoiseFn, noise_seed

__all__ = [
    "EVENT_NOISES",
    "EventNoiseFn",
    "apply_event_noise",
    "background_activity",
    "check_event_level",
    "event_drop",
    "polarity_flip",
    "spatial_jitter",
    "temporal_jitter",
]

# The upper bound of each noise's level (None: unbounded): the registered entries' `maximum`.
_MAXIMUM: dict[str, float | None] = {
    "event_drop": 1.0,
    "background_activity": None,
    "spatial_jitter": None,
    "temporal_jitter": None,
    "polarity_flip": 1.0,
}


def check_event_level(noise: str, level: float) -> float:
    """`level` as a float, or a one-line HarnessInputError naming the built-in noise and its
    allowed range if it is not a finite number in that range."""
    return EventNoise(_none, _MAXIMUM.get(noise)).check(noise, level)


def _none(events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]) -> np.ndarray:
    return events.copy()


def _sensor(sensor_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(int(s) for s in sensor_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"sensor_size must be (W, H, P) with positive sizes, got {sensor_size!r}")
    return size  # type: ignore[return-value]


def _sorted(events: np.ndarray) -> np.ndarray:
    return events[np.argsort(events["t"], kind="stable")]


def event_drop(events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]) -> np.ndarray:
    """Removes each event independently with probability `level` in [0, 1]."""
    level = check_event_level("event_drop", level)
    if level == 0:
        return events.copy()
    keep = rng.random(len(events)) >= level
    return _sorted(events[keep])


def polarity_flip(events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]) -> np.ndarray:
    """Flips each event's polarity (0 <-> 1, False <-> True) with probability `level` in [0, 1]."""
    level = check_event_level("polarity_flip", level)
    out = events.copy()
    if level == 0:
        return out
    flip = rng.random(len(events)) < level
    p = out["p"]
    if p.dtype == np.bool_:
        p[flip] = ~p[flip]
    else:
        p[flip] = 1 - p[flip]
    return _sorted(out)


def background_activity(
    events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]
) -> np.ndarray:
    """Adds Poisson(level * W * H * span_s) events uniform in pixel, polarity and time over
    [t_min, t_max]; `level` is in events per pixel per second (>= 0)."""
    level = check_event_level("background_activity", level)
    width, height, polarities = _sensor(sensor_size)
    if level == 0 or len(events) == 0:
        return events.copy()
    t_min, t_max = events["t"].min(), events["t"].max()
    span_us = float(t_max) - float(t_min)
    if span_us <= 0:
        return events.copy()
    n = int(rng.poisson(level * width * height * span_us / 1e6))
    noise = np.zeros(n, dtype=events.dtype)
    noise["x"] = rng.integers(0, width, n)
    noise["y"] = rng.integers(0, height, n)
    noise["p"] = rng.integers(0, polarities, n)
    if np.issubdtype(events.dtype["t"], np.integer):
        noise["t"] = rng.integers(int(t_min), int(t_max), n, endpoint=True)
    else:
        noise["t"] = rng.uniform(float(t_min), float(t_max), n)
    return _sorted(np.concatenate([events, noise]))


def spatial_jitter(
    events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]
) -> np.ndarray:
    """Moves x and y each by rounded Gaussian noise of standard deviation `level` pixels (>= 0);
    events that leave the sensor are dropped."""
    level = check_event_level("spatial_jitter", level)
    width, height, _ = _sensor(sensor_size)
    if level == 0:
        return events.copy()
    x = events["x"].astype(np.int64) + np.rint(rng.normal(0.0, level, len(events))).astype(np.int64)
    y = events["y"].astype(np.int64) + np.rint(rng.normal(0.0, level, len(events))).astype(np.int64)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = events[inside]  # a copy (boolean indexing)
    out["x"] = x[inside]
    out["y"] = y[inside]
    return _sorted(out)


def temporal_jitter(
    events: np.ndarray, level: float, rng: np.random.Generator, sensor_size: Sequence[int]
) -> np.ndarray:
    """Moves t by Gaussian noise of standard deviation `level` µs (>= 0), rounded to whole µs
    for integer timestamps and clipped at 0; the events are then re-sorted by t."""
    level = check_event_level("temporal_jitter", level)
    if level == 0:
        return events.copy()
    t = events["t"].astype(np.float64) + rng.normal(0.0, level, len(events))
    if np.issubdtype(events.dtype["t"], np.integer):
        t = np.rint(t)
    out = events.copy()
    out["t"] = np.clip(t, 0.0, None)
    return _sorted(out)


# Registered in pyproject.toml (entry-point group snn_kd_harness.noises), as image noises are.
EVENT_DROP = EventNoise(event_drop, _MAXIMUM["event_drop"])
BACKGROUND_ACTIVITY = EventNoise(background_activity, _MAXIMUM["background_activity"])
SPATIAL_JITTER = EventNoise(spatial_jitter, _MAXIMUM["spatial_jitter"])
TEMPORAL_JITTER = EventNoise(temporal_jitter, _MAXIMUM["temporal_jitter"])
POLARITY_FLIP = EventNoise(polarity_flip, _MAXIMUM["polarity_flip"])

EVENT_NOISES: dict[str, EventNoiseFn] = {
    "event_drop": event_drop,
    "background_activity": background_activity,
    "spatial_jitter": spatial_jitter,
    "temporal_jitter": temporal_jitter,
    "polarity_flip": polarity_flip,
}
"""The built-ins by name (the registry, `harness.noise.NOISES`, also holds a plugin's)."""


def apply_event_noise(
    samples: Sequence[np.ndarray],
    noise: str,
    level: float,
    sensor_size: Sequence[int],
    start_index: int = 0,
) -> list[np.ndarray]:
    """Corrupts test samples, reproducibly per sample.

    Sample `i` is corrupted by the registered `EventNoise` `noise` with a fresh
    `np.random.default_rng(noise_seed(noise, level, start_index + i))`. The inputs are
    never modified; level 0 gives exact copies.

    Args:
        samples: One structured event array per sample.
        noise: A registered event noise (`harness.noise.is_event_noise`).
        level: The severity (0 = clean); its range depends on the noise.
        sensor_size: `(W, H, P)`.
        start_index: The test-set index of `samples[0]`.

    Returns:
        The corrupted samples, in order.

    Raises:
        HarnessInputError: An unknown noise, an image noise, or a level outside its range.
    """
    entry = NOISES.get(noise)
    if not isinstance(entry, EventNoise):
        raise HarnessInputError(f"noise {noise!r} corrupts images, not event streams")
    value = entry.check(noise, level)
    _sensor(sensor_size)
    out = []
    for i, events in enumerate(samples):
        rng = np.random.default_rng(noise_seed(noise, value, start_index + i))
        out.append(entry.fn(events, value, rng, sensor_size))
    return out
