"""`harness.sweep.plan` and `harness.sweep.protocol.PlannedTrial` on search_spaces/smoke.yaml: each
method's dims (only the sections it reads), its trial configs, Optuna distributions and budget,
`plan.json` (written once, another plan refused in one line naming the key), the dataset check's
`--set` key, and a planned trial's Tune form, identity and config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from pydantic import ValidationError

from harness.config.space import Distribution
from harness.contract import Role
from harness.errors import HarnessInputError
from harness.sweep.plan import PLAN_FILE, SweepPlan, check_same_plan, plan_sweep, record_plan, search_budget
from harness.sweep.protocol import PlannedTrial

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke() -> SweepPlan:
    return plan_sweep(SMOKE)


def edited_smoke(folder: Path, **top: Any) -> Path:
    """A copy of smoke.yaml in `folder` with top-level keys replaced."""
    space = yaml.safe_load(SMOKE.read_text())
    space.update(top)
    path = folder / "edited.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


# --- dims and configs ----------------------------------------------------------------------


def test_plan_sweep_keeps_the_files_method_order_and_resolves_each_methods_config(smoke: SweepPlan) -> None:
    assert [p.method for p in smoke.methods] == ["kd", "direct", "conversion"]
    assert [p.config.method for p in smoke.methods] == ["kd", "direct", "conversion"]
    assert smoke.source == str(SMOKE)
    assert smoke.of("direct").config.train.lr == 0.05  # smoke's fixed value, not the default 0.01
    assert smoke.of("kd").config.options.alpha == 0.5  # the KD default: `space` is not applied to the plan
    assert smoke.of("conversion").config.options.levels == 8


def test_each_method_gets_only_the_dims_of_the_sections_it_reads(smoke: SweepPlan) -> None:
    assert list(smoke.of("kd").dims) == ["student.width", "snn.time_steps", "kd.alpha"]
    assert list(smoke.of("direct").dims) == ["student.width", "snn.time_steps"]
    assert list(smoke.of("conversion").dims) == ["student.width", "conversion.levels"]  # no snn.*: it trains an ANN


def test_a_methods_dims_are_the_space_files_distributions(smoke: SweepPlan) -> None:
    assert smoke.of("kd").dims == {
        "student.width": Distribution.model_validate({"categorical": [4, 8]}),
        "snn.time_steps": Distribution.model_validate({"int": [1, 3]}),
        "kd.alpha": Distribution.model_validate({"float": [0.2, 0.8]}),
    }
    assert smoke.of("conversion").sampler_dims() == {  # the YAML form plan.json records
        "student.width": {"categorical": (4, 8)},
        "conversion.levels": {"categorical": (4, 8)},
    }


def test_distributions_are_the_optuna_forms_of_the_space(smoke: SweepPlan) -> None:
    assert smoke.of("kd").distributions() == {
        "student.width": optuna.distributions.CategoricalDistribution([4, 8]),
        "snn.time_steps": optuna.distributions.IntDistribution(1, 3),
        "kd.alpha": optuna.distributions.FloatDistribution(0.2, 0.8),
    }
    assert smoke.of("conversion").distributions() == {
        "student.width": optuna.distributions.CategoricalDistribution([4, 8]),
        "conversion.levels": optuna.distributions.CategoricalDistribution([4, 8]),
    }


def test_trial_config_overrides_the_plan_with_the_given_values(smoke: SweepPlan) -> None:
    kd = smoke.of("kd")
    config = kd.trial_config({"kd.alpha": 0.3, "student.width": 4, "seed": 2})
    assert (config.options.alpha, config.student.width, config.seed) == (0.3, 4, 2)
    assert (config.train.lr, config.train.epochs, config.snn.time_steps) == (0.05, 4, 2)  # the rest from the plan
    assert (kd.config.options.alpha, kd.config.student.width, kd.config.seed) == (0.5, 8, 0)  # the plan unchanged


def test_trial_config_validates_the_values(smoke: SweepPlan) -> None:
    with pytest.raises(ValidationError, match="kd.alpha"):
        smoke.of("kd").trial_config({"kd.alpha": 2.0})
    with pytest.raises(ValidationError, match="snn.time_steps"):
        smoke.of("direct").trial_config({"snn.time_steps": 0})


def test_search_budget_is_num_samples_or_one_when_a_method_samples_nothing(smoke: SweepPlan, tmp_path: Path) -> None:
    assert [search_budget(p, smoke.space) for p in smoke.methods] == [3, 3, 3]
    only_kd = plan_sweep(edited_smoke(tmp_path, space={"kd.alpha": {"float": [0.2, 0.8]}}))
    assert [list(p.dims) for p in only_kd.methods] == [["kd.alpha"], [], []]
    assert [search_budget(p, only_kd.space) for p in only_kd.methods] == [3, 1, 1]


# --- plan.json -----------------------------------------------------------------------------


def test_record_plan_writes_plan_json_once(smoke: SweepPlan, tmp_path: Path) -> None:
    record_plan(smoke, tmp_path)
    written = (tmp_path / PLAN_FILE).read_text()
    assert json.loads(written) == smoke.record()
    assert json.loads(written)["methods"]["kd"]["dims"]["kd.alpha"] == {"float": [0.2, 0.8]}
    record_plan(plan_sweep(SMOKE, [("train.lr", 0.01)]), tmp_path)  # a later start does not overwrite it
    assert (tmp_path / PLAN_FILE).read_text() == written
    assert [p.name for p in tmp_path.iterdir()] == [PLAN_FILE]  # no scratch file left behind


def test_check_same_plan_accepts_the_same_plan_and_a_folder_without_one(smoke: SweepPlan, tmp_path: Path) -> None:
    check_same_plan(smoke, tmp_path)  # nothing recorded yet
    record_plan(smoke, tmp_path)
    check_same_plan(plan_sweep(SMOKE), tmp_path)  # planned again from the same file: the same plan


def test_check_same_plan_refuses_another_plan_in_one_line_naming_the_key(smoke: SweepPlan, tmp_path: Path) -> None:
    record_plan(smoke, tmp_path)
    with pytest.raises(HarnessInputError) as refused:
        check_same_plan(plan_sweep(SMOKE, [("kd.alpha", 0.25)]), tmp_path)
    message = str(refused.value)
    assert "\n" not in message
    expected = f"{SMOKE}: methods.kd.config.kd.alpha is 0.25, but the sweep in {tmp_path} started with 0.5;"
    assert message.startswith(expected)


def test_check_same_plan_names_a_changed_search_setting(smoke: SweepPlan, tmp_path: Path) -> None:
    record_plan(smoke, tmp_path)
    search = {**yaml.safe_load(SMOKE.read_text())["search"], "num_samples": 5}
    with pytest.raises(HarnessInputError, match="search.num_samples is 5, but .* started with 3"):
        check_same_plan(plan_sweep(edited_smoke(tmp_path, search=search)), tmp_path)


# --- the dataset's files -------------------------------------------------------------------


def test_plan_sweep_names_the_set_key_of_a_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(HarnessInputError) as refused:
        plan_sweep(SMOKE, [("dataset.name", "cifar10"), ("dataset.root", str(tmp_path))])
    message = str(refused.value)
    assert message.startswith("--set dataset.root: dataset 'cifar10': files not found at ")
    assert str(tmp_path) in message
    assert "\n" not in message


def test_plan_sweep_names_the_files_key_when_the_file_gives_the_missing_folder(tmp_path: Path) -> None:
    fixed = {**yaml.safe_load(SMOKE.read_text())["fixed"], "dataset.name": "cifar10", "dataset.root": str(tmp_path)}
    path = edited_smoke(tmp_path, fixed=fixed)
    with pytest.raises(HarnessInputError, match=f"^{path}: fixed.dataset.root: dataset 'cifar10': files not found"):
        plan_sweep(path)


# --- PlannedTrial --------------------------------------------------------------------------


def test_planned_trial_to_tune_is_its_values_and_method_role_run() -> None:
    planned = PlannedTrial("kd", Role.TRIAL, "3", {"kd.alpha": 0.4, "student.width": 4})
    assert planned.to_tune() == {"kd.alpha": 0.4, "student.width": 4, "method": "kd", "role": "trial", "run": "3"}


def test_planned_trial_comes_back_from_its_tune_config() -> None:
    for planned in (
        PlannedTrial("kd", Role.TRIAL, "3", {"kd.alpha": 0.4}),
        PlannedTrial("direct", Role.FINAL, "s1-T2", {"snn.time_steps": 2, "seed": 1}),
        PlannedTrial("conversion", Role.TRIAL, "0"),
    ):
        back = PlannedTrial.from_tune(planned.to_tune())
        assert back == planned
        assert type(back.role) is Role
    assert PlannedTrial.from_tune({"method": "kd", "role": "final", "run": 7}).run == "7"


def test_planned_trial_in_tune_needs_method_role_and_run() -> None:
    assert PlannedTrial.in_tune({"method": "kd", "role": "trial", "run": "0", "kd.alpha": 0.3})
    assert not PlannedTrial.in_tune({"method": "kd", "role": "trial", "kd.alpha": 0.3})


def test_planned_trial_identity_trial_id_and_label() -> None:
    search = PlannedTrial("kd", Role.TRIAL, "3", {"kd.alpha": 0.4})
    final = PlannedTrial("direct", Role.FINAL, "s1-T4", {"snn.time_steps": 4, "seed": 1})
    conversion = PlannedTrial("conversion", Role.FINAL, "s2", {"seed": 2})
    trials = (search, final, conversion)
    assert [p.identity for p in trials] == ["trial/kd/3", "final/direct/s1-T4", "final/conversion/s2"]
    assert final.trial_id("smoke-digits") == "smoke-digits/final/direct/s1-T4"
    assert [p.label() for p in trials] == ["kd trial 3", "direct final T4 s1", "conversion final s2"]


def test_planned_trial_resolves_against_its_methods_plan(smoke: SweepPlan) -> None:
    config = PlannedTrial("kd", Role.TRIAL, "0", {"kd.alpha": 0.25, "snn.time_steps": 3}).resolve(smoke)
    assert (config.method, config.options.alpha, config.snn.time_steps, config.train.lr) == ("kd", 0.25, 3, 0.05)
    conversion = PlannedTrial("conversion", Role.FINAL, "s1", {"conversion.levels": 4, "seed": 1}).resolve(smoke)
    assert (conversion.method, conversion.options.levels, conversion.seed) == ("conversion", 4, 1)
    with pytest.raises(ValidationError, match="kd.alpha"):
        PlannedTrial("kd", Role.TRIAL, "1", {"kd.alpha": -1.0}).resolve(smoke)
