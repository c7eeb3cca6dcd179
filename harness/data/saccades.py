"""`digits-events`: scikit-learn's digits as an event camera records them while it moves.

N-MNIST was made by moving a DVS camera in three saccades in front of MNIST digits on a screen
(Orchard et al., Frontiers in Neuroscience 2015). This set does the same in simulation, so event
data ship with the harness (no files, no download) and a CPU runs a whole event benchmark:

- Each 8x8 digit (values 0..16) is scaled to [0, 1], enlarged twice (16x16, nearest
  neighbour) and placed on a dark 20x20 sensor.
- The sensor moves along a triangle (right-down, left-down, up: N-MNIST's three saccades),
  `STEPS_PER_SACCADE` one-pixel-or-less moves each, one every `STEP_US` µs, with bilinear
  sub-pixel positions.
- At each move every pixel whose log intensity changed by `k` contrast thresholds (`THRESHOLD`)
  emits `k` events of the change's polarity (1 brighter, 0 darker), at times drawn uniformly
  within the move, as a DVS pixel does; a little background noise keeps dark pixels live.
- Random numbers come from one generator seeded by `SEED`, drawn in a fixed order, so every
  process generates the same events.

The events are binned into the trial's `snn.time_steps` frames with tonic's `ToFrame`, as for
the recorded sets (`harness.data.events.bin_samples`), and kept for the event-domain noises.
The harness holds out the stratified 20 % test split, as for `digits`.
"""

from __future__ import annotations

import functools

import numpy as np

from harness.data.entry import DatasetEntry, EventSource, RawArrays
from harness.data.frames import bin_samples

SENSOR = (20, 20, 2)  # tonic's (W, H, polarities)
STEPS_PER_SACCADE = 10
STEP_US = 10_000
THRESHOLD = 0.4  # log-intensity change per event
NOISE_RATE = 0.002  # background events per pixel per move
SEED = 20261204
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])

_START = (-1.0, -2.0)  # the first position (dx, dy) of the triangle, centred on the sensor
_SACCADES = ((2.0, 2.0), (-2.0, 2.0), (0.0, -4.0))  # pixels moved by each saccade (dx, dy)


def _views(digits: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The sensor's views `[N, H, W]` of the enlarged (16x16), centred digits shifted by
    (dx, dy) pixels, bilinearly."""
    width, height = SENSOR[0], SENSOR[1]
    pad = 4  # room for the shifts (at most 2 pixels each way) and the bilinear neighbour
    canvas = np.zeros((len(digits), height + 2 * pad + 1, width + 2 * pad + 1))
    x0, y0 = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - x0, dy - y0
    top = pad + (height - 16) // 2 + y0
    left = pad + (width - 16) // 2 + x0
    for oy, ox, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        canvas[:, top + oy : top + oy + 16, left + ox : left + ox + 16] += weight * digits
    return canvas[:, pad : pad + height, pad : pad + width]


def _path() -> list[tuple[float, float]]:
    """The sensor's positions: the start, then every move of the three saccades."""
    path = [_START]
    for dx, dy in _SACCADES:
        x, y = path[-1]
        path += [
            (x + dx * k / STEPS_PER_SACCADE, y + dy * k / STEPS_PER_SACCADE) for k in range(1, STEPS_PER_SACCADE + 1)
        ]
    return path


def record(images: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The events (x, y, t, p; t in µs, sorted) of each image `[N, 8, 8]` in [0, 1] over the
    three saccades, every image along the same path."""
    digits = np.kron(images, np.ones((1, 2, 2)))  # [N, 16, 16]
    path = _path()
    log_before = np.log(_views(digits, *path[0]) + 0.05)
    columns: dict[str, list[np.ndarray]] = {"s": [], "x": [], "y": [], "t": [], "p": []}
    for step, position in enumerate(path[1:]):
        log_now = np.log(_views(digits, *position) + 0.05)
        change = log_now - log_before
        count = np.floor(np.abs(change) / THRESHOLD).astype(np.int64)
        count += rng.random(count.shape) < NOISE_RATE
        sample, ys, xs = np.nonzero(count)
        repeats = count[sample, ys, xs]
        columns["s"].append(np.repeat(sample, repeats))
        columns["x"].append(np.repeat(xs, repeats))
        columns["y"].append(np.repeat(ys, repeats))
        columns["p"].append(np.repeat((change[sample, ys, xs] > 0).astype(np.int64), repeats))
        columns["t"].append(step * STEP_US + rng.integers(0, STEP_US, int(repeats.sum())))
        log_before = np.where(count > 0, log_now, log_before)  # a pixel resets when it fires
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    order = np.lexsort((merged["t"], merged["s"]))  # by sample, then by time
    bounds = np.searchsorted(merged["s"][order], np.arange(1, len(images) + 1))
    samples, start = [], 0
    for stop in bounds:
        events = np.empty(stop - start, dtype=EVENT_DTYPE)
        for name in EVENT_DTYPE.names:
            events[name] = merged[name][order[start:stop]]
        samples.append(events)
        start = stop
    return samples


@functools.cache
def generate() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Every digit's events and the labels, the same in every process."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0
    return tuple(record(images, np.random.default_rng(SEED))), np.asarray(bunch.target, dtype=np.int64)


def _load(root: str | None, download: bool, time_bins: int) -> RawArrays:
    samples, labels = generate()

    def binned(events: list[np.ndarray]) -> np.ndarray:
        return bin_samples(events, SENSOR, time_bins)

    return RawArrays(
        x=binned(list(samples)),
        y=labels,
        test_x=None,
        test_y=None,
        num_classes=10,
        scale=1.0,
        events=EventSource(
            read=lambda from_test, positions: [samples[int(i)] for i in positions],
            bin=binned,
            sensor_size=SENSOR,
        ),
    )


def _check(root: str | None, download: bool) -> None:
    """Generated: nothing to find on disk."""


# Registered in pyproject.toml (entry-point group snn_kd_harness.datasets).
DIGITS_EVENTS = DatasetEntry(load=_load, check=_check, needs_root=False, frames=True, encoding="events", augment="none")
