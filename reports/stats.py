"""Differences of accuracy between two methods with intervals that count the test set, Holm's
correction over a table of them, and the mean of one sample with its interval.

**What varies.** A method's accuracy on one test split moves with the training seed and with
which images happened to be drawn into the test split. Every method and seed of a sweep tests on
the same images, so the two sources are crossed: a seed x image table of right/wrong per method.
Where both methods' runs logged their per-image predictions (`harness.predictions`), `compare`
models the per-image difference `d[s, i] = right_a[s, i] - right_b[s, i]` as a two-way crossed
random-effects design (seed effect, image effect, residual) and estimates the variance of the
mean difference from the ANOVA mean squares (`MS_seed`, `MS_image`, `MS_residual` over
`n` seeds and `N` images):

    sigma2_seed = max(0, (MS_seed - MS_residual) / N)
    sigma2_image = max(0, (MS_image - MS_residual) / n)
    Var(mean d) = sigma2_seed / n + sigma2_image / N + MS_residual / (n N)

with a t interval whose degrees of freedom are Welch-Satterthwaite's over the three terms (near
`n - 1` when the seeds dominate, large when the test set does). A 1,000-image test split alone
moves an accuracy near 0.9 by about +-1.9 points at 95%; paired on the same images, a difference
moves by much less, and this is what the interval counts. Where the seeds differ between the
methods (a seed failed), the two methods' seed variances and the image variance of the
difference add (`_unpaired_samples`). Where predictions are missing (runs of an older harness),
the interval is the seeds' alone: a paired t interval over the seeds both ran, Welch's where they
differ; the comparison's `test` says which.

**No interval.** With one seed a side there is none. Where the seeds' differences are all equal
(zero spread across seeds: on a finite test split a coincidence of counting, not certainty),
there is none either, and so no verdict.

**Holm.** A significance table tests many differences at once (every pair of methods, clean and
under every noise and attack), so about one in twenty would pass at 5% by chance alone.
`holm_adjusted` gives each p-value Holm's step-down adjustment over the table, and a verdict reads
the adjusted one. The 95% intervals are each comparison's own, unadjusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE

ONE_SEED = "one seed"
ZERO_SPREAD = "zero spread across seeds"

SampleTable = Mapping[int, np.ndarray]
"""Per seed: 1.0 / 0.0 for each test image the run got right / wrong, NaN where not evaluated."""


@dataclass(frozen=True)
class Difference:
    """`mean(a) - mean(b)` with its 95% interval; `low`/`high`/`p_value` are None where undefined.

    Attributes:
        difference: The difference of the two methods' mean accuracies.
        low, high: Its 95% interval (unadjusted), None where there is none (`reason`).
        p_value: The raw two-sided p-value of the difference being 0.
        test: How the interval was made: `seeds x 1000 images (paired, n=5)`, `paired t (n=3)`, ...
        paired: Whether the seeds paired.
        p_holm: The Holm-adjusted p-value within its table (`holm_adjusted`); None until adjusted.
        reason: Why there is no interval (`ONE_SEED`, `ZERO_SPREAD`), else None.
    """

    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    test: str
    paired: bool
    p_holm: float | None = None
    reason: str | None = None

    @property
    def excludes_zero(self) -> bool:
        """Whether the (unadjusted) interval lies entirely above or below 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (its ± around the difference), None where undefined."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def p_verdict(self) -> float | None:
        """The p-value a verdict reads: Holm's where adjusted, else the raw one."""
        return self.p_holm if self.p_holm is not None else self.p_value

    @property
    def significant(self) -> bool:
        """Whether the difference is significant at 5% (by `p_verdict`); never without an interval."""
        return self.low is not None and self.p_verdict is not None and self.p_verdict < ALPHA

    def p_text(self) -> str:
        """`Holm p = 0.012` (or `p = 0.012` before adjustment)."""
        p = self.p_verdict
        return f"{'Holm ' if self.p_holm is not None else ''}p = {p:.2g}" if p is not None else "no p"

    def verdict(self, first: str, second: str) -> str:
        """The comparison in words: `kd higher (Holm p = 0.003)`, `no significant difference
        (Holm p = 0.41)`, or why there is no verdict."""
        if self.low is None:
            return f"no verdict ({self.reason or 'no interval'})"
        if not self.significant:
            return f"no significant difference ({self.p_text()})"
        return f"{first if self.difference > 0 else second} higher ({self.p_text()})"


def compare(
    a: Mapping[int, float],
    b: Mapping[int, float],
    a_samples: SampleTable | None = None,
    b_samples: SampleTable | None = None,
) -> Difference:
    """`a - b` over seeds, counting the test set where both sides' per-image results are given.

    Args:
        a: Accuracy per seed of the first method.
        b: Accuracy per seed of the second.
        a_samples, b_samples: Per seed, each test image right (1) or wrong (0) (NaN: not
            evaluated), on the same images in the same order for every seed and both methods;
            used only when both cover every seed of `a` and `b`.

    Returns:
        The difference of means and its interval (see the module docstring); none with one seed
        a side or zero spread across seeds.
    """
    a_values, b_values = list(a.values()), list(b.values())
    difference = math.fsum(a_values) / len(a_values) - math.fsum(b_values) / len(b_values)
    paired = set(a) == set(b)
    if min(len(a_values), len(b_values)) < 2:
        return Difference(difference, None, None, None, f"n={min(len(a), len(b))}: no CI", paired, reason=ONE_SEED)
    spread_free = _no_spread([a[s] - b[s] for s in sorted(a)]) if paired else _no_spread(a_values + b_values)
    usable = a_samples is not None and b_samples is not None and set(a) <= set(a_samples) and set(b) <= set(b_samples)
    if spread_free:
        label = "paired" if paired else "unpaired"
        return Difference(difference, None, None, None, f"{label}, n={len(a)}: no CI", paired, reason=ZERO_SPREAD)
    if usable:
        assert a_samples is not None and b_samples is not None
        if paired:
            return _paired_samples(a_samples, b_samples, sorted(a), difference)
        return _unpaired_samples(a_samples, b_samples, sorted(a), sorted(b), difference)
    if paired:
        return _paired(a, b, difference)
    return _welch(a_values, b_values, difference)


