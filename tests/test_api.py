"""`harness.api`, the harness as a library: the same checks, records and errors as the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import api
from harness.contract import Role, Tag
from harness.errors import HarnessInputError

REPO = Path(__file__).resolve().parents[1]


def test_validate_returns_the_plan_and_takes_overrides_as_a_mapping_or_pairs() -> None:
    plan = api.validate(REPO / "search_spaces" / "smoke.yaml", {"train.epochs": 2})
    assert [p.method for p in plan.methods] == ["kd", "direct", "conversion"]
    assert all(p.config.train.epochs == 2 for p in plan.methods)
    again = api.validate(REPO / "search_spaces" / "smoke.yaml", [("train.epochs", 3)])
    assert again.of("kd").config.train.epochs == 3
    with pytest.raises(HarnessInputError, match=r"^--set train.epochs: .*greater than or equal to 1"):
        api.validate(REPO / "search_spaces" / "smoke.yaml", {"train.epochs": 0})


def test_train_once_logs_one_run_and_returns_its_metrics(workdir: Path, tiny_space: Path) -> None:
    seen = []
    outcome = api.train_once(
        tiny_space, method="direct", overrides={"train.epochs": 1}, log=lambda _: None, on_start=seen.append
    )
    assert outcome.failure is None and 0 <= outcome.metrics["test_accuracy"] <= 1
    assert [config.method for config in seen] == ["direct"]  # told once, with the resolved config
    assert outcome.tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}" and outcome.experiment == "tiny"
    run = MlflowClient(outcome.tracking_uri).get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[Tag.ROLE] == Role.TRIAL
    assert run.data.tags[Tag.SPACE] == str(tiny_space)
    assert run.data.metrics["test_accuracy"] == outcome.metrics["test_accuracy"]


def test_train_once_returns_a_failed_trial_with_its_reason(workdir: Path, tiny_space: Path, nan_method: str) -> None:
    outcome = api.train_once(tiny_space, method=nan_method, log=lambda _: None)
    assert outcome.failure is not None and "loss became NaN" in outcome.failure and outcome.metrics == {}
    run = MlflowClient(outcome.tracking_uri).get_run(outcome.run_id)
    assert run.info.status == "FAILED" and "loss became NaN" in run.data.tags[Tag.FAILURE_REASON]


def test_bad_input_makes_no_run(workdir: Path, tiny_space: Path) -> None:
    with pytest.raises(HarnessInputError, match=r"^--set kd.alpha:"):
        api.train_once(tiny_space, method="kd", overrides={"kd.alpha": 2.0}, log=lambda _: None)
    assert not (workdir / "mlflow.db").exists()


def test_a_sweep_that_already_ran_is_not_started_again_without_resume(tmp_path: Path) -> None:
    (tmp_path / "runs" / "smoke-digits" / "trials").mkdir(parents=True)
    with pytest.raises(HarnessInputError, match=r"already ran in .*pass --resume"):
        api.sweep(REPO / "search_spaces" / "smoke.yaml", storage=tmp_path / "runs")


def test_importing_the_api_loads_neither_ray_nor_torch() -> None:
    code = "import sys, harness.api; print(sorted(m for m in ('ray', 'torch', 'mlflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
