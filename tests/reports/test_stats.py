"""Differences of means with 95% intervals: paired where the seeds pair, Welch otherwise."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy import stats

from reports.stats import ZERO_SPREAD, compare, holm_adjusted, mean_interval, with_holm


def test_same_seeds_give_a_paired_t_interval() -> None:
    a, b = {1: 0.90, 2: 0.93, 3: 0.95}, {1: 0.88, 2: 0.90, 3: 0.94}
    result = compare(a, b)
    deltas = [a[s] - b[s] for s in a]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(deltas) / 3**0.5
    assert result.paired and result.test == "paired t (n=3)"
    assert result.difference == pytest.approx(statistics.fmean(deltas))
    assert (result.low, result.high) == pytest.approx(
        (statistics.fmean(deltas) - half, statistics.fmean(deltas) + half)
    )
    assert result.p_value == pytest.approx(stats.ttest_rel(list(a.values()), list(b.values())).pvalue)


def test_different_seeds_give_welchs_interval() -> None:
    a, b = {1: 0.90, 2: 0.93, 3: 0.95}, {4: 0.80, 5: 0.84}
    result = compare(a, b)
    assert not result.paired and result.test == "Welch t (3 vs 2)"
    expected = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval()
    assert (result.low, result.high) == pytest.approx((expected.low, expected.high))
    assert result.excludes_zero


def test_one_seed_leaves_the_interval_undefined() -> None:
    result = compare({1: 0.9}, {1: 0.8})
    assert result.difference == pytest.approx(0.1)
    assert result.low is None and result.high is None and result.p_value is None
    assert result.test == "n=1: no CI" and not result.excludes_zero


def test_zero_spread_across_seeds_gives_no_interval_and_no_verdict() -> None:
    """Two seeds whose differences happen to be equal: on a finite test set a coincidence, not certainty."""
    result = compare({1: 0.9, 2: 0.8}, {1: 0.84, 2: 0.74})
    assert result.low is None and result.high is None and result.p_value is None
    assert result.reason == ZERO_SPREAD and not result.significant
    assert result.verdict("kd", "direct") == "no verdict (zero spread across seeds)"
    assert with_holm([result])[0].verdict("kd", "direct") == "no verdict (zero spread across seeds)"


def _right(rng: np.random.Generator, n_images: int, accuracy: float) -> np.ndarray:
    return (rng.random(n_images) < accuracy).astype(float)


def _means(table: dict[int, np.ndarray]) -> dict[int, float]:
    return {seed: float(np.nanmean(right)) for seed, right in table.items()}


def test_identical_predictions_give_no_difference() -> None:
    rng = np.random.default_rng(0)
    a = {seed: _right(rng, 300, 0.9) for seed in range(1, 6)}
    result = compare(_means(a), _means(a), a, dict(a))
    assert result.difference == 0 and result.low is None and not result.significant
    assert result.verdict("kd", "direct").startswith("no verdict")


def test_one_image_on_300_is_not_significant() -> None:
    """The second method gets one image wrong that the first gets right, in some seeds only (so the
    seeds spread); and in every seed (zero spread): neither is a significant difference."""
    rng = np.random.default_rng(1)
    a = {seed: _right(rng, 300, 0.9) for seed in range(1, 6)}
    b = {seed: right.copy() for seed, right in a.items()}
    for seed in (1, 3):
        b[seed][np.flatnonzero(a[seed] == 1)[0]] = 0.0
    some = compare(_means(a), _means(b), a, b)
    assert some.test == "seeds x 300 images (paired, n=5)"
    assert some.low is not None and some.low < 0 < some.high and some.p_value > 0.05
    for seed in (2, 4, 5):
        b[seed][np.flatnonzero(a[seed] == 1)[0]] = 0.0
    every = compare(_means(a), _means(b), a, b)
    assert every.difference == pytest.approx(1 / 300) and every.reason == ZERO_SPREAD and not every.significant


def test_a_large_consistent_difference_is_significant_after_holm() -> None:
    """0.90 against 0.60 on 300 images and five seeds stays significant among 60 comparisons whose
    other 59 have no true difference; the null ones are not made significant by the correction."""
    rng = np.random.default_rng(2)
    a = {seed: _right(rng, 300, 0.9) for seed in range(1, 6)}
    b = {seed: _right(rng, 300, 0.6) for seed in range(1, 6)}
    results = [compare(_means(a), _means(b), a, b)]
    for _ in range(59):
        x = {seed: _right(rng, 300, 0.8) for seed in range(1, 6)}
        y = {seed: _right(rng, 300, 0.8) for seed in range(1, 6)}
        results.append(compare(_means(x), _means(y), x, y))
    adjusted = with_holm(results)
    assert adjusted[0].significant and adjusted[0].p_holm < 0.05
    assert adjusted[0].verdict("kd", "direct").startswith("kd higher (Holm p = ")
    assert all(r.p_holm >= r.p_value for r in adjusted)
    assert sum(r.significant for r in adjusted[1:]) <= 1


def test_the_interval_counts_the_test_images() -> None:
    """Seeds that agree closely (each seed changes one image of a fixed pattern): the seeds-only t
    interval is narrow, but which 100 images were drawn matters, and the interval that counts
    the images is several times wider."""
    rng = np.random.default_rng(3)
    pattern_a, pattern_b = _right(rng, 100, 0.8), _right(rng, 100, 0.8)

    def seeds(pattern: np.ndarray) -> dict[int, np.ndarray]:
        table = {}
        for seed in range(1, 6):
            right = pattern.copy()
            flipped = rng.integers(100)
            right[flipped] = 1 - right[flipped]
            table[seed] = right
        return table

    a, b = seeds(pattern_a), seeds(pattern_b)
    seeds_only = compare(_means(a), _means(b))
    counted = compare(_means(a), _means(b), a, b)
    assert seeds_only.test == "paired t (n=5)" and counted.test == "seeds x 100 images (paired, n=5)"
    assert counted.low < counted.difference < counted.high
    assert counted.half_width > 2 * seeds_only.half_width


def test_under_no_true_difference_about_five_percent_are_significant() -> None:
    """Simulated seed x image tables (shared image difficulty, per-seed network quality, both
    methods alike): the raw 5% test rejects near 5% of them, not far more (a too-narrow interval)."""
    rng = np.random.default_rng(4)
    rejected = 0
    trials = 300
    for _ in range(trials):
        easiness = rng.normal(2.0, 1.5, size=300)

        def runs(rng: np.random.Generator = rng, easiness: np.ndarray = easiness) -> dict[int, np.ndarray]:
            quality = rng.normal(0.0, 0.3, size=5)
            return {s: (rng.random(300) < 1 / (1 + np.exp(-(easiness + quality[s])))).astype(float) for s in range(5)}

        a, b = runs(), runs()
        rejected += compare(_means(a), _means(b), a, b).p_value < 0.05
    assert 0.01 <= rejected / trials <= 0.10


def test_images_not_evaluated_are_left_out() -> None:
    """A subset attack marks the images it did not attack NaN: only the common ones count."""
    rng = np.random.default_rng(5)
    a = {seed: _right(rng, 200, 0.8) for seed in range(1, 4)}
    b = {seed: _right(rng, 200, 0.5) for seed in range(1, 4)}
    for table in (a, b):
        for right in table.values():
            right[50:] = np.nan
    result = compare(_means(a), _means(b), a, b)
    assert result.test == "seeds x 50 images (paired, n=3)"


def test_holm_adjusts_step_down_and_leaves_undefined_ones() -> None:
    assert holm_adjusted([0.01, 0.04, None, 0.03, 0.5]) == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    assert holm_adjusted([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert holm_adjusted([]) == []


def test_the_mean_of_one_sample_has_a_t_interval() -> None:
    values = [0.012, 0.015, 0.011]
    result = mean_interval(values)
    half = stats.t.ppf(0.975, 2) * statistics.stdev(values) / 3**0.5
    assert result.test == "t (n=3)" and result.mean == pytest.approx(statistics.fmean(values))
    assert (result.low, result.high) == pytest.approx(
        (statistics.fmean(values) - half, statistics.fmean(values) + half)
    )
    single = mean_interval([0.02])
    assert (single.mean, single.low, single.high, single.test) == (0.02, None, None, "n=1, no interval")
    assert mean_interval([0.5, 0.5]).low == pytest.approx(0.5)
