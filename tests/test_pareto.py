"""`harness.pareto`: fronts, hypervolume, spreading and picking, checked on hand-worked point sets."""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from harness.pareto import (
    closest_to,
    dominates,
    hypervolume,
    non_dominated,
    reference_point,
    spread_along_front,
)

ACC_ENERGY = {"val_accuracy": "max", "energy_uj": "min"}


def _pts(rows, names=("val_accuracy", "energy_uj")):
    return [dict(zip(names, row, strict=True)) for row in rows]


# (acc, energy): 0 = (0.9, 3), 1 = (0.8, 1), 2 = (0.85, 2), 3 = (0.7, 2.5).
# Point 3 is dominated by point 2 (0.85 > 0.7 and 2 < 2.5); 0, 1, 2 trade accuracy for energy.
HAND = _pts([(0.9, 3), (0.8, 1), (0.85, 2), (0.7, 2.5)])
HAND_REF = {"val_accuracy": 0.5, "energy_uj": 4.0}


# --- dominates ---------------------------------------------------------------------------------


def test_dominates_needs_no_worse_everywhere_and_strictly_better_somewhere() -> None:
    assert dominates(HAND[2], HAND[3], ACC_ENERGY)
    assert not dominates(HAND[3], HAND[2], ACC_ENERGY)
    assert not dominates(HAND[0], HAND[1], ACC_ENERGY)  # a trade-off
    assert not dominates(HAND[1], HAND[0], ACC_ENERGY)
    assert not dominates(HAND[0], HAND[0], ACC_ENERGY)  # equal is not better
    tie_in_one = {"val_accuracy": 0.85, "energy_uj": 2.5}
    assert dominates(HAND[2], tie_in_one, ACC_ENERGY)  # equal accuracy, strictly less energy


def test_dominates_is_false_for_incomplete_points_and_rejects_bad_directions() -> None:
    nan = {"val_accuracy": math.nan, "energy_uj": 0.0}
    missing = {"val_accuracy": 1.0}
    assert not dominates(nan, HAND[3], ACC_ENERGY)
    assert not dominates(HAND[2], nan, ACC_ENERGY)
    assert not dominates(missing, HAND[3], ACC_ENERGY)
    with pytest.raises(ValueError, match="'max' or 'min'"):
        dominates(HAND[0], HAND[1], {"val_accuracy": "maximize"})
    with pytest.raises(ValueError, match="at least one objective"):
        dominates(HAND[0], HAND[1], {})


# --- non_dominated -----------------------------------------------------------------------------


def test_the_hand_built_front() -> None:
    assert non_dominated(HAND, ACC_ENERGY) == [0, 1, 2]


def test_dominated_points_are_removed_and_the_order_is_the_input_order() -> None:
    rows = [(0.6, 5), (0.95, 0.5), (0.7, 2), (0.95, 0.5 + 1e-9)]
    # Point 1 dominates every other one (point 3 by a hair of energy).
    assert non_dominated(_pts(rows), ACC_ENERGY) == [1]
    assert non_dominated(_pts(list(reversed(rows))), ACC_ENERGY) == [2]
    assert non_dominated([], ACC_ENERGY) == []


def test_points_with_nan_or_missing_objectives_are_never_on_the_front() -> None:
    points = HAND + [
        {"val_accuracy": math.nan, "energy_uj": 0.0},  # would dominate everything in energy
        {"val_accuracy": 1.0},  # energy missing
        {"val_accuracy": 1.0, "energy_uj": None},
        {"val_accuracy": 1.0, "energy_uj": -math.inf},
    ]
    assert non_dominated(points, ACC_ENERGY) == [0, 1, 2]
    assert non_dominated(points[4:], ACC_ENERGY) == []


def test_exact_duplicates_are_all_kept() -> None:
    points = HAND + [dict(HAND[1]), dict(HAND[3])]
    assert non_dominated(points, ACC_ENERGY) == [0, 1, 2, 4]  # 5 is a copy of the dominated 3


