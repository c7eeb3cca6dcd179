"""A sweep whose driver is killed (SIGKILL) in the teacher stage, resumed with `--resume` and
killed again in the search, resumed and killed again in the final stage, then resumed to its end,
has a whole record: every planned trial and final run exactly once, FINISHED, every epoch logged
once, no run left RUNNING, each study whole. One sweep killed three times rather than three
sweeps killed once: the same kill points at about half the time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.contract import Role, Tag

REPO = Path(__file__).resolve().parents[2]


EPOCHS = 3  # per trial: enough for ASHA to prune, and for a kill to land inside the search


def _space(tmp_path: Path) -> Path:
    space = yaml.safe_load((REPO / "search_spaces" / "smoke.yaml").read_text())
    space["methods"] = ["kd", "direct"]
    space["fixed"].update({"train.epochs": EPOCHS, "teacher.epochs": 3})
    space["space"] = {"student.width": {"categorical": [4, 8]}, "kd.alpha": {"float": [0.2, 0.8]}}
    space["search"].update({"num_samples": 2, "final_repeats": 1})
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


Runs = Callable[[], list[Any]]
"""The sweep's runs so far; [] while the driver is still creating the store (conftest's `mlflow_runs`)."""
KillPoint = Callable[[Path, set[str], Runs], bool]


def _in_teacher_stage(tmp_path: Path, before: set[str], runs: Runs) -> bool:
    cache = tmp_path / "runs" / "teacher_cache"
    return any(cache.glob("*/.lock")) and not any(cache.glob("*/teacher.pt"))


def _in_search(tmp_path: Path, before: set[str], runs: Runs) -> bool:
    """A search trial finished since this driver started, and no final run exists yet."""
    roles = [(r.data.tags.get(Tag.ROLE), r.info.status, r.info.run_id) for r in runs()]
    return any(role == Role.TRIAL and status == "FINISHED" and run not in before for role, status, run in roles) and (
        not any(role == Role.FINAL for role, _, _ in roles)
    )


def _in_final_stage(tmp_path: Path, before: set[str], runs: Runs) -> bool:
    return any(r.data.tags.get(Tag.ROLE) == Role.FINAL and r.info.status == "RUNNING" for r in runs())


def _kill_driver_when(point: KillPoint, space: Path, tmp_path: Path, resume: bool, runs: Runs) -> None:
    before = {run.info.run_id for run in runs() if run.info.status == "FINISHED"}
    log = (tmp_path / "driver.log").open("a")
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", "--space", str(space), *(["--resume"] if resume else [])],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not point(tmp_path, before, runs):
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the kill point was not reached in time"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its Ray processes notice by themselves
    driver.wait()
    time.sleep(2)
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # whatever of its session is left, so nothing leaks into other tests
    except ProcessLookupError:
        pass
    log.close()


# Two search trials per method; one final seed (1) at T = 2 (the reference) and T = 1 (eval.time_steps).
EXPECTED_RUNS = {
    "smoke-digits/sweep",
    "smoke-digits/trial/kd/0",
    "smoke-digits/trial/kd/1",
    "smoke-digits/trial/direct/0",
    "smoke-digits/trial/direct/1",
    "smoke-digits/final/kd/s1-T1",
    "smoke-digits/final/kd/s1-T2",
    "smoke-digits/final/direct/s1-T1",
    "smoke-digits/final/direct/s1-T2",
}
SEARCHED = {"kd": ("student.width", "kd.alpha"), "direct": ("student.width",)}


def _audit(tmp_path: Path, runs: list[Any]) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    keys = Counter(run.data.tags[Tag.TRIAL_ID] for run in runs)
    assert max(keys.values()) == 1, keys  # exactly one run per planned trial
    assert set(keys) == EXPECTED_RUNS
    assert all(run.info.status == "FINISHED" for run in runs), [(r.info.run_name, r.info.status) for r in runs]
    for method, dims in SEARCHED.items():
        (best,) = [
            r for r in runs
            if r.data.tags.get(Tag.METHOD) == method and r.data.tags.get(Tag.BEST) == "true"
        ]  # fmt: skip
        assert best.data.tags[Tag.ROLE] == Role.TRIAL
        finals = [r for r in runs if r.data.tags.get(Tag.METHOD) == method and r.data.tags[Tag.ROLE] == Role.FINAL]
        for final in finals:  # each retrains the chosen configuration
            assert {dim: final.data.params[dim] for dim in dims} == {dim: best.data.params[dim] for dim in dims}
        study = optuna.load_study(study_name=method, storage=f"sqlite:///{tmp_path / 'runs/smoke-digits/optuna.db'}")
        assert sorted(t.user_attrs["harness_run"] for t in study.trials) == ["0", "1"]  # each search trial once
    for run in runs:
        if run.data.tags[Tag.ROLE] == Role.SWEEP:
            continue
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, max(steps) + 1)), (run.info.run_name, steps)  # each epoch once
        if run.data.tags.get(Tag.PRUNED) != "true":
            assert max(steps) == EPOCHS and "test_accuracy" in run.data.metrics, run.info.run_name


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_driver_killed_in_each_stage_resumes_to_a_whole_record(tmp_path: Path, run_harness, mlflow_runs) -> None:
    space = _space(tmp_path)

    def runs() -> list[Any]:
        return mlflow_runs(str(tmp_path / "mlflow.db"), "smoke-digits")

    for resume, point in enumerate((_in_teacher_stage, _in_search, _in_final_stage)):
        _kill_driver_when(point, space, tmp_path, resume=bool(resume), runs=runs)
    result = run_harness("sweep", "--space", str(space), "--resume", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _audit(tmp_path, runs())
    assert (tmp_path / "runs" / "smoke-digits" / "report" / "report.md").exists()
