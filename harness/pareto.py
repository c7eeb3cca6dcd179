"""Pareto fronts, their hypervolume, and picking a few points along them: pure numpy, a leaf module.

The multi-objective search (Optuna multi-objective studies inside Ray Tune) and the report both
use these. Conventions:

- A point is a mapping of metric name to value, e.g. `{"val_accuracy": 0.91, "energy_uj": 3.2}`;
  extra keys are ignored. Objectives are a mapping of metric name to direction, `"max"` or
  `"min"` (`Objectives`), e.g. `{"val_accuracy": "max", "energy_uj": "min"}`.
- Functions take a sequence of points and return indices into it (input order unless stated).
- A point whose value for some objective is missing, `None`, NaN or infinite is *incomplete*: it is never
  on the front, dominates nothing, is dominated by nothing and adds no hypervolume.
- Exact duplicates do not dominate each other (neither is strictly better anywhere), so every
  copy of a non-dominated point is on the front.
- Internally every objective is minimised: a `"max"` objective is negated.
- The hypervolume is measured against a reference point. `reference_point` gives a stated
  default (the worst value per objective, pushed out by a margin); the report states the
  reference (and any scale) it used, since a hypervolume means nothing without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Direction = Literal["max", "min"]
Objectives = Mapping[str, Direction]
"""Metric name -> `"max"` or `"min"`, e.g. `{"val_accuracy": "max", "energy_uj": "min"}`."""

Point = Mapping[str, float]

__all__ = [
    "Direction",
    "Objectives",
    "Point",
    "closest_to",
    "dominates",
    "hypervolume",
    "non_dominated",
    "reference_point",
    "spread_along_front",
]


def _check_direction(name: str, direction: str) -> None:
    if direction not in ("max", "min"):
        raise ValueError(f"objective {name!r}: direction must be 'max' or 'min', not {direction!r}")


def _check_objectives(objectives: Objectives) -> list[str]:
    names = list(objectives)
    if not names:
        raise ValueError("at least one objective is needed")
    for name in names:
        _check_direction(name, objectives[name])
    return names


def _value(point: Point, key: str) -> float:
    """`point[key]` as a float; NaN when missing or `None`."""
    value = point.get(key)
    return math.nan if value is None else float(value)


def _minimised(points: Sequence[Point], objectives: Objectives) -> tuple[np.ndarray, np.ndarray]:
    """The points as an (n, m) array in minimisation form ("max" negated), and which rows are complete."""
    names = _check_objectives(objectives)
    signs = np.array([-1.0 if objectives[name] == "max" else 1.0 for name in names])
    rows = [[_value(p, name) for name in names] for p in points]
    values = np.array(rows, dtype=float).reshape(len(points), len(names))
    return values * signs, np.all(np.isfinite(values), axis=1)


def dominates(a: Point, b: Point, directions: Objectives) -> bool:
    """Whether `a` dominates `b`: no worse in every objective and strictly better in at least one.

    False when either point is incomplete (an objective missing, `None`, NaN or infinite).
    """
    values, complete = _minimised([a, b], directions)
    if not complete.all():
        return False
    return bool(np.all(values[0] <= values[1]) and np.any(values[0] < values[1]))


def non_dominated(points: Sequence[Point], objectives: Objectives) -> list[int]:
    """Indices of the non-dominated points (the Pareto front), in input order.

    Incomplete points are never on the front and do not knock others off it. Exact duplicates of
    a non-dominated point are all kept: duplicates do not dominate each other.
    """
    values, complete = _minimised(points, objectives)
    candidates = np.flatnonzero(complete)
    if candidates.size == 0:
        return []
    v = values[candidates]
    # dominated_by[i, j]: v[j] dominates v[i].
    no_worse = np.all(v[None, :, :] <= v[:, None, :], axis=2)
    better = np.any(v[None, :, :] < v[:, None, :], axis=2)
    dominated = np.any(no_worse & better, axis=1)
    return [int(i) for i in candidates[~dominated]]


def _check_front(points: Sequence[Point], front: Sequence[int]) -> None:
    for i in front:
        if not 0 <= i < len(points):
            raise IndexError(f"front index {i} is out of range for {len(points)} points")


def spread_along_front(
    points: Sequence[Point], front: list[int], objectives: Objectives, k: int, along: str
) -> list[int]:
    """Up to `k` indices of `front`, spread evenly along objective `along`, in ascending `along` order.

    The front is sorted by the value of `along` (ascending, ties by index). Both ends are always
    included; each of the remaining `k - 2` picks is the not-yet-picked interior point whose
    normalised `along` value, `(v - min) / (max - min)`, is closest to the evenly spaced position
    `j / (k - 1)`, `j = 1 .. k - 2` (taken in that order; ties by index). When every point has the
    same `along` value the rank `r / (n - 1)` stands in for the normalised value. The result is
    deterministic.

    `k >= len(front)` returns the whole front sorted by `along`; `k == 1` returns the end that is
    best in `along`'s direction; `k <= 0` returns `[]`.

    Raises:
        ValueError: `along` is not an objective, or a front point has no finite `along` value.
        IndexError: a front index is out of range.
    """
    _check_objectives(objectives)
    if along not in objectives:
        raise ValueError(f"along={along!r} is not one of the objectives {sorted(objectives)}")
    _check_front(points, front)
    values = {i: _value(points[i], along) for i in front}
    for i, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"front point {i} has no finite value for {along!r}")
    order = sorted(dict.fromkeys(front), key=lambda i: (values[i], i))
    if k <= 0:
        return []
    if k >= len(order):
        return order
    if k == 1:
        return [order[-1] if objectives[along] == "max" else order[0]]
    low, high = values[order[0]], values[order[-1]]
    n = len(order)
    if high > low:
        position = {i: (values[i] - low) / (high - low) for i in order}
    else:
        position = {i: rank / (n - 1) for rank, i in enumerate(order)}
    picked = {order[0], order[-1]}
    interior = order[1:-1]
    for j in range(1, k - 1):
        target = j / (k - 1)
        best = min((i for i in interior if i not in picked), key=lambda i: (abs(position[i] - target), i))
        picked.add(best)
    return [i for i in order if i in picked]


def _union_volume(boxes: np.ndarray) -> float:
    """Volume of the union of boxes `[0, b]` (rows of `boxes`, all entries > 0), exactly.

    Two dimensions by a sweep; more by slicing along the last dimension: between consecutive
    distinct heights the cross-section is the union of the boxes at least that high.
    """
    if boxes.shape[0] == 0:
        return 0.0
    dims = boxes.shape[1]
    if dims == 1:
        return float(boxes[:, 0].max())
    if dims == 2:
        order = np.lexsort((-boxes[:, 1], -boxes[:, 0]))  # x descending, then y descending
        area, reached = 0.0, 0.0
        for x, y in boxes[order]:
            if y > reached:
                area += float(x) * float(y - reached)
                reached = float(y)
        return area
    boxes = _maximal(boxes)
    order = np.argsort(-boxes[:, -1], kind="stable")
    boxes = boxes[order]
    heights = boxes[:, -1]
    volume = 0.0
    for j in range(boxes.shape[0]):
        below = float(heights[j + 1]) if j + 1 < boxes.shape[0] else 0.0
        thickness = float(heights[j]) - below
        if thickness > 0:
            volume += thickness * _union_volume(boxes[: j + 1, :-1])
    return volume


def _maximal(boxes: np.ndarray) -> np.ndarray:
    """The boxes not contained in another (one copy of each duplicate)."""
    boxes = np.unique(boxes, axis=0)
    no_smaller = np.all(boxes[None, :, :] >= boxes[:, None, :], axis=2)
    bigger = np.any(boxes[None, :, :] > boxes[:, None, :], axis=2)
    return boxes[~np.any(no_smaller & bigger, axis=1)]


def hypervolume(
    points: Sequence[Point],
    objectives: Objectives,
    reference: Mapping[str, float],
    scale: Mapping[str, float] | None = None,
) -> float:
    """The hypervolume the points dominate, bounded by `reference`, for any number of objectives.

    Each complete point that strictly dominates the reference (strictly better than it in every
    objective) spans the box between itself and the reference; the hypervolume is the volume of
    the union of those boxes (exact: a sweep for two objectives, recursive slicing for more).
    Points worse than or equal to the reference in any objective, and incomplete points, add
    nothing; dominated points add nothing either, so passing all points or just the front gives
    the same value.

    `scale`, when given, must name every objective with a positive finite value: each
    objective's distance to the reference is divided by its scale (so the result is the plain
    hypervolume divided by the product of the scales), which makes hypervolumes over objectives
    of different units comparable, e.g. accuracy and energy each scaled by their range. The
    report states the reference and scale it used.

    Raises:
        ValueError: the reference or scale lacks an objective or is not finite (scale not > 0).
    """
    names = _check_objectives(objectives)
    for name in names:
        if not math.isfinite(_value(reference, name)):
            raise ValueError(f"reference must give a finite value for objective {name!r}")
    if scale is not None:
        for name in names:
            if not (math.isfinite(_value(scale, name)) and _value(scale, name) > 0):
                raise ValueError(f"scale must give a positive finite value for objective {name!r}")
    values, complete = _minimised(points, objectives)
    ref, _ = _minimised([reference], objectives)
    distances = ref[0] - values[complete]
    distances = distances[np.all(distances > 0, axis=1)]
    if scale is not None:
        distances = distances / np.array([float(scale[name]) for name in names])
    return _union_volume(distances)


def reference_point(points: Sequence[Point], objectives: Objectives, margin: float = 0.1) -> dict[str, float]:
    """A stated default reference point for `hypervolume`, from the complete points.

    Per objective: the worst value among the complete points (the largest for `"min"`, the
    smallest for `"max"`), pushed further in the worse direction by `margin` times the
    objective's range over those points; when the range is 0 by `margin * |worst|`, and when
    that is 0 too (every value 0) by `margin * 1.0`. With `margin > 0` every complete point
    strictly dominates the reference, so each one (the worst included) can add hypervolume;
    with `margin == 0` the points worst in some objective add nothing. The report states the
    reference it used.

    Raises:
        ValueError: no complete point, or `margin` negative or not finite.
    """
    names = _check_objectives(objectives)
    margin = float(margin)
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, not {margin}")
    values, complete = _minimised(points, objectives)
    if not complete.any():
        raise ValueError("reference_point needs at least one point with every objective")
    reference: dict[str, float] = {}
    for column, name in enumerate(names):
        sign = -1.0 if objectives[name] == "max" else 1.0
        minimised = values[complete, column]
        worst = float(minimised.max()) * sign  # back in the objective's own sign
        spread = float(minimised.max() - minimised.min())
        base = spread if spread > 0 else abs(worst) if worst != 0 else 1.0
        reference[name] = worst + sign * margin * base
    return reference


def closest_to(
    points: Sequence[Point], front: Sequence[int], key: str, target: float, best: str, direction: Direction
) -> int:
    """The front index whose `key` value is closest to `target`.

    Ties (the same distance) go to the best value of objective `best` in `direction` (`"max"` or
    `"min"`; a missing or NaN `best` value counts as worst), then to the lower index. Used to pick
    "the front point closest to the reference time steps at the best accuracy". Front points
    without a finite `key` value are passed over.

    Raises:
        ValueError: no front point has a finite `key` value, `target` is not finite, or
            `direction` is not max/min.
        IndexError: a front index is out of range.
    """
    _check_direction(best, direction)
    _check_front(points, front)
    target = float(target)
    if not math.isfinite(target):
        raise ValueError(f"target must be finite, not {target}")
    sign = -1.0 if direction == "max" else 1.0

    def rank(i: int) -> tuple[float, float, int]:
        quality = _value(points[i], best)
        return abs(_value(points[i], key) - target), math.inf if math.isnan(quality) else sign * quality, i

    candidates = [i for i in front if math.isfinite(_value(points[i], key))]
    if not candidates:
        raise ValueError(f"no front point has a finite value for {key!r}")
    return min(candidates, key=rank)
