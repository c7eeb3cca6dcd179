"""Differences of means between two methods, and the mean of one sample, with a 95% confidence interval
(t intervals from scipy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """`mean(a) - mean(b)` with its 95% interval; `low`/`high`/`p_value` are None where undefined."""

    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    test: str  # "paired t (n=3)", "Welch t (3 vs 2)", or "n=1: no CI"
    paired: bool

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or below 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (its ± around the difference), None where undefined."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def verdict(self, first: str, second: str) -> str:
        """The comparison in words: `kd higher (the CI excludes 0)`, `no significant difference (the
        CI includes 0)`, or why there is no interval."""
        if self.low is None:
            return "no interval (one seed)"
        if not self.excludes_zero:
            return "no significant difference (the CI includes 0)"
        return f"{first if self.difference > 0 else second} higher (the CI excludes 0)"


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Difference:
    """`a - b` over seeds: a paired t interval when both hold the same seeds, else Welch's.

    Args:
        a: value per seed of the first method (KD).
        b: value per seed of the baseline.

    Returns:
        The difference of means; its interval is undefined (None) with fewer than two values a side.
    """
    a_values, b_values = list(a.values()), list(b.values())
    difference = math.fsum(a_values) / len(a_values) - math.fsum(b_values) / len(b_values)
    paired = set(a) == set(b)
    if min(len(a_values), len(b_values)) < 2:
        return Difference(difference, None, None, None, f"n={min(len(a), len(b))}: no CI", paired)
    if paired:
        return _paired(a, b, difference)
    return _welch(a_values, b_values, difference)


def _paired(a: Mapping[int, float], b: Mapping[int, float], difference: float) -> Difference:
    seeds = sorted(a)
    deltas = [a[s] - b[s] for s in seeds]
    label = f"paired t (n={len(seeds)})"
    if _no_spread(deltas):  # the interval is the point, t is undefined
        return Difference(difference, difference, difference, None, label, True)
    result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(difference, float(interval.low), float(interval.high), float(result.pvalue), label, True)


def _welch(a: list[float], b: list[float], difference: float) -> Difference:
    label = f"Welch t ({len(a)} vs {len(b)})"
    if _no_spread(a) and _no_spread(b):
        return Difference(difference, difference, difference, None, label, False)
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(difference, float(interval.low), float(interval.high), float(result.pvalue), label, False)


def _no_spread(values: list[float]) -> bool:
    """Whether the values are equal up to float rounding (t would divide by a zero deviation)."""
    return max(values) - min(values) <= 1e-12 * max(1.0, *(abs(v) for v in values))


@dataclass(frozen=True)
class Interval:
    """The mean of `n` values with its 95% t interval; `low`/`high` are None with one value."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def test(self) -> str:
        """`t (n=3)`, or `n=1, no interval`."""
        return f"t (n={self.n})" if self.low is not None else f"n={self.n}, no interval"


def mean_interval(values: list[float]) -> Interval:
    """The mean of `values` and its 95% t interval, `mean ± t(0.975, n-1) * s / sqrt(n)`.

    Undefined (None) for a single value; the point itself where every value is the same.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("mean_interval needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, None, n)
    if _no_spread(values):
        return Interval(mean, mean, mean, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)
