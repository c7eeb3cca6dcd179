"""A Pareto sweep (`search.objectives`) on real Ray and a real MLflow store: per method a front of
retrained configurations, each trial logged once, a report with the front; and a driver killed in
the final stage, resumed, gives the very front of an uninterrupted sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from harness.contract import Role, Tag
from harness.sweep.plan import plan_sweep
from harness.sweep.run import SweepOptions, run_sweep
from harness.sweep.search import CHOICES_FILE, read_choices

REPO = Path(__file__).resolve().parents[2]
NAME = "smoke-pareto"


def _space(folder: Path) -> Path:
    """smoke-pareto.yaml for the methods without a teacher, one trial at a time: the search is
    then the same in every run of it (TPE is told the trials in one order)."""
    space = yaml.safe_load((REPO / "search_spaces" / "smoke-pareto.yaml").read_text())
    space["methods"] = ["direct", "conversion"]
    space["search"].update({"max_concurrent": 1, "final_repeats": 1, "front_repeats": 1})
    path = folder / "pareto.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _record(runs: list[Any]) -> dict[str, tuple[str, float]]:
    """Per final-stage run: its status and test accuracy (training is deterministic on the CPU)."""
    return {
        r.data.tags[Tag.TRIAL_ID]: (r.info.status, r.data.metrics.get("test_accuracy"))
        for r in runs
        if r.data.tags[Tag.ROLE] in (Role.FINAL, Role.FRONT)
    }


@pytest.fixture(scope="module")
def uninterrupted(ray_2_cpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pareto")
    options = SweepOptions(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment=NAME, storage=folder / "runs")
    run_sweep(plan_sweep(_space(folder)), options, log=lambda _: None)
    return folder, options


@pytest.mark.slow
def test_a_pareto_sweep_retrains_each_methods_front_and_logs_each_trial_once(uninterrupted, mlflow_runs) -> None:
    folder, options = uninterrupted
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    ids = Counter(r.data.tags[Tag.TRIAL_ID] for r in runs)
    assert max(ids.values()) == 1
    choices = read_choices(folder / "runs" / NAME / CHOICES_FILE)
    for method in ("direct", "conversion"):
        trials = [r for r in runs if r.data.tags.get(Tag.METHOD) == method and r.data.tags[Tag.ROLE] == Role.TRIAL]
        assert len(trials) == 4 and all("val/energy_uj" in r.data.metrics for r in trials)
        front = [r for r in runs if r.data.tags.get(Tag.METHOD) == method and r.data.tags[Tag.ROLE] == Role.FRONT]
        points = {p["run"]: p["values"] for p in choices[method].get("front", [])}
        assert {r.data.tags[Tag.FRONT_POINT] for r in front} == set(points)
        for run in front:  # each retrains its front point's sampled values
            values = points[run.data.tags[Tag.FRONT_POINT]]
            assert {k: run.data.params[k] for k in values} == {k: str(v) for k, v in values.items()}
        study = optuna.load_study(study_name=method, storage=f"sqlite:///{folder / 'runs' / NAME / 'optuna.db'}")
        assert len(study.directions) == 2 and len(study.best_trials) >= 1  # a multi-objective study
    sweep = next(r for r in runs if r.data.tags[Tag.ROLE] == Role.SWEEP)
    assert sweep.data.tags[Tag.OBJECTIVES] == '{"val_accuracy": "max", "energy_uj": "min"}'


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_driver_killed_in_the_final_stage_resumes_to_the_same_front(
    uninterrupted, tmp_path: Path, run_harness, mlflow_runs
) -> None:
    folder, options = uninterrupted
    space = _space(tmp_path)
    log = (tmp_path / "driver.log").open("a")
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", "--space", str(space)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    choices = tmp_path / "runs" / NAME / CHOICES_FILE
    deadline = time.monotonic() + 300
    # Both searches ended (their choices on record) and a final-stage run is under way.
    while not (
        len(read_choices(choices) if choices.exists() else {}) == 2
        and any(
            r.data.tags.get(Tag.ROLE) in (Role.FINAL, Role.FRONT) and r.info.status == "RUNNING"
            for r in mlflow_runs(str(tmp_path / "mlflow.db"), NAME)
        )
    ):
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the final stage was not reached in time"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(2)
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    log.close()
    result = run_harness("sweep", "--space", str(space), "--resume", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_choices(choices) == read_choices(folder / "runs" / NAME / CHOICES_FILE)
    resumed = _record(mlflow_runs(str(tmp_path / "mlflow.db"), NAME))
    assert resumed == _record(mlflow_runs(options.tracking_uri, options.experiment))
    assert all(status == "FINISHED" for status, _ in resumed.values())
    report = tmp_path / "runs" / NAME / "report"  # `harness sweep` reports at the end: the front, per method
    assert (report / "figures" / "pareto_front.png").exists()
    pareto = (report / "tables" / "pareto.csv").read_text()
    assert all(f"{method}: reference" in pareto for method in ("direct", "conversion"))
