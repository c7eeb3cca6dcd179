"""Faults at the edges, as a user meets them on the command line: each ends with exit 2 and one
line naming the cause (no traceback), and nothing half-written.

One test per case: a plugin noise that returns another shape or NaN, a damaged `plan.json` or
`choices.json` met by `--resume`, an unreachable tracking server, a SQLite store whose folder
cannot be made, and `--set` of the space file's own keys. `harness ui` stopping on the first
Ctrl-C is here too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"

BAD_NOISES = """
import torch


def smaller(x, level, generator):
    return x[..., :-1]  # one column short


def nan_on_real_images(x, level, generator):
    # Fine on the 4x4 probe the space file's check uses; NaN on the 8x8 digits.
    return x if x.shape[-1] <= 4 else x * float("nan")


def nan(x, level, generator):
    return x * float("nan")
"""


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `harness: error:` line of a run that exited 2 without a traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0].removeprefix("harness: error: ")


def _space(tmp_path: Path, **edits) -> Path:
    space = yaml.safe_load(SMOKE.read_text())
    for key, value in edits.items():
        space[key] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def bad_noises(plugin_subprocess_env) -> dict[str, str]:
    entry_points = {"noises": {name: f"bad_noises:{name}" for name in ("smaller", "nan_on_real_images", "nan")}}
    return plugin_subprocess_env("bad-noises", entry_points, {"bad_noises.py": BAD_NOISES})


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        ("smaller", "returned an image of shape (1, 4, 3) for an input of shape (1, 4, 4)"),
        ("nan", "returned non-finite values (NaN or inf)"),
    ],
)
def test_a_plugin_noise_that_returns_the_wrong_thing_is_refused_before_anything_runs(
    tmp_path: Path, tiny_space: Path, run_harness, bad_noises: dict[str, str], noise: str, expected: str
) -> None:
    before = _written(tmp_path)
    result = run_harness(
        "train", "--space", str(tiny_space), "--set", f"eval.noise={{{noise}: [0.1]}}", cwd=tmp_path, env=bad_noises
    )
    line = _one_line_error(result)
    assert line.startswith(f"--set eval.noise: noise {noise!r} (entry point {noise!r} (bad_noises:{noise}) of ")
    assert "bad-noises 0.1" in line and expected in line
    assert _written(tmp_path) == before  # no store, no run, no teacher


def test_a_plugin_noise_that_fails_only_on_real_images_fails_the_trial_naming_it(
    tmp_path: Path, tiny_space: Path, run_harness, bad_noises: dict[str, str], mlflow_runs
) -> None:
    result = run_harness(
        "train",
        "--space",
        str(tiny_space),
        "--method",
        "direct",
        "--set",
        "train.epochs=1",
        "--set",
        "eval.noise={nan_on_real_images: [0.1]}",
        cwd=tmp_path,
        env=bad_noises,
    )
    line = _one_line_error(result)
    assert "noise 'nan_on_real_images' (entry point" in line and "returned non-finite values" in line
    (run,) = mlflow_runs(str(tmp_path / "mlflow.db"))
    assert run.info.status == "FAILED" and "returned non-finite values" in run.data.tags["harness.failure_reason"]


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        ("plan.json", "the plan the sweep started with is damaged"),
        ("choices.json", "the record of each method's chosen search trial is damaged"),
        ("optuna.db", "the mirror of each method's Optuna study is damaged"),
        ("trials/experiment_state-2026-01-01_00-00-00.json", "the Tune experiment's state is damaged"),
        ("trials/searcher-state-2026-01-01_00-00-00.pkl", "the Tune experiment's state is damaged"),
        ("trials/search_gen_state-2026-01-01_00-00-00.json", "the Tune experiment's state is damaged"),
    ],
)
def test_a_damaged_state_file_is_refused_by_resume_naming_it_and_the_way_out(
    tmp_path: Path, run_harness, damage: str, what: str
) -> None:
    folder = tmp_path / "runs" / "smoke-digits"
    (folder / damage).parent.mkdir(parents=True)
    json_file = damage.endswith(".json") and "search_gen_state" not in damage  # Tune pickles into that one
    (folder / damage).write_bytes(b'{"methods": {"kd": {"con' if json_file else b"\x80\x05garbage")
    before = _written(tmp_path)
    result = run_harness("sweep", "--space", str(SMOKE), "--resume", cwd=tmp_path, timeout=300)
    line = _one_line_error(result)
    assert line.startswith(f"{folder / damage}: {what}")
    assert "another name" in line and "--storage" in line  # the way out
    assert _written(tmp_path) == before  # nothing replaced, no store made


def test_an_unreachable_tracking_server_is_named_within_30_seconds(tmp_path: Path, run_harness, free_port) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_harness("sweep", "--space", str(SMOKE), "--tracking-uri", uri, cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    line = _one_line_error(result)
    assert line.startswith(f"--tracking-uri {uri}: no tracking server answers there")
    assert elapsed < 30, elapsed
    assert "Started a local Ray instance" not in result.stderr  # refused before Ray started
    assert not (tmp_path / "runs" / "smoke-digits" / "trials").exists()


def test_a_sqlite_store_whose_folder_cannot_be_made_is_named(tmp_path: Path, run_harness) -> None:
    uri = "sqlite:////proc/nope/mlflow.db"
    result = run_harness("train", "--space", str(SMOKE), "--set", "train.epochs=1", "--tracking-uri", uri, cwd=tmp_path)
    assert _one_line_error(result).startswith(f"--tracking-uri {uri}: cannot make the folder /proc/nope")
    result = run_harness("sweep", "--space", str(SMOKE), "--tracking-uri", uri, cwd=tmp_path, timeout=120)
    assert _one_line_error(result).startswith(f"--tracking-uri {uri}: cannot make the folder /proc/nope")
    assert _written(tmp_path) == []  # the storage folder was checked, and nothing of the check stays


def test_a_storage_folder_that_cannot_be_written_is_named(tmp_path: Path, run_harness) -> None:
    result = run_harness("sweep", "--space", str(SMOKE), "--storage", "/proc/nope", cwd=tmp_path, timeout=120)
    assert _one_line_error(result).startswith("--storage /proc/nope: cannot make that folder")
    assert _written(tmp_path) == []


def test_set_reaches_the_space_files_own_keys(capsys) -> None:
    from harness import api
    from harness.cli import main

    sets = ["search.num_samples=5", "resources.cpu=2", "methods=[kd, direct]", "space.snn.time_steps=null"]
    assert main(["validate", str(SMOKE), *(part for text in sets for part in ("--set", text))]) == 0
    assert capsys.readouterr().out.splitlines()[1:3] == [
        "  kd: 5 trials, searching student.width, kd.alpha",
        "  direct: 5 trials, searching student.width",
    ]
    plan = api.validate(SMOKE, [("resources.gpu", 0.5), ("search.scheduler.name", "none"), ("name", "other")])
    assert (plan.space.resources.gpu, plan.space.search.scheduler.name, plan.space.name) == (0.5, "none", "other")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("search.num_samples=0", "--set search.num_samples: Input should be greater than or equal to 1 (got 0)"),
        ("resources.cpu=-1", "--set resources.cpu: Input should be greater than 0 (got -1)"),
        ("search.bogus=1", "--set search.bogus: unknown key; expected one of: final_front, final_repeats, "),
        ("space.kd.alpha={float: [0.5, 1.5]}", "--set space.kd.alpha: value 1.5 is invalid: "),
        ("name=a/b", "--set name: String should match pattern"),
    ],
)
def test_a_bad_value_for_a_space_files_key_names_the_set_flag(capsys, text: str, expected: str) -> None:
    from harness.cli import main

    assert main(["validate", str(SMOKE), "--set", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: {expected}") and err.count("\n") == 1, err


def test_resume_refuses_a_set_that_changes_the_plan_and_takes_one_that_does_not(tmp_path: Path, capsys) -> None:
    from harness.cli import main
    from harness.sweep.plan import plan_sweep, record_plan

    folder = tmp_path / "runs" / "smoke-digits"
    folder.mkdir(parents=True)
    record_plan(plan_sweep(SMOKE), folder)  # what the sweep wrote when it started
    argv = ["sweep", "--space", str(SMOKE), "--storage", str(tmp_path / "runs"), "--resume"]
    assert main([*argv, "--set", "search.num_samples=4"]) == 2
    err = capsys.readouterr().err
    assert "search.num_samples is 4, but the sweep in" in err and "started with 3" in err and err.count("\n") == 1
    from harness.config.space import changes_the_plan

    assert changes_the_plan("search.num_samples") and changes_the_plan("kd.alpha") and changes_the_plan("methods")
    assert not changes_the_plan("resources.cpu") and not changes_the_plan("name")


def test_harness_ui_stops_on_the_first_ctrl_c(tmp_path: Path, free_port) -> None:
    from harness.tracking import TrackedRun

    store = tmp_path / "mlflow.db"
    TrackedRun(str(store), "tiny", "probe", {"harness.role": "trial"}).finish()
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "ui", "--tracking-uri", str(store), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base, timeout=5):
                    break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, "harness ui did not start"
                time.sleep(1)
        os.kill(ui.pid, signal.SIGINT)  # what one Ctrl-C in a terminal sends it
        assert ui.wait(timeout=15) == 130
        assert "harness: interrupted" in ui.stderr.read()
        with pytest.raises(OSError):
            urllib.request.urlopen(base, timeout=5)  # the server went with it
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)


@pytest.mark.slow
def test_inside_a_sweep_a_plugin_that_fails_on_real_images_fails_its_run_with_the_reason(
    tmp_path: Path, run_harness, bad_noises: dict[str, str], mlflow_runs
) -> None:
    """Not retried (it would fail the same way): FAILED at once, the reason naming the noise."""
    space = _space(
        tmp_path,
        methods=["direct"],
        space={},
        eval={"reference_time_steps": 2, "time_steps": [2], "noise": {"nan_on_real_images": [0.1]}},
    )
    edited = yaml.safe_load(space.read_text())
    edited["fixed"]["train.epochs"] = 1
    edited["search"].update({"num_samples": 1, "final_repeats": 0, "trial_evaluation": "full"})
    space.write_text(yaml.safe_dump(edited))
    result = run_harness("sweep", "--space", str(space), cwd=tmp_path, env=bad_noises, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]  # no final run was planned: nothing is missing
    (trial,) = mlflow_runs(str(tmp_path / "mlflow.db"), "smoke-digits", "tags.`harness.role` = 'trial'")
    assert trial.info.status == "FAILED"
    assert "noise 'nan_on_real_images' (entry point" in trial.data.tags["harness.failure_reason"]
    from ray.tune import ExperimentAnalysis

    (tune_trial,) = ExperimentAnalysis(str(tmp_path / "runs" / "smoke-digits" / "trials")).trials
    assert tune_trial.num_failures == 0  # ended with its reason, not retried
