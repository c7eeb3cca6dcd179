"""`harness.sweep.front`: what a Pareto search's ended trials become (no Ray): objectives read from
validation results and config keys, pruned when one is missing, the reference configuration
closest to the reference T at the best accuracy, the other front points spread and deduplicated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.contract import Role
from harness.errors import HarnessInputError
from harness.sweep.front import ParetoFront, SingleObjective, final_stage, front_point_of, make_choice
from harness.sweep.plan import plan_sweep
from harness.sweep.protocol import FAILURE_KEY

REPO = Path(__file__).resolve().parents[2]
PARETO = REPO / "search_spaces" / "smoke-pareto.yaml"


@pytest.fixture(scope="module")
def choice() -> ParetoFront:
    made = make_choice(plan_sweep(PARETO))
    assert isinstance(made, ParetoFront)
    return made


def _result(accuracy: float, energy: float) -> dict[str, float]:
    return {"val_accuracy": accuracy, "val/energy_uj": energy, "test_accuracy": accuracy, "energy_uj": 99.0}


def test_a_single_metric_space_keeps_choosing_the_best_trial() -> None:
    made = make_choice(plan_sweep(REPO / "search_spaces" / "smoke.yaml"))
    assert made == SingleObjective("val_accuracy", "max") and made.keys == "val_accuracy"


def test_objectives_are_read_from_validation_results_and_config_keys(tmp_path: Path) -> None:
    space = yaml.safe_load(PARETO.read_text())
    space["search"]["objectives"] = {"val_accuracy": "max", "energy_uj": "min", "snn.time_steps": "min"}
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    three = make_choice(plan_sweep(path))
    assert three.keys == ["val_accuracy", "val/energy_uj", "snn.time_steps"]  # never the test set's energy_uj
    measured = three.measure("kd", {"snn.time_steps": 3, "student.width": 4}, _result(0.8, 0.02))
    assert measured == {"val_accuracy": 0.8, "energy_uj": 0.02, "snn.time_steps": 3.0}
    told = three.for_optuna("kd", {"snn.time_steps": 3}, _result(0.8, 0.02))
    assert told["snn.time_steps"] == 3 and told["val/energy_uj"] == 0.02


def test_a_trial_stopped_before_its_costs_were_counted_is_pruned_and_a_failed_one_stays_failed(choice) -> None:
    stopped = {"val_accuracy": 0.5, "epoch": 1}  # ASHA stopped it: no val/energy_uj
    assert choice.for_optuna("kd", {}, stopped) is None  # OptunaSearch tells Optuna PRUNED
    failed = {"val_accuracy": float("-inf"), FAILURE_KEY: "loss became NaN"}
    assert choice.for_optuna("kd", {}, failed) is failed


def test_the_reference_is_closest_to_the_reference_t_and_the_others_are_spread_and_unique(choice) -> None:
    sampled = [
        {"snn.time_steps": 1, "student.width": 4},  # 0: cheapest, least accurate
        {"snn.time_steps": 2, "student.width": 4},  # 1: at the reference T (2)
        {"snn.time_steps": 2, "student.width": 8},  # 2: at the reference T, more accurate: the reference
        {"snn.time_steps": 3, "student.width": 8},  # 3: most accurate, most costly
        {"snn.time_steps": 3, "student.width": 4},  # 4: dominated by 2
        {"snn.time_steps": 3, "student.width": 8},  # 5: 3 sampled again
        {"snn.time_steps": 1, "student.width": 8},  # 6: pruned (no test accuracy)
    ]
    outcomes = [
        (_result(0.50, 0.01), False),
        (_result(0.60, 0.02), False),
        (_result(0.70, 0.03), False),
        (_result(0.80, 0.05), False),
        (_result(0.65, 0.06), False),
        (_result(0.80, 0.05), False),
        ({"val_accuracy": 0.99, "epoch": 1}, False),
    ]
    selection = choice.select("kd", outcomes, sampled)
    assert selection.reference == 2
    # final_front 3: two more points, both ends of the rest of the front; 5 repeats 3 and 4 is dominated.
    assert selection.front == (0, 3)
    assert choice.select("kd", [(None, True)] * 7, sampled).reference is None


def test_conversion_is_evaluated_at_the_reference_t_so_its_best_accuracy_is_its_reference(choice) -> None:
    sampled = [{"student.width": 4}, {"student.width": 8}]
    outcomes = [(_result(0.55, 0.02), False), (_result(0.65, 0.07), False)]
    assert choice.select("conversion", outcomes, sampled).reference == 1


def test_the_final_stage_of_a_front_choice_is_the_references_runs_then_each_points_seeds() -> None:
    plan = plan_sweep(PARETO)
    choice = {
        "run": "2",
        "values": {"snn.time_steps": 2, "student.width": 8},
        "front": [{"run": "0", "values": {"snn.time_steps": 1, "student.width": 4}}],
    }
    runs = final_stage(plan, "kd", choice)
    assert [(r.role, r.run) for r in runs] == [(Role.FINAL, "s1-T2"), (Role.FINAL, "s2-T2"), (Role.FRONT, "p0-s1")]
    assert runs[-1].values == {"snn.time_steps": 1, "student.width": 4, "seed": 1}
    assert front_point_of(runs[-1].run) == "0"
    assert final_stage(plan, "kd", {"run": None, "values": None}) == []


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"objectives": {"val_accuracy": "max"}}, "needs at least two objectives"),
        ({"objectives": {"energy_uj": "min", "val_accuracy": "max"}}, "the first objective is the primary one"),
        ({"objectives": {"val_accuracy": "max", "energy_uj": "least"}}, "search.objectives.energy_uj"),
        ({"metric": "val_accuracy"}, "give search.objectives or search.metric and search.mode, not both"),
        ({"objectives": {"val_accuracy": "max", "kd.nope": "min"}}, "search.objectives.kd.nope: neither a metric"),
    ],
)
def test_bad_objectives_are_refused_in_one_line(tmp_path: Path, search: dict, expected: str) -> None:
    space = yaml.safe_load(PARETO.read_text())
    space["search"].update(search)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    with pytest.raises(HarnessInputError, match=expected.replace(".", r"\.")) as caught:
        plan_sweep(path)
    assert "\n" not in str(caught.value)
