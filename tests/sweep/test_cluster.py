"""`harness sweep` across a real two-node Ray cluster, and a trial whose worker is killed."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "search_spaces" / "smoke.yaml"


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in the foreground, so that terminating it stops that node only."""
    ray = Path(sys.executable).with_name("ray")
    with log.open("w") as out:
        return subprocess.Popen(
            [str(ray), "start", *args, "--block", "--disable-usage-stats"], env=env, stdout=out, stderr=out
        )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def two_node_cluster(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a second raylet on this machine, 1 CPU each, with Ray's token authentication.

    Yields the GCS address and the environment a client needs (the token file).
    """
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
    head = _ray_start(
        ["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}", *common],
        env,
        head_log,
    )
    nodes = [head]
    try:
        _wait_for(lambda: "--block" in head_log.read_text(), 120, "the head node")
        nodes.append(_ray_start([f"--address={address}", *common], env, worker_log))
        _wait_for(lambda: "--block" in worker_log.read_text(), 120, "the worker node")
        yield address, env
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sweep_on_a_two_node_cluster_uses_both_nodes(two_node_cluster, tmp_path: Path, mlflow_runs) -> None:
    """The smoke space cut to what a cluster test needs (no teacher, two short trials per method):
    one slot per node, so the trials run on both."""
    address, env = two_node_cluster
    space = yaml.safe_load(SMOKE.read_text())
    space.update(methods=["direct", "conversion"], space={"student.width": {"categorical": [4, 8]}})
    space["fixed"]["train.epochs"] = 2
    space["search"]["num_samples"] = 2
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(space))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "harness.cli", "sweep", "--space", str(path), "--address", address]
    command += ["--tracking-uri", tracking_uri, "--storage", str(tmp_path / "runs")]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    runs = mlflow_runs(tracking_uri, space["name"])
    trial_ids = [r.data.tags["harness.trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)), "a trial was logged twice"
    trials = [r for r in runs if r.data.tags["harness.role"] in ("trial", "final")]
    expected_trials = len(space["methods"]) * space["search"]["num_samples"]
    assert len([r for r in trials if r.data.tags["harness.role"] == "trial"]) == expected_trials
    assert all(r.info.status == "FINISHED" for r in trials)
    nodes = {r.data.tags["harness.node"] for r in trials}
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _trial_workers(driver: subprocess.Popen) -> list[int]:
    """Pids of the Ray workers running a Tune trial's training function under this driver."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ImplicitFunc.train" not in (entry / "cmdline").read_bytes():
                continue
            pid = ancestor = int(entry.name)
            while ancestor > 1 and ancestor != driver.pid:
                ancestor = _parent(ancestor)
        except (OSError, ValueError):  # the process ended meanwhile
            continue
        if ancestor == driver.pid:
            found.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path: Path, mlflow_runs) -> None:
    from ray.tune import ExperimentAnalysis

    space = yaml.safe_load(SMOKE.read_text())
    epochs = 8  # killed after epoch 2: six left for the retry to resume, not to restart
    space.update(name="killed", methods=["direct"], space={})
    space["fixed"].update({"train.epochs": epochs, "snn.time_steps": 4, "student.width": 16})
    space["search"].update({"num_samples": 1, "final_repeats": 0, "scheduler": {"name": "none"}})
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(space))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", "--space", str(path), "--tracking-uri", tracking_uri],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    search_dir = tmp_path / "runs" / "killed" / "trials"
    checkpoints = tmp_path / "runs" / "killed" / "checkpoints" / "trial" / "direct" / "0"  # the trial's own
    try:
        # Two epochs checkpointed, then SIGKILL the worker process that runs the trial.
        _wait_for(lambda: (checkpoints / "epoch-2.pt").exists() or driver.poll() is not None, 600, "epoch 2")
        assert driver.poll() is None, "the sweep ended before the worker could be killed"
        # The worker names itself after the task it runs; under load that can lag a moment.
        _wait_for(lambda: len(_trial_workers(driver)) == 1, 30, "the trial's worker process")
        workers = _trial_workers(driver)
        os.kill(workers[0], signal.SIGKILL)
        code = driver.wait(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]

    (trial,) = ExperimentAnalysis(str(search_dir)).trials
    assert trial.status == "TERMINATED" and trial.num_failures == 1
    last = trial.last_result
    assert last["epoch"] == epochs
    # Tune counts the results since the retry started: fewer than the epochs, as the retry went
    # on from the trial's checkpoint instead of starting again at epoch 1.
    assert last["training_iteration"] < epochs, "the retry started from scratch, not from the checkpoint"
    # Done: the last checkpoint kept, and the final evaluation's test predictions beside it.
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"epoch-{epochs}.pt", "predictions.npz"]

    (run,) = [r for r in mlflow_runs(tracking_uri, "killed") if r.data.tags["harness.role"] == "trial"]
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    steps = [m.step for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(steps) == list(range(1, epochs + 1)), "an epoch was logged twice or lost"
