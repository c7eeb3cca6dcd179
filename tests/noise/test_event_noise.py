"""Tests of harness.noise.events: each event corruption's identity at level 0, its statistics,
its determinism per (noise, level, index) and its level checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.noise import NOISES, is_event_noise, noise_seed
from harness.noise.events import (
    EVENT_NOISES,
    apply_event_noise,
    background_activity,
    event_drop,
    polarity_flip,
    spatial_jitter,
    temporal_jitter,
)

SENSOR = (34, 34, 2)
LEVELS = {
    "event_drop": 0.3,
    "background_activity": 5.0,
    "spatial_jitter": 1.5,
    "temporal_jitter": 500.0,
    "polarity_flip": 0.5,
}
BOUNDED = {"event_drop", "polarity_flip"}
# tonic's dtypes: N-MNIST (all int64), DVS Gesture (int16 x/y, bool p), CIFAR10-DVS (uint64 t).
DTYPES = {
    "nmnist": np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]),
    "dvs-gesture": np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]),
    "cifar10-dvs": np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)]),
}


def _sample(n: int = 10_000, dtype: np.dtype = DTYPES["nmnist"], seed: int = 0, span: int = 300_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=dtype)
    events["x"] = rng.integers(0, SENSOR[0], n)
    events["y"] = rng.integers(0, SENSOR[1], n)
    events["t"] = np.sort(rng.integers(0, span, n))
    events["p"] = rng.integers(0, 2, n)
    return events


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registry() -> None:
    assert sorted(EVENT_NOISES) == sorted(LEVELS)


@pytest.mark.parametrize("noise", sorted(LEVELS))
@pytest.mark.parametrize("dataset", sorted(DTYPES))
def test_level_zero_is_identity_and_input_untouched(noise: str, dataset: str) -> None:
    events = _sample(2000, DTYPES[dataset])
    before = events.copy()
    fn = EVENT_NOISES[noise]
    same = fn(events, 0.0, _rng(), SENSOR)
    assert same is not events and same.dtype == events.dtype
    np.testing.assert_array_equal(same, events)
    noisy = fn(events, LEVELS[noise], _rng(), SENSOR)
    np.testing.assert_array_equal(events, before)  # never modified
    assert noisy.dtype == events.dtype
    assert np.all(np.diff(noisy["t"].astype(np.int64)) >= 0)  # sorted by t
    assert not np.array_equal(noisy, events)
    for axis, size in (("x", SENSOR[0]), ("y", SENSOR[1]), ("p", SENSOR[2])):
        values = noisy[axis].astype(np.int64)
        assert values.min() >= 0 and values.max() < size


def test_event_drop_statistics() -> None:
    events = _sample()
    kept = event_drop(events, 0.3, _rng(), SENSOR)
    assert abs(len(kept) / len(events) - 0.7) < 0.03
    # The kept events are events of the sample, in their order.
    index = {e.tobytes(): i for i, e in enumerate(events)}
    positions = [index[e.tobytes()] for e in kept]
    assert positions == sorted(positions)
    assert len(event_drop(events, 1.0, _rng(), SENSOR)) == 0


def test_polarity_flip_statistics() -> None:
    for dtype in (DTYPES["nmnist"], DTYPES["dvs-gesture"]):
        events = _sample(dtype=dtype)
        flipped = polarity_flip(events, 0.5, _rng(), SENSOR)
        changed = flipped["p"] != events["p"]
        assert abs(changed.mean() - 0.5) < 0.03
        for axis in ("x", "y", "t"):
            np.testing.assert_array_equal(flipped[axis], events[axis])
        np.testing.assert_array_equal(
            polarity_flip(events, 1.0, _rng(), SENSOR)["p"].astype(int), 1 - events["p"].astype(int)
        )


def test_background_activity_statistics() -> None:
    events = _sample(1000, span=200_001)
    span_s = (int(events["t"].max()) - int(events["t"].min())) / 1e6
    rate = 10.0
    expected = rate * SENSOR[0] * SENSOR[1] * span_s  # ~2300
    added = [len(background_activity(events, rate, _rng(seed), SENSOR)) - len(events) for seed in range(5)]
    assert abs(np.mean(added) - expected) < 4 * math.sqrt(expected / 5)
    noisy = background_activity(events, rate, _rng(), SENSOR)
    assert noisy["t"].min() == events["t"].min() and noisy["t"].max() == events["t"].max()
    # The original events are all still there.
    assert len(np.intersect1d(noisy.view(np.void), events.view(np.void))) == len(np.unique(events.view(np.void)))
    # Uniform polarity and pixels.
    extra = len(noisy) - len(events)
    assert abs(noisy["p"].sum() - events["p"].sum() - extra / 2) < 4 * math.sqrt(extra / 4)
    # No span, no noise; no events, no noise.
    flat = _sample(10)
    flat["t"] = 5
    np.testing.assert_array_equal(background_activity(flat, 1e6, _rng(), SENSOR), flat)
    assert len(background_activity(flat[:0], 1e6, _rng(), SENSOR)) == 0


def test_spatial_jitter_statistics() -> None:
    events = _sample()
    jittered = spatial_jitter(events, 1.0, _rng(), SENSOR)
    assert jittered["x"].min() >= 0 and jittered["x"].max() < SENSOR[0]
    assert jittered["y"].min() >= 0 and jittered["y"].max() < SENSOR[1]
    # Near the borders some leave: fewer events, but most stay (34 px, sigma 1).
    assert 0.9 * len(events) < len(jittered) < len(events)
    # Inside, far from the borders, none is dropped and the shifts have sigma ~1.
    centre = _sample()
    centre["x"] = 17
    centre["y"] = 17
    moved = spatial_jitter(centre, 1.0, _rng(), SENSOR)
    assert len(moved) == len(centre)
    dx = moved["x"].astype(float) - 17
    assert abs(dx.mean()) < 0.05 and abs(dx.std() - math.sqrt(1 + 1 / 12)) < 0.05  # rounding adds 1/12
    np.testing.assert_array_equal(moved["t"], centre["t"])


def test_temporal_jitter_statistics() -> None:
    for dtype in DTYPES.values():
        events = _sample(dtype=dtype)
        jittered = temporal_jitter(events, 2000.0, _rng(), SENSOR)
        t = jittered["t"].astype(np.int64)
        assert len(jittered) == len(events)
        assert np.all(np.diff(t) >= 0) and t.min() >= 0
    # Near t = 0, clipped to 0, not dropped nor negative.
    early = _sample(1000, span=10)
    t = temporal_jitter(early, 1000.0, _rng(), SENSOR)["t"]
    assert t.min() == 0 and np.count_nonzero(t == 0) > 300
    # The shifts' spread is the level (on a sample where reordering does not matter: one event).
    one = _sample(1)
    one["t"] = 1_000_000
    shifts = [int(temporal_jitter(one, 100.0, _rng(s), SENSOR)["t"][0]) - 1_000_000 for s in range(2000)]
    assert abs(np.mean(shifts)) < 8 and abs(np.std(shifts) - 100) < 8


@pytest.mark.parametrize("noise", sorted(LEVELS))
def test_apply_event_noise_is_deterministic_per_index(noise: str) -> None:
    samples = [_sample(500, seed=s) for s in range(3)]
    level = LEVELS[noise]
    first = apply_event_noise(samples, noise, level, SENSOR)
    again = apply_event_noise(samples, noise, level, SENSOR)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # Sample i depends only on (noise, level, index): the same sample alone at index 2.
    alone = apply_event_noise([samples[2]], noise, level, SENSOR, start_index=2)
    np.testing.assert_array_equal(alone[0], first[2])
    direct = EVENT_NOISES[noise](samples[2], level, np.random.default_rng(noise_seed(noise, level, 2)), SENSOR)
    np.testing.assert_array_equal(direct, first[2])
    # Another index: another corruption of the same sample.
    elsewhere = apply_event_noise([samples[2]], noise, level, SENSOR, start_index=7)
    assert not np.array_equal(elsewhere[0], first[2])
    # Level 0: exact copies.
    for a, b in zip(apply_event_noise(samples, noise, 0, SENSOR), samples, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("noise", sorted(LEVELS))
@pytest.mark.parametrize("level", [-0.1, math.nan, math.inf, -math.inf, "high"])
def test_bad_levels(noise: str, level: object) -> None:
    events = _sample(10)
    for call in (
        lambda: EVENT_NOISES[noise](events, level, _rng(), SENSOR),
        lambda: apply_event_noise([events], noise, level, SENSOR),
        lambda: apply_event_noise([], noise, level, SENSOR),
    ):
        with pytest.raises(HarnessInputError, match=noise) as err:
            call()
        message = str(err.value)
        assert "\n" not in message
        assert ("[0, 1]" if noise in BOUNDED else ">= 0") in message


@pytest.mark.parametrize("noise", sorted(BOUNDED))
def test_bounded_levels(noise: str) -> None:
    with pytest.raises(HarnessInputError, match=r"\[0, 1\]"):
        apply_event_noise([_sample(10)], noise, 1.01, SENSOR)


def test_an_image_noise_or_an_unknown_name_is_refused() -> None:
    with pytest.raises(HarnessInputError, match="noise 'gaussian' corrupts images, not event streams"):
        apply_event_noise([_sample(10)], "gaussian", 0.1, SENSOR)
    with pytest.raises(HarnessInputError, match="unknown noise type 'fog'"):
        apply_event_noise([_sample(10)], "fog", 0.1, SENSOR)


def test_the_event_noises_are_registered_as_event_noises() -> None:
    for name in EVENT_NOISES:
        assert is_event_noise(name) and NOISES.get(name).fn is EVENT_NOISES[name]
    assert not is_event_noise("gaussian")