def test_swapping_directions_mirrors_the_front() -> None:
    # Negating every value and swapping max/min describes the same trade-off.
    mirrored = [{"val_accuracy": -p["val_accuracy"], "energy_uj": -p["energy_uj"]} for p in HAND]
    swapped = {"val_accuracy": "min", "energy_uj": "max"}
    assert non_dominated(mirrored, swapped) == non_dominated(HAND, ACC_ENERGY) == [0, 1, 2]
    assert hypervolume(mirrored, swapped, {k: -v for k, v in HAND_REF.items()}) == pytest.approx(1.05)
    # Same values, flipped directions (low accuracy, high energy wanted): 3 = (0.7, 2.5) beats 1 and 2
    # (less accuracy, more energy) and trades off against 0 = (0.9, 3), which has the most energy.
    assert non_dominated(HAND, swapped) == [0, 3]


def test_extra_keys_are_ignored() -> None:
    points = [dict(p, time_steps=t) for p, t in zip(HAND, (8, 4, 6, 2), strict=True)]
    assert non_dominated(points, ACC_ENERGY) == [0, 1, 2]


# --- hypervolume -------------------------------------------------------------------------------


def test_the_hand_built_hypervolume() -> None:
    # Distances to the reference (0.5, 4), (acc - 0.5, 4 - energy): 0 -> (0.4, 1), 1 -> (0.3, 3),
    # 2 -> (0.35, 2), 3 -> (0.2, 1.5) inside 2's box. Sweep by accuracy distance, widest first:
    #   0.4 * 1 + 0.35 * (2 - 1) + 0.3 * (3 - 2) = 0.4 + 0.35 + 0.3 = 1.05
    assert hypervolume(HAND, ACC_ENERGY, HAND_REF) == pytest.approx(1.05)
    front = [HAND[i] for i in non_dominated(HAND, ACC_ENERGY)]
    assert hypervolume(front, ACC_ENERGY, HAND_REF) == pytest.approx(1.05)


def test_points_not_strictly_dominating_the_reference_add_nothing() -> None:
    # Energy 4 is on the reference: zero width. Accuracy 0.4 is below it.
    extra = _pts([(0.99, 4.0), (0.4, 0.1), (0.99, 7.0)])
    assert hypervolume(HAND + extra, ACC_ENERGY, HAND_REF) == pytest.approx(1.05)
    assert hypervolume(extra, ACC_ENERGY, HAND_REF) == 0.0
    assert hypervolume([], ACC_ENERGY, HAND_REF) == 0.0


def test_incomplete_points_and_duplicates_add_nothing() -> None:
    extra = [{"val_accuracy": math.nan, "energy_uj": 0.0}, {"val_accuracy": 1.0}, dict(HAND[0]), dict(HAND[0])]
    assert hypervolume(HAND + extra, ACC_ENERGY, HAND_REF) == pytest.approx(1.05)


def test_scale_divides_each_distance() -> None:
    # Accuracy distances / 0.5 and energy distances / 4: the area shrinks by 0.5 * 4 = 2.
    scale = {"val_accuracy": 0.5, "energy_uj": 4.0}
    assert hypervolume(HAND, ACC_ENERGY, HAND_REF, scale=scale) == pytest.approx(1.05 / 2)
    for bad in ({"val_accuracy": 1.0}, {"val_accuracy": 1.0, "energy_uj": 0.0}, {**scale, "energy_uj": math.nan}):
        with pytest.raises(ValueError, match="scale"):
            hypervolume(HAND, ACC_ENERGY, HAND_REF, scale=bad)


def test_the_reference_must_name_every_objective() -> None:
    with pytest.raises(ValueError, match="energy_uj"):
        hypervolume(HAND, ACC_ENERGY, {"val_accuracy": 0.5})
    with pytest.raises(ValueError, match="energy_uj"):
        hypervolume(HAND, ACC_ENERGY, {"val_accuracy": 0.5, "energy_uj": math.inf})


