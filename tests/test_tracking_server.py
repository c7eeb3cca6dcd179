"""The harness against a real MLflow tracking server with MLflow's basic-auth app (the cluster set-up)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (in the [dev] extra)")


@pytest.fixture
def auth_server(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[tuple[str, str]]:
    """`mlflow server --app-name basic-auth` on 127.0.0.1; yields (URI, admin password)."""
    password = secrets.token_hex(8)
    port = free_port()
    secret = secrets.token_hex(16)
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secret}
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts")]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
    try:
        yield uri, password
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_train_logs_to_an_authenticated_server_and_refuses_without_credentials(
    auth_server, tiny_space: Path, tmp_path: Path, mlflow_runs
) -> None:
    uri, password = auth_server
    command = [sys.executable, "-m", "harness.cli", "train", "--space", str(tiny_space), "--tracking-uri", uri]
    bare = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    work = tmp_path / "work"
    work.mkdir()

    refused = subprocess.run(command, cwd=work, env=bare, capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "MLFLOW_TRACKING_USERNAME" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and uri in refused.stderr
    assert not any(work.iterdir()), "a refused command must write nothing"

    login = {**bare, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    logged = subprocess.run(command, cwd=work, env=login, capture_output=True, text=True, timeout=600, check=False)
    assert logged.returncode == 0, logged.stderr[-2000:]
    assert "View run" not in logged.stdout  # MLflow's link lines, one pair per ended run, are off
    assert not (work / "mlflow.db").exists(), "the runs must go to the server, not a local store"

    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    try:
        (run,) = mlflow_runs(uri, "tiny")
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics


def _start_server(tmp_path: Path, port: int, log_name: str) -> subprocess.Popen:
    """A plain `mlflow server` on 127.0.0.1:`port` over the store `server.db` in `tmp_path`, once it answers."""
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts")]
    log = (tmp_path / log_name).open("w")
    server = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:  # URLError, a refused connection, or a slow answer on a loaded machine (TimeoutError)
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / log_name).read_text()
            time.sleep(0.5)


def _stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, 9)
    except ProcessLookupError:  # already gone (a stop in the test body, then the cleanup's)
        pass
    server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sweep_survives_its_tracking_server_dropping_for_a_few_seconds(
    tmp_path: Path, free_port: Callable[[], int], mlflow_runs
) -> None:
    """The server is killed while trials run and comes back on the same port a few seconds later:
    MLflow's client retries (the fast probe's settings apply to the first request only), and the
    record ends whole: one FINISHED run per planned trial, every epoch logged once."""
    import yaml
    from mlflow.tracking import MlflowClient

    space = yaml.safe_load((Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml").read_text())
    space.update(methods=["direct"], space={"student.width": {"categorical": [4, 8]}})
    space["fixed"]["train.epochs"] = 3
    space["search"].update({"num_samples": 2, "final_repeats": 0, "scheduler": {"name": "none"}})
    path = tmp_path / "drop.yaml"
    path.write_text(yaml.safe_dump(space))
    port = free_port()
    server = _start_server(tmp_path, port, "server-1.log")
    store = f"sqlite:///{tmp_path / 'server.db'}"  # what the server writes, read directly
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "sweep",
            "--space",
            str(path),
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(r.data.tags.get("harness.role") == "trial" for r in mlflow_runs(store, "smoke-digits")):
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.5)
        _stop_server(server)  # the trials go on; the driver's next writes meet a closed port
        time.sleep(4)
        server = _start_server(tmp_path, port, "server-2.log")
        code = driver.wait(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
        _stop_server(server)
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]
    runs = [r for r in mlflow_runs(store, "smoke-digits") if r.data.tags["harness.role"] != "sweep"]
    assert sorted(r.data.tags["harness.trial_id"] for r in runs) == [
        "smoke-digits/trial/direct/0",
        "smoke-digits/trial/direct/1",
    ]
    client = MlflowClient(store)
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.data.tags.get("harness.failure_reason"))
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert steps == [1, 2, 3], (run.info.run_name, steps)