def _t_result(
    difference: float, variance: float, df: float, label: str, paired: bool, centre: float | None = None
) -> Difference:
    """A t interval and two-sided p-value around `centre` (default `difference`)."""
    centre = difference if centre is None else centre
    if variance <= 0 or not math.isfinite(df):
        return Difference(difference, None, None, None, label, paired, reason=ZERO_SPREAD)
    se = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    p_value = float(2 * stats.t.sf(abs(centre) / se, df))
    return Difference(difference, centre - half, centre + half, p_value, label, paired)


def _evaluated(tables: Sequence[np.ndarray]) -> np.ndarray:
    """The images every row of every table evaluated."""
    stacked = np.vstack(tables)
    return ~np.isnan(stacked).any(axis=0)


def _paired_samples(a: SampleTable, b: SampleTable, seeds: list[int], difference: float) -> Difference:
    """The crossed seeds x images interval of the module docstring, on the images both evaluated."""
    rows_a = np.vstack([a[s] for s in seeds])
    rows_b = np.vstack([b[s] for s in seeds])
    keep = _evaluated([rows_a, rows_b])
    d = rows_a[:, keep] - rows_b[:, keep]
    n, images = d.shape
    label = f"seeds x {images} images (paired, n={n})"
    if images < 2:
        return Difference(difference, None, None, None, label, True, reason="fewer than two images in common")
    grand = float(d.mean())
    seed_means, image_means = d.mean(axis=1), d.mean(axis=0)
    ms_seed = images * float(((seed_means - grand) ** 2).sum()) / (n - 1)
    ms_image = n * float(((image_means - grand) ** 2).sum()) / (images - 1)
    residual = d - seed_means[:, None] - image_means[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((n - 1) * (images - 1))
    terms = [  # (variance term, its degrees of freedom)
        (max(0.0, (ms_seed - ms_residual) / images) / n, n - 1),
        (max(0.0, (ms_image - ms_residual) / n) / images, images - 1),
        (ms_residual / (n * images), (n - 1) * (images - 1)),
    ]
    return _t_result(difference, *_satterthwaite(terms), label, True, centre=grand)


def _unpaired_samples(
    a: SampleTable, b: SampleTable, a_seeds: list[int], b_seeds: list[int], difference: float
) -> Difference:
    """Different seeds, the same images: each side's seed variance plus the image variance of
    the difference (which also holds the residual, so it errs wide)."""
    rows_a = np.vstack([a[s] for s in a_seeds])
    rows_b = np.vstack([b[s] for s in b_seeds])
    keep = _evaluated([rows_a, rows_b])
    rows_a, rows_b = rows_a[:, keep], rows_b[:, keep]
    images = rows_a.shape[1]
    label = f"seeds x {images} images (unpaired, {len(a_seeds)} vs {len(b_seeds)})"
    centre = float(rows_a.mean() - rows_b.mean())
    per_image = rows_a.mean(axis=0) - rows_b.mean(axis=0)
    terms = [
        (float(rows_a.mean(axis=1).var(ddof=1)) / len(a_seeds), len(a_seeds) - 1),
        (float(rows_b.mean(axis=1).var(ddof=1)) / len(b_seeds), len(b_seeds) - 1),
        (float(per_image.var(ddof=1)) / images if images > 1 else 0.0, max(1, images - 1)),
    ]
    return _t_result(difference, *_satterthwaite(terms), label, False, centre=centre)


def _satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """The sum of the variance terms and its Welch-Satterthwaite degrees of freedom."""
    total = sum(v for v, _ in terms)
    denominator = sum(v * v / df for v, df in terms if v > 0)
    return total, (total * total / denominator if denominator > 0 else math.inf)


def _paired(a: Mapping[int, float], b: Mapping[int, float], difference: float) -> Difference:
    seeds = sorted(a)
    label = f"paired t (n={len(seeds)})"
    result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(difference, float(interval.low), float(interval.high), float(result.pvalue), label, True)


def _welch(a: list[float], b: list[float], difference: float) -> Difference:
    label = f"Welch t ({len(a)} vs {len(b)})"
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(difference, float(interval.low), float(interval.high), float(result.pvalue), label, False)


def _no_spread(values: list[float]) -> bool:
    """Whether the values are equal up to float rounding."""
    return max(values) - min(values) <= 1e-12 * max(1.0, *(abs(v) for v in values))


def holm_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the defined p-values (None stays None): the k-th smallest of
    m becomes `max over j <= k of min(1, (m - j + 1) p_(j))`."""
    defined = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    m = len(defined)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def with_holm(results: Sequence[Difference]) -> list[Difference]:
    """`results` with `p_holm` set, adjusted over all of them (one table's family)."""
    adjusted = holm_adjusted([r.p_value for r in results])
    return [replace(r, p_holm=p) for r, p in zip(results, adjusted, strict=True)]


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
