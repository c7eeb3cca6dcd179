"""`harness train` through the real entry point, against a real SQLite MLflow store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.cli import main


def test_train_logs_exactly_one_complete_run(workdir: Path, tiny_space: Path, capsys, mlflow_runs) -> None:
    code = main(["train", "--space", str(tiny_space), "--method", "kd", "--set", "train.epochs=2", "--set", "seed=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "teacher_test_accuracy" in out

    runs = mlflow_runs(str(workdir / "mlflow.db"))  # the default store, in the working directory
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
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
        (
            ["--set", "dataset.name=cifar10", "--set", "dataset.root=/nonexistent"],
            "--set dataset.root: dataset 'cifar10'",
        ),
        (["--set", "dataset.name=cifar10"], "--set dataset.name: dataset 'cifar10' reads files from disk"),
        (["--set", "eval.noise={fog: [1]}"], "--set eval.noise: unknown noise type 'fog'"),
        (["--set", "eval.noise={salt_pepper: [2.0]}"], "--set eval.noise: noise level for 'salt_pepper'"),
        (["--set", "eval.noise.gaussian=[-1]"], "--set eval.noise.gaussian: Input should be greater than"),
        (["--set", "eval.noise={gaussian: [.nan]}"], "--set eval.noise: Input should be a finite number (got nan)"),
        (["--set", "eval.noise={gaussian: [0.1], gaussian: [0.2]}"], "--set eval.noise: duplicate key 'gaussian'"),
        (["--set", "train.lr=.inf"], "--set train.lr: Input should be a finite number (got inf)"),
        (["--set", "kd.temperature=-.inf"], "--set kd.temperature: Input should be a finite number (got -inf)"),
        (["--set", "student.arch=vgg"], "--set student.arch: vgg depth 8 is not supported"),
        (["--set", "student.arch=vgg", "--set", "student.depth=8"], "--set student.depth: vgg depth 8"),
        (["--set", "method=direct"], "--set method: choose the method with --method"),
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
        (
            "name: x\nmethods: [kd]\nfixed:\n  train.epochs: 1\n  train.epochs: 2\n",
            "line 5: duplicate key 'train.epochs'",
        ),
        ("name: x\nmethods: [kd, kd]\n", "methods.1: 'kd' is listed twice"),
        ("name: x\nmethods: [kd]\nfixed: {train.lr: .inf}\n", "fixed.train.lr: Input should be a finite number"),
        (
            "name: x\nmethods: [kd]\neval: {noise: {gaussian: [.nan]}}\n",
            "eval.noise.gaussian.0: Input should be a finite",
        ),
        ("name: x\nmethods: [kd]\nspace: {kd.alpha: {float: [0.1, .inf]}}\n", "space.kd.alpha.float.1: Input should"),
        ("name: x\nmethods: [kd]\nspace: {kd.alpha: {categorical: [.inf]}}\n", "space.kd.alpha.categorical.0: Input"),
        ("name: x\nmethods: [kd]\nsearch: {scheduler: {reduction_factor: .inf}}\n", "reduction_factor: Input should"),
        ("name: x\nmethods: [kd]\nresources: {cpu: .inf}\n", "resources.cpu: Input should be a finite number"),
    ],
)
def test_bad_space_file_names_the_file(workdir: Path, capsys, text: str, expected: str) -> None:
    path = workdir / "broken.yaml"
    path.write_text(text)
    assert main(["train", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err and err.count("\n") == 1
    assert not (workdir / "mlflow.db").exists()
    assert not (workdir / "runs").exists()


def test_a_bad_set_value_of_a_sweep_names_the_flag_and_starts_nothing(workdir: Path, capsys) -> None:
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    for args, expected in [
        (["--set", "dataset.name=cifar10"], "--set dataset.name: dataset 'cifar10' reads files from disk"),
        (["--set", "teacher.arch=vgg"], "--set teacher.arch: vgg depth 8 is not supported"),
        (["--set", "eval.noise.gaussian=[.inf]"], "--set eval.noise.gaussian: Input should be a finite number"),
    ]:
        assert _exit_code(["sweep", "--space", str(space), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"harness: error: {expected}") and err.count("\n") == 1, err
    assert not (workdir / "mlflow.db").exists()
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("command", ["train", "sweep", "ui", "report", "validate", "plugins", "keys"])
def test_every_command_help_has_a_description_an_example_and_the_exit_codes(capsys, command: str) -> None:
    assert _exit_code([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: harness {command}" in out
    assert f"examples:\n  harness {command}" in out
    assert "exit codes:\n  0  success\n  2  bad input" in out and "  1  anything else" in out


def test_version_names_the_installed_distribution_and_the_checkout(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    from importlib.metadata import version

    from harness import cli

    assert _exit_code(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"harness {version('snn-kd-harness')}")
    repo = Path(cli.__file__).resolve().parents[1]
    if (repo / ".git").exists():
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        assert f"(git {head.stdout.strip()}" in out


def test_keys_lists_every_key_with_type_default_and_owner_without_ray(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        "code = main(['keys'])\n"
        "print('IMPORTED', sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "IMPORTED []"
    rows = {tuple(line.split()) for line in lines[1:-1]}
    assert lines[0].split() == ["key", "type", "default", "owner", "changes", "the", "plan"]
    assert ("train.lr", "float", ">", "0", "0.01", "(harness)", "yes") in rows
    assert ("student.depth", "int", "8", "(model", "resnet:", "snn-kd-harness)", "yes") in rows
    assert ("kd.alpha", "float", "[0,", "1]", "0.5", "(method", "kd:", "snn-kd-harness)", "yes") in rows
    assert ("conversion.levels", "int", "[1,", "256]", "8", "(method", "conversion:", "snn-kd-harness)", "yes") in rows
    assert ("resources.cpu", "float", ">", "0", "1.0", "(space", "file)", "no") in rows
    assert ("search.num_samples", "int", ">=", "1", "8", "(space", "file)", "yes") in rows
    starts = {line.index(word) for line in lines[:-1] for word in line.split()[:1]}
    assert starts == {0}
    owners = {line.rindex("(") for line in lines[1:-1]}
    assert len(owners) == 1  # aligned columns


def test_nan_trial_is_marked_failed_with_its_reason(
    workdir: Path, tiny_space: Path, nan_method: str, capsys, mlflow_runs
) -> None:
    code = main(["train", "--space", str(tiny_space), "--method", nan_method, "--tracking-uri", "runs.db"])
    assert code == 1
    assert "loss became NaN" in capsys.readouterr().err
    runs = mlflow_runs(str(workdir / "runs.db"))
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


def test_ui_serves_the_store_on_loopback_only_and_prints_its_links(workdir: Path, harness_ui) -> None:
    """`harness ui` answers on 127.0.0.1 (not on another address) with the experiment the store
    holds, and printed where it serves and the link to that experiment's runs."""
    from harness.tracking import TrackedRun

    store = workdir / "mlflow.db"
    TrackedRun(str(store), "tiny", "probe", {"harness.role": "trial"}).finish()
    served = harness_ui(str(store))
    port, out, err, base = served.port, served.stdout, served.stderr, served.base
    with urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=10", timeout=5) as response:
        experiments = {e["name"]: e["experiment_id"] for e in json.load(response)["experiments"]}
    assert "tiny" in experiments
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=5):
        pass  # bound to 127.0.0.1 itself, not to every address of the machine
    assert f"MLflow UI for sqlite:///{store} at {base}" in err
    runs_link = f"{base}/#/experiments/{experiments['tiny']}/runs?workflowType=machine_learning"
    assert f"experiment 'tiny': no final runs yet; its runs: {runs_link}" in out.splitlines()


