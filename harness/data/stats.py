"""Per-channel statistics of a split, for input normalisation."""

from __future__ import annotations

import numpy as np


def channel_stats(x: np.ndarray, index: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of `x[index] / scale` (uint8 images `[N, C, H, W]`).

    Computed exactly in float64 from per-channel uint8 histograms, so no float64 copy of
    the images is made. A constant channel gets std 1 (normalising it would divide by zero).
    """
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = np.bincount(x[index, channel].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * (values - mean) ** 2).sum() / total)
        means.append(mean / scale)
        stds.append(float(np.sqrt(var)) / scale if var > 0 else 1.0)
    return tuple(means), tuple(stds)