XYZ = {"x": "max", "y": "max", "z": "max"}
ORIGIN = {"x": 0.0, "y": 0.0, "z": 0.0}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # One unit cube.
        ([(1, 1, 1)], 1.0),
        # Three 2x1x1 boxes along the axes: 3 * 2 - 3 pairwise overlaps (the unit cube each) + 1 triple = 4.
        ([(2, 1, 1), (1, 2, 1), (1, 1, 2)], 4.0),
        # 2x2x1 and 1x1x3 overlap in the unit cube: 4 + 3 - 1 = 6.
        ([(2, 2, 1), (1, 1, 3)], 6.0),
        # A cube inside another adds nothing: 2^3 = 8.
        ([(2, 2, 2), (1, 1, 1), (2, 1, 2)], 8.0),
        # Two disjoint-in-nothing slabs: 3x1x1 and 1x3x1 share the unit cube: 3 + 3 - 1 = 5.
        ([(3, 1, 1), (1, 3, 1)], 5.0),
    ],
)
def test_hand_computed_three_objective_hypervolumes(rows, expected) -> None:
    points = _pts(rows, names=("x", "y", "z"))
    assert hypervolume(points, XYZ, ORIGIN) == pytest.approx(expected)


def test_three_objectives_with_mixed_directions() -> None:
    # Minimise x and y, maximise z; reference (1, 1, 0). Distances: (1 - x, 1 - y, z).
    # (0, 0.5, 1) -> box 1 x 0.5 x 1 = 0.5; (0.5, 0, 1) -> 0.5 x 1 x 1 = 0.5; overlap 0.5 x 0.5 x 1 = 0.25.
    points = _pts([(0.0, 0.5, 1.0), (0.5, 0.0, 1.0)], names=("x", "y", "z"))
    objectives = {"x": "min", "y": "min", "z": "max"}
    assert hypervolume(points, objectives, {"x": 1.0, "y": 1.0, "z": 0.0}) == pytest.approx(0.75)


def _inclusion_exclusion(distances: np.ndarray) -> float:
    """The union of boxes [0, d] by inclusion-exclusion: exact, exponential, for small sets."""
    total = 0.0
    for size in range(1, len(distances) + 1):
        for subset in itertools.combinations(range(len(distances)), size):
            total += (-1) ** (size + 1) * float(np.prod(distances[list(subset)].min(axis=0)))
    return total


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion_on_random_points(dims: int) -> None:
    rng = np.random.default_rng(1234 + dims)
    names = [f"f{j}" for j in range(dims)]
    objectives = {name: ("max" if j % 2 else "min") for j, name in enumerate(names)}
    for _ in range(5):
        values = rng.uniform(0, 1, size=(9, dims))
        points = [dict(zip(names, row, strict=True)) for row in values]
        reference = {name: (0.0 if objectives[name] == "max" else 1.0) for name in names}
        signs = np.array([1.0 if objectives[name] == "max" else -1.0 for name in names])
        distances = (values - np.array([reference[n] for n in names])) * signs
        assert hypervolume(points, objectives, reference) == pytest.approx(_inclusion_exclusion(distances), rel=1e-9)


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_matches_monte_carlo(dims: int) -> None:
    rng = np.random.default_rng(7 + dims)
    names = [f"f{j}" for j in range(dims)]
    objectives = dict.fromkeys(names, "min")
    values = rng.uniform(0, 1, size=(30, dims))
    points = [dict(zip(names, row, strict=True)) for row in values]
    reference = dict.fromkeys(names, 1.0)
    # A sample in [0, 1]^d is dominated when some point is <= it in every coordinate.
    samples = rng.uniform(0, 1, size=(100_000, dims))
    covered = np.zeros(len(samples), dtype=bool)
    for row in values:
        covered |= np.all(samples >= row, axis=1)
    estimate = covered.mean()
    sigma = math.sqrt(estimate * (1 - estimate) / len(samples))
    assert abs(hypervolume(points, objectives, reference) - estimate) < 5 * sigma


