"""`harness train` through the real entry point, against a real SQLite MLflow store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.cli import main


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_cache: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_TEACHER_CACHE", str(teacher_cache))
    return tmp_path


def _runs(db: Path):
    client = MlflowClient(f"sqlite:///{db}")
    experiments = client.search_experiments()
    return client, client.search_runs([e.experiment_id for e in experiments])


def test_train_logs_exactly_one_complete_run(workdir: Path, tiny_space: Path, capsys) -> None:
    code = main(["train", "--space", str(tiny_space), "--method", "kd", "--set", "train.epochs=2", "--set", "seed=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "teacher_test_accuracy" in out

    client, runs = _runs(workdir / "mlflow.db")  # the default store, in the working directory
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    assert run.data.tags["harness.role"] == "trial"
    assert run.data.tags["harness.method"] == "kd"
    assert run.data.tags["harness.trial_id"]
    assert run.data.params["method"] == "kd"
    assert run.data.params["seed"] == "1"
    assert run.data.params["kd.alpha"] == "0.5"
    assert run.data.params["snn.time_steps"] == "2"
    metrics = run.data.metrics
    for name in (
        "test_accuracy",
        "teacher_test_accuracy",
        "timestep/1",
        "timestep/4",
        "noise/gaussian/0.1",
        "noise/salt_pepper/0.05",
        "firing_rate",
        "synops",
        "energy_uj",
        "params",
        "train_seconds",
    ):
        assert name in metrics, name
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    config_file = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir))
    logged = yaml.safe_load(Path(config_file).read_text())
    assert logged["train"]["epochs"] == 2 and logged["seed"] == 1 and logged["method"] == "kd"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "snn.time_step=4"], "--set snn.time_step: unknown key"),
        (["--set", "train.epochs=many"], "--set train.epochs: "),
        (["--set", "kd.temperature=-1"], "--set kd.temperature: "),
        (["--method", "distill"], "--method: unknown method 'distill'"),
        (["--set", "dataset.name=imagenet"], "--set dataset.name: unknown dataset 'imagenet'"),
        (["--set", "dataset.name=cifar10", "--set", "dataset.root=/nonexistent"], "dataset.download: true"),
        (["--set", "eval.noise={fog: [1]}"], "unknown noise type 'fog'"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_no_run(
    workdir: Path, tiny_space: Path, capsys, args: list[str], expected: str
) -> None:
    assert _exit_code(["train", "--space", str(tiny_space), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (workdir / "mlflow.db").exists()
    assert not (workdir / "runs").exists()


def _exit_code(argv: list[str]) -> int | str | None:
    """main()'s return value, or the code of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nmethods: [kd\n", "not valid YAML"),
        ("name: x\nmethods: [kd]\nfixed: {train.epoch: 3}\n", "fixed.train.epoch: unknown key"),
    ],
)
def test_bad_space_file_names_the_file(workdir: Path, capsys, text: str, expected: str) -> None:
    path = workdir / "broken.yaml"
    path.write_text(text)
    assert main(["train", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err and err.count("\n") == 1
    assert not (workdir / "mlflow.db").exists()


def test_nan_trial_is_marked_failed_with_its_reason(workdir: Path, tiny_space: Path, nan_method: str, capsys) -> None:
    code = main(["train", "--space", str(tiny_space), "--method", nan_method, "--tracking-uri", "runs.db"])
    assert code == 1
    assert "loss became NaN" in capsys.readouterr().err
    _, runs = _runs(workdir / "runs.db")
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert "loss became NaN" in runs[0].data.tags["harness.failure_reason"]


def test_console_script_bad_input_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "train", "--space", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "missing.yaml: cannot read the space file" in result.stderr


@pytest.mark.slow
def test_default_space_on_digits_end_to_end(train_default_space_on_digits) -> None:
    """The issue's acceptance command: kd.yaml's teacher and student, digits, 3 epochs."""
    result, metrics = train_default_space_on_digits("kd", epochs=3)
    assert "kd epoch 3/3" in result.stderr  # progress was shown
    assert {"test_accuracy", "teacher_test_accuracy", "timestep/8", "noise/gaussian_blur/1", "energy_uj"} <= set(
        metrics
    )
    assert metrics["teacher_test_accuracy"] > 0.8
    assert metrics["test_accuracy"] > 0.3


def test_ui_serves_the_store_on_loopback(workdir: Path, harness_ui) -> None:
    """`harness ui` answers on 127.0.0.1 with the experiment the store holds."""
    import json
    import urllib.request

    from harness.tracking import TrackedRun

    TrackedRun(str(workdir / "mlflow.db"), "tiny", "probe", {"harness.role": "trial"}).finish()
    base = harness_ui(str(workdir / "mlflow.db"))
    assert base.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=10", timeout=5) as response:
        assert "tiny" in [e["name"] for e in json.load(response)["experiments"]]


def test_ui_without_a_store_is_bad_input(workdir: Path, capsys) -> None:
    assert main(["ui", "--tracking-uri", str(workdir / "none.db")]) == 2
    assert "no MLflow store" in capsys.readouterr().err