def test_ui_without_a_store_is_bad_input(workdir: Path, capsys) -> None:
    assert main(["ui", "--tracking-uri", str(workdir / "none.db")]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_train_honours_mlflow_tracking_uri_and_records_how_to_reproduce_the_run(
    tmp_path: Path, tiny_space: Path, run_harness, mlflow_runs
) -> None:
    from importlib.metadata import version

    store = tmp_path / "elsewhere" / "store.db"
    store.parent.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "PYTHONUNBUFFERED": "1"}
    args = ["train", "--space", str(tiny_space), "--method", "direct", "--set", "train.epochs=1"]
    result = run_harness(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert store.exists() and not (tmp_path / "mlflow.db").exists()  # the variable, not ./mlflow.db
    (run,) = mlflow_runs(f"sqlite:///{store}")
    tags = run.data.tags
    assert all(tags[f"harness.lib.{name}"] == version(name) for name in ("torch", "spikingjelly", "ray", "optuna"))
    assert tags["harness.version"].startswith(version("snn-kd-harness")) and tags["harness.device"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"digits/train", "digits/val", "digits/test"}
    assert {t.value for d in inputs.values() for t in d.tags} == {"training", "validation", "test"}
    # The normalisation statistics come from the training split, and are logged with it.
    train_profile = json.loads(inputs["digits/train"].dataset.profile)
    assert train_profile["loader"] == "tensor" and len(train_profile["mean"]) == len(train_profile["std"]) == 1
    assert 0 < train_profile["mean"][0] < 1 and "mean" not in json.loads(inputs["digits/test"].dataset.profile)
    assert not any(
        key.startswith(("kd.", "conversion.", "teacher.")) for key in run.data.params
    )  # direct reads neither