def test_hypervolume_of_a_fifty_point_three_objective_front_is_exact_and_fast() -> None:
    # Points on the simplex x + y + z = 1 are mutually non-dominated.
    rng = np.random.default_rng(0)
    values = rng.dirichlet(np.ones(3), size=50)
    points = _pts(values.tolist(), names=("x", "y", "z"))
    objectives = {"x": "min", "y": "min", "z": "min"}
    assert len(non_dominated(points, objectives)) == 50
    volume = hypervolume(points, objectives, {"x": 1.0, "y": 1.0, "z": 1.0})
    assert 0 < volume < 1
    # Adding dominated points changes nothing.
    worse = _pts((values + 0.01).tolist(), names=("x", "y", "z"))
    assert hypervolume(points + worse, objectives, {"x": 1.0, "y": 1.0, "z": 1.0}) == pytest.approx(volume)


# --- reference_point ---------------------------------------------------------------------------


def test_reference_point_pushes_the_worst_value_out_by_the_range() -> None:
    # Accuracy: worst 0.7, range 0.2 -> 0.7 - 0.1 * 0.2 = 0.68. Energy: worst 3, range 2 -> 3 + 0.2 = 3.2.
    reference = reference_point(HAND, ACC_ENERGY)
    assert reference == pytest.approx({"val_accuracy": 0.68, "energy_uj": 3.2})
    assert reference_point(HAND, ACC_ENERGY, margin=0.5) == pytest.approx({"val_accuracy": 0.6, "energy_uj": 4.0})
    with_zero = reference_point(HAND, ACC_ENERGY, margin=0.0)
    assert with_zero == pytest.approx({"val_accuracy": 0.7, "energy_uj": 3.0})


def test_reference_point_with_zero_range_uses_the_worst_magnitude_then_one() -> None:
    points = _pts([(0.8, 0.0), (0.8, 0.0)])
    # Accuracy range 0: 0.8 - 0.1 * 0.8 = 0.72. Energy all 0: 0 + 0.1 * 1.0 = 0.1.
    assert reference_point(points, ACC_ENERGY) == pytest.approx({"val_accuracy": 0.72, "energy_uj": 0.1})
    negative = _pts([(-2.0, -5.0)])
    # Accuracy -2 - 0.1 * 2 = -2.2; energy -5 + 0.1 * 5 = -4.5.
    assert reference_point(negative, ACC_ENERGY) == pytest.approx({"val_accuracy": -2.2, "energy_uj": -4.5})


def test_reference_point_ignores_incomplete_points_and_checks_its_input() -> None:
    points = HAND + [{"val_accuracy": 0.0, "energy_uj": math.nan}, {"energy_uj": 100.0}]
    assert reference_point(points, ACC_ENERGY) == pytest.approx({"val_accuracy": 0.68, "energy_uj": 3.2})
    with pytest.raises(ValueError, match="at least one point"):
        reference_point(points[4:], ACC_ENERGY)
    with pytest.raises(ValueError, match="margin"):
        reference_point(HAND, ACC_ENERGY, margin=-0.1)


def test_every_point_strictly_dominates_the_default_reference() -> None:
    reference = reference_point(HAND, ACC_ENERGY)
    for p in HAND:
        assert p["val_accuracy"] > reference["val_accuracy"] and p["energy_uj"] < reference["energy_uj"]
    # Distances to (0.68, 3.2): 0 -> (0.22, 0.2), 1 -> (0.12, 2.2), 2 -> (0.17, 1.2); 3 -> (0.02, 0.7)
    # inside 2's box. Sweep: 0.22 * 0.2 + 0.17 * (1.2 - 0.2) + 0.12 * (2.2 - 1.2) = 0.044 + 0.17 + 0.12.
    assert hypervolume(HAND, ACC_ENERGY, reference) == pytest.approx(0.334)


