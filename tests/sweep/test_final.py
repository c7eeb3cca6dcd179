"""`harness.sweep.final`: the final stage's seeds, T values, planned runs (exact lists, in order),
run counts and `describe_plan`, on search_spaces/smoke.yaml and small edited copies of it.

Every expected value is written out by hand from the space file, never recomputed by the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.contract import Role
from harness.sweep.final import describe_plan, final_run_count, final_runs, final_seeds, final_time_steps
from harness.sweep.plan import SweepPlan, plan_sweep
from harness.sweep.protocol import PlannedTrial

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"
# smoke.yaml: seed 0, final_repeats 1, eval.reference_time_steps 2, eval.time_steps [1, 2],
# 3 samples per method; kd and direct train at a T, conversion does not.


@pytest.fixture(scope="module")
def smoke() -> SweepPlan:
    return plan_sweep(SMOKE)


def edited_smoke(folder: Path, *, search: dict[str, Any] | None = None, **top: Any) -> Path:
    """A copy of smoke.yaml in `folder` with top-level keys replaced and `search` keys updated."""
    space = yaml.safe_load(SMOKE.read_text())
    space.update(top)
    space["search"].update(search or {})
    path = folder / "edited.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_final_seeds_are_the_final_repeats_seeds_after_the_base_seed(smoke: SweepPlan, tmp_path: Path) -> None:
    assert final_seeds(smoke.space, 0) == [1]
    assert final_seeds(smoke.space, 10) == [11]
    three = plan_sweep(edited_smoke(tmp_path, search={"final_repeats": 3}))
    assert final_seeds(three.space, 0) == [1, 2, 3]
    assert final_seeds(three.space, 5) == [6, 7, 8]
    none = plan_sweep(edited_smoke(tmp_path, search={"final_repeats": 0}))
    assert final_seeds(none.space, 0) == []


def test_final_time_steps_are_the_reference_and_eval_steps_for_methods_that_train_at_a_t(smoke: SweepPlan) -> None:
    assert final_time_steps(smoke.of("kd"), smoke.space) == (1, 2)
    assert final_time_steps(smoke.of("direct"), smoke.space) == (1, 2)
    assert final_time_steps(smoke.of("kd"), smoke.space, {"snn.time_steps": 3}) == (1, 2, 3)  # the search's best T
    assert final_time_steps(smoke.of("kd"), smoke.space, {"snn.time_steps": 2}) == (1, 2)
    assert final_time_steps(smoke.of("kd"), smoke.space, {"kd.alpha": 0.4}) == (1, 2)


def test_final_time_steps_of_conversion_are_only_the_reference_t(smoke: SweepPlan) -> None:
    assert final_time_steps(smoke.of("conversion"), smoke.space) == (2,)
    assert final_time_steps(smoke.of("conversion"), smoke.space, {"snn.time_steps": 3}) == (2,)


def test_final_time_steps_setting_replaces_the_eval_steps_but_keeps_the_reference(tmp_path: Path) -> None:
    plan = plan_sweep(edited_smoke(tmp_path, search={"final_time_steps": [4]}))
    assert final_time_steps(plan.of("kd"), plan.space) == (2, 4)
    assert final_time_steps(plan.of("kd"), plan.space, {"snn.time_steps": 1}) == (1, 2, 4)
    assert final_time_steps(plan.of("conversion"), plan.space) == (2,)


def test_final_runs_of_kd_on_smoke_go_from_the_largest_t_down(smoke: SweepPlan) -> None:
    best = {"student.width": 4, "snn.time_steps": 3, "kd.alpha": 0.25}
    assert final_runs(smoke, "kd", best) == [
        PlannedTrial("kd", Role.FINAL, "s1-T3", {"student.width": 4, "snn.time_steps": 3, "kd.alpha": 0.25, "seed": 1}),
        PlannedTrial("kd", Role.FINAL, "s1-T2", {"student.width": 4, "snn.time_steps": 2, "kd.alpha": 0.25, "seed": 1}),
        PlannedTrial("kd", Role.FINAL, "s1-T1", {"student.width": 4, "snn.time_steps": 1, "kd.alpha": 0.25, "seed": 1}),
    ]


def test_final_runs_order_largest_t_first_then_seeds_ascending(tmp_path: Path) -> None:
    plan = plan_sweep(edited_smoke(tmp_path, search={"final_repeats": 2}, fixed={**_smoke_fixed(), "seed": 4}))
    best = {"student.width": 8, "snn.time_steps": 2}
    assert final_runs(plan, "direct", best) == [
        PlannedTrial("direct", Role.FINAL, "s5-T2", {"student.width": 8, "snn.time_steps": 2, "seed": 5}),
        PlannedTrial("direct", Role.FINAL, "s6-T2", {"student.width": 8, "snn.time_steps": 2, "seed": 6}),
        PlannedTrial("direct", Role.FINAL, "s5-T1", {"student.width": 8, "snn.time_steps": 1, "seed": 5}),
        PlannedTrial("direct", Role.FINAL, "s6-T1", {"student.width": 8, "snn.time_steps": 1, "seed": 6}),
    ]


def test_final_runs_of_conversion_are_one_per_seed_at_the_reference_t_without_a_t(tmp_path: Path) -> None:
    plan = plan_sweep(edited_smoke(tmp_path, search={"final_repeats": 2}))
    best = {"student.width": 4, "conversion.levels": 8}
    runs = final_runs(plan, "conversion", best)
    assert runs == [
        PlannedTrial("conversion", Role.FINAL, "s1", {"student.width": 4, "conversion.levels": 8, "seed": 1}),
        PlannedTrial("conversion", Role.FINAL, "s2", {"student.width": 4, "conversion.levels": 8, "seed": 2}),
    ]
    assert [run.resolve(plan).snn.time_steps for run in runs] == [2, 2]  # smoke's fixed T, which is the reference


def test_final_runs_resolve_to_configs_with_their_seed_and_t(smoke: SweepPlan) -> None:
    runs = final_runs(smoke, "kd", {"student.width": 4, "snn.time_steps": 3, "kd.alpha": 0.25})
    configs = [run.resolve(smoke) for run in runs]
    assert [(c.seed, c.snn.time_steps, c.student.width, c.options.alpha) for c in configs] == [
        (1, 3, 4, 0.25),
        (1, 2, 4, 0.25),
        (1, 1, 4, 0.25),
    ]
    assert [run.trial_id("smoke-digits") for run in runs] == [
        "smoke-digits/final/kd/s1-T3",
        "smoke-digits/final/kd/s1-T2",
        "smoke-digits/final/kd/s1-T1",
    ]


def test_final_run_count_is_seeds_times_t_values(smoke: SweepPlan, tmp_path: Path) -> None:
    assert final_run_count(smoke.of("kd"), smoke.space) == 2
    assert final_run_count(smoke.of("kd"), smoke.space, {"snn.time_steps": 3}) == 3
    assert final_run_count(smoke.of("direct"), smoke.space) == 2
    assert final_run_count(smoke.of("conversion"), smoke.space) == 1
    two = plan_sweep(edited_smoke(tmp_path, search={"final_repeats": 2}))
    assert final_run_count(two.of("kd"), two.space) == 4
    assert final_run_count(two.of("kd"), two.space, {"snn.time_steps": 3}) == 6
    assert final_run_count(two.of("conversion"), two.space) == 2


def test_describe_plan_of_smoke_lists_budgets_dims_and_the_final_stage(smoke: SweepPlan) -> None:
    assert describe_plan(smoke).splitlines() == [
        f"sweep 'smoke-digits' from {SMOKE}",
        "  kd: 3 trials, searching student.width, snn.time_steps, kd.alpha",
        "  direct: 3 trials, searching student.width, snn.time_steps",
        "  conversion: 3 trials, searching student.width, conversion.levels",
        "  final stage: 1 seed per method and T (5 runs, more if a search's best T is another); 14 trials in all",
    ]


def test_describe_plan_of_a_space_that_samples_nothing_says_one_trial_of_the_fixed_config(tmp_path: Path) -> None:
    path = edited_smoke(tmp_path, methods=["kd", "conversion"], space={}, search={"final_repeats": 2})
    assert describe_plan(plan_sweep(path)).splitlines() == [
        f"sweep 'smoke-digits' from {path}",
        "  kd: 1 trial, searching nothing (one trial of its fixed config)",
        "  conversion: 1 trial, searching nothing (one trial of its fixed config)",
        "  final stage: 2 seeds per method and T (6 runs, more if a search's best T is another); 8 trials in all",
    ]


def _smoke_fixed() -> dict[str, Any]:
    return dict(yaml.safe_load(SMOKE.read_text())["fixed"])
