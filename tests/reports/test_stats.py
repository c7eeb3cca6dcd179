"""Differences of means with 95% intervals: paired where the seeds pair, Welch otherwise."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from reports.stats import compare, mean_interval


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


def test_identical_differences_give_a_point_interval() -> None:
    result = compare({1: 0.9, 2: 0.8}, {1: 0.85, 2: 0.75})
    assert result.low == pytest.approx(0.05) and result.high == pytest.approx(0.05) and result.p_value is None


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