# --- spread_along_front ------------------------------------------------------------------------

ALONG = {"val_accuracy": "max", "time_steps": "min"}


def _line(values):
    return [{"val_accuracy": 0.5 + 0.01 * i, "time_steps": float(t)} for i, t in enumerate(values)]


def test_spread_picks_both_ends_and_the_points_nearest_even_positions() -> None:
    # time_steps 0..10 shuffled; normalised positions t / 10. k = 3 wants {0, 0.5, 1} -> t = 0, 5, 10.
    ts = [7, 0, 10, 3, 5, 1, 9, 2, 8, 4, 6]
    points = _line(ts)
    front = list(range(len(points)))
    picked = spread_along_front(points, front, ALONG, 3, "time_steps")
    assert [ts[i] for i in picked] == [0, 5, 10]
    # k = 5 wants 0, 2.5, 5, 7.5, 10: 2.5 is a tie between 2 (index 7) and 3 (index 3) -> index 3 (t = 3);
    # 7.5 is a tie between 7 (index 0) and 8 (index 8) -> index 0 (t = 7).
    picked = spread_along_front(points, front, ALONG, 5, "time_steps")
    assert [ts[i] for i in picked] == [0, 3, 5, 7, 10]
    assert picked == spread_along_front(points, list(reversed(front)), ALONG, 5, "time_steps")  # deterministic


def test_spread_with_uneven_values_uses_normalised_values_not_ranks() -> None:
    # Values 1, 2, 3, 4, 100: normalised 0, 0.0101, 0.0202, 0.0303, 1. k = 3 wants 0.5 -> value 4.
    points = _line([1, 2, 3, 4, 100])
    assert spread_along_front(points, [0, 1, 2, 3, 4], ALONG, 3, "time_steps") == [0, 3, 4]
    # k = 4 wants 1/3 then 2/3: value 4 first, then the nearest left over, value 3.
    assert spread_along_front(points, [0, 1, 2, 3, 4], ALONG, 4, "time_steps") == [0, 2, 3, 4]


def test_spread_with_k_at_least_the_front_returns_it_sorted() -> None:
    points = _line([4, 1, 3])
    assert spread_along_front(points, [0, 1, 2], ALONG, 3, "time_steps") == [1, 2, 0]
    assert spread_along_front(points, [0, 1, 2], ALONG, 10, "time_steps") == [1, 2, 0]
    assert spread_along_front(points, [], ALONG, 3, "time_steps") == []
    assert spread_along_front(points, [0, 1, 2], ALONG, 0, "time_steps") == []


def test_spread_with_k_two_gives_the_ends_and_k_one_the_best_end() -> None:
    points = _line([4, 1, 3, 8, 6])
    assert spread_along_front(points, [0, 1, 2, 3, 4], ALONG, 2, "time_steps") == [1, 3]
    assert spread_along_front(points, [0, 1, 2, 3, 4], ALONG, 1, "time_steps") == [1]  # fewest time steps
    assert spread_along_front(points, [0, 1, 2, 3, 4], ALONG, 1, "val_accuracy") == [4]  # best accuracy


def test_spread_with_equal_values_falls_back_to_ranks_and_index_order() -> None:
    points = _line([2, 2, 2, 2, 2])
    assert spread_along_front(points, [4, 3, 2, 1, 0], ALONG, 3, "time_steps") == [0, 2, 4]


def test_spread_checks_its_input() -> None:
    points = _line([1, 2, 3]) + [{"val_accuracy": 0.9, "time_steps": math.nan}]
    with pytest.raises(ValueError, match="not one of the objectives"):
        spread_along_front(points, [0, 1, 2], ALONG, 2, "energy_uj")
    with pytest.raises(ValueError, match="no finite value"):
        spread_along_front(points, [0, 1, 2, 3], ALONG, 2, "time_steps")
    with pytest.raises(IndexError):
        spread_along_front(points, [0, 9], ALONG, 2, "time_steps")


