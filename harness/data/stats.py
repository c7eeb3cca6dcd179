"""Per-channel statistics of a split, for input normalisation."""

from __future__ import annotations

import numpy as np


def channel_stats(x: np.ndarray, index: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of `x[index] / scale`.

    `x` holds uint8 images `[N, C, H, W]`, or event counts `[N, T, C, H, W]` (uint8 or
    uint16), whose channels are the polarities, pooled over every frame. Computed exactly in
    float64 from per-channel histograms of the integer values, so no float64 copy of the data is
    made. A constant channel gets std 1 (normalising it would divide by zero).
    """
    means, stds = [], []
    for channel in range(x.shape[-3]):
        counts = np.bincount(x[index, ..., channel, :, :].ravel()).astype(np.float64)
        values = np.arange(len(counts), dtype=np.float64)
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * (values - mean) ** 2).sum() / total)
        means.append(mean / scale)
        stds.append(float(np.sqrt(var)) / scale if var > 0 else 1.0)
    return tuple(means), tuple(stds)
