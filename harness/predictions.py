"""Per-sample test predictions of a finished run: what the report's significance tests resample.

A run's final evaluation measures accuracies on the test split, clean and under each noise and
attack; beside each accuracy it keeps the class it predicted for every test image. They are
stored as the run's artifact `predictions/test.npz` (`contract.PREDICTIONS_ARTIFACT`), a
compressed numpy archive with:

- `labels`: the true class of each test image, int64 `[N]`, in the test split's order;
- one int16 `[N]` array per accuracy, named by the accuracy's metric (`test_accuracy`,
  `noise/gaussian/0.1`, `attack/pgd/0.03`): the predicted class of each image, `-1` where the
  image was not evaluated (an attack run on a subset).

The mean of `predicted == labels` over the evaluated images is the logged metric. Every method
and seed of a sweep tests on the same split (its order fixed by `dataset.*`), so two runs'
arrays pair image by image. About 2 bytes per image and accuracy, compressed: a 1,000-image
test split with 20 accuracies is some 20 kB. numpy only: the report reads it without torch.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

LABELS = "labels"
NOT_EVALUATED = -1

Predictions = dict[str, np.ndarray]
"""`labels` and, per accuracy metric, the predicted class of every test image."""


def as_array(values: Any) -> np.ndarray:
    """A torch tensor or array-like as a CPU numpy array (no torch import here)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def encode_predictions(labels: Any, predicted: Mapping[str, Any]) -> bytes:
    """The `.npz` bytes of `labels` and the predicted classes per metric.

    Raises:
        ValueError: an array whose length is not the number of labels.
    """
    label_array = as_array(labels).astype(np.int64)
    arrays = {LABELS: label_array}
    for metric, values in predicted.items():
        array = as_array(values)
        if array.shape != label_array.shape:
            raise ValueError(f"predictions of {metric}: shape {array.shape}, expected {label_array.shape}")
        arrays[metric] = array.astype(np.int16)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def write_predictions(path: str | Path, labels: Any, predicted: Mapping[str, Any]) -> None:
    """Writes `encode_predictions` to `path` (the caller makes it atomic where it must be)."""
    Path(path).write_bytes(encode_predictions(labels, predicted))


def read_predictions(path: str | Path) -> Predictions:
    """The arrays of a predictions file (`allow_pickle=False`: loading runs nothing).

    Raises:
        ValueError: not a predictions file (no `labels`, or a damaged archive).
    """
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a predictions archive ({exc})") from None
    if LABELS not in arrays:
        raise ValueError(f"{path}: no {LABELS!r} array")
    return arrays


def merged(old: Predictions, labels: Any, predicted: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """`old` updated with newer predictions (a re-evaluation adds noise levels); the labels must
    be the same images.

    Raises:
        ValueError: the labels differ (another test split).
    """
    new_labels = as_array(labels)
    if old[LABELS].shape != new_labels.shape or not np.array_equal(old[LABELS], new_labels):
        raise ValueError("the stored predictions are of another test split")
    return new_labels, {**{k: v for k, v in old.items() if k != LABELS}, **predicted}


def correct(predictions: Predictions, metric: str) -> np.ndarray | None:
    """Per test image: 1.0 where `metric`'s prediction was right, 0.0 where wrong, NaN where the
    image was not evaluated; None when the file has no such metric."""
    if metric not in predictions:
        return None
    predicted = predictions[metric]
    right = (predicted == predictions[LABELS]).astype(float)
    right[predicted == NOT_EVALUATED] = np.nan
    return right