def test_spread_on_a_real_front() -> None:
    rows = [(0.9, 3), (0.8, 1), (0.85, 2), (0.7, 2.5), (0.88, 2.6), (0.75, 0.5)]
    points = _pts(rows)
    front = non_dominated(points, ACC_ENERGY)
    assert front == [0, 1, 2, 4, 5]
    # Energies on the front: 0.5 (5), 1 (1), 2 (2), 2.6 (4), 3 (0); normalised (e - 0.5) / 2.5:
    # 0, 0.2, 0.6, 0.84, 1. k = 3 wants 0.5 -> 0.6, point 2.
    assert spread_along_front(points, front, ACC_ENERGY, 3, "energy_uj") == [5, 2, 0]


# --- closest_to --------------------------------------------------------------------------------


def test_closest_to_picks_the_nearest_key() -> None:
    points = [
        {"time_steps": 2, "val_accuracy": 0.80},
        {"time_steps": 5, "val_accuracy": 0.85},
        {"time_steps": 9, "val_accuracy": 0.90},
    ]
    assert closest_to(points, [0, 1, 2], "time_steps", 4, "val_accuracy", "max") == 1
    assert closest_to(points, [0, 2], "time_steps", 4, "val_accuracy", "max") == 0
    assert closest_to(points, [0, 1, 2], "time_steps", 100, "val_accuracy", "max") == 2


def test_closest_to_breaks_ties_by_the_best_value_then_the_index() -> None:
    points = [
        {"time_steps": 2, "val_accuracy": 0.80},  # distance 2 from 4
        {"time_steps": 6, "val_accuracy": 0.90},  # distance 2
        {"time_steps": 6, "val_accuracy": 0.90},  # distance 2, same accuracy: index decides
        {"time_steps": 2, "val_accuracy": math.nan},  # distance 2, NaN accuracy counts as worst
    ]
    assert closest_to(points, [0, 1, 2, 3], "time_steps", 4, "val_accuracy", "max") == 1
    assert closest_to(points, [3, 2, 1, 0], "time_steps", 4, "val_accuracy", "max") == 1
    assert closest_to(points, [0, 1, 2, 3], "time_steps", 4, "val_accuracy", "min") == 0
    assert closest_to(points, [2, 3], "time_steps", 4, "val_accuracy", "min") == 2
    assert closest_to(points, [3], "time_steps", 4, "val_accuracy", "max") == 3


def test_closest_to_skips_points_without_the_key_and_checks_its_input() -> None:
    points = [
        {"time_steps": math.nan, "val_accuracy": 1.0},
        {"val_accuracy": 1.0},
        {"time_steps": 8, "val_accuracy": 0.1},
    ]
    assert closest_to(points, [0, 1, 2], "time_steps", 4, "val_accuracy", "max") == 2
    with pytest.raises(ValueError, match="no front point"):
        closest_to(points, [0, 1], "time_steps", 4, "val_accuracy", "max")
    with pytest.raises(ValueError, match="no front point"):
        closest_to(points, [], "time_steps", 4, "val_accuracy", "max")
    with pytest.raises(ValueError, match="'max' or 'min'"):
        closest_to(points, [2], "time_steps", 4, "val_accuracy", "best")
    with pytest.raises(ValueError, match="target"):
        closest_to(points, [2], "time_steps", math.nan, "val_accuracy", "max")
    with pytest.raises(IndexError):
        closest_to(points, [5], "time_steps", 4, "val_accuracy", "max")


# --- the module stays a leaf -------------------------------------------------------------------


def test_pareto_imports_only_the_standard_library_and_numpy() -> None:
    source = Path(__file__).resolve().parents[1] / "harness" / "pareto.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "collections", "math", "typing", "numpy"}
