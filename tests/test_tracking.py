"""`harness.tracking.TrialRecorder`, the one writer of a trial's MLflow run, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from harness.contract import Role, Tag
from harness.run_spec import run_name, run_spec
from harness.tracking import TrialRecorder, absolute_tracking_uri, tag_run


def _spec(make_config, trial_id: str = "sweep/trial/direct/0"):
    return run_spec(make_config("direct"), Role.TRIAL, trial_id, run="0")


def test_a_recorder_finds_its_run_again_and_logs_each_epoch_once(tmp_path: Path, make_config) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = TrialRecorder(uri, "exp", _spec(make_config))
    assert first.log_epoch({"val_accuracy": 0.5}, 1) and first.log_epoch({"val_accuracy": 0.6}, 2)
    again = TrialRecorder(uri, "exp", _spec(make_config))  # a restarted driver, the same planned trial
    assert again.run_id == first.run_id and again.last_epoch == 2
    assert not again.log_epoch({"val_accuracy": 0.9}, 2)  # held already: not logged twice
    assert again.log_epoch({"val_accuracy": 0.7}, 3)
    again.finish("FAILED", "a reason")
    client = MlflowClient(uri)
    history = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "val_accuracy"))
    assert history == [(1, 0.5), (2, 0.6), (3, 0.7)]
    run = client.get_run(first.run_id)
    assert run.info.status == "FAILED" and run.data.tags[Tag.FAILURE_REASON] == "a reason"
    assert "kd.alpha" not in run.data.params and run.data.params["method"] == "direct"
    assert [a.path for a in client.list_artifacts(first.run_id)] == ["config.yaml"]


def test_tag_run_tags_the_run_of_one_identity_only(tmp_path: Path, make_config) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    one = TrialRecorder(uri, "exp", _spec(make_config, "s/trial/direct/0"))
    other = TrialRecorder(uri, "exp", _spec(make_config, "s/trial/direct/1"))
    tag_run(uri, "exp", "s/trial/direct/1", {Tag.BEST: "true"})
    tag_run(uri, "missing-experiment", "s/trial/direct/1", {Tag.BEST: "true"})  # nothing to tag: no error
    client = MlflowClient(uri)
    assert Tag.BEST not in client.get_run(one.run_id).data.tags
    assert client.get_run(other.run_id).data.tags[Tag.BEST] == "true"


def test_run_names_read_as_the_reports_rows(make_config) -> None:
    kd = make_config("kd", **{"snn.time_steps": 4, "seed": 1})
    assert run_name(kd, Role.TRIAL, "3") == "kd-trial-3"
    assert run_name(kd, Role.FINAL, "s1-T4") == "kd-final-T4-s1"
    assert run_name(kd, Role.TRIAL) == "kd-digits-T4-s1"  # harness train
    assert run_name(make_config("conversion", seed=2), Role.FINAL, "s2") == "conversion-final-s2"  # no trained T


def test_relative_stores_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert absolute_tracking_uri("x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert absolute_tracking_uri("sqlite:///y.db") == f"sqlite:///{tmp_path / 'y.db'}"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert absolute_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_an_unreachable_server_is_refused_at_once_and_mlflows_retry_settings_come_back(free_port, monkeypatch) -> None:
    import os
    import time

    import pytest

    from harness.errors import HarnessInputError
    from harness.tracking import probe_store

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(HarnessInputError, match=rf"^--tracking-uri {uri}: no tracking server answers there"):
        probe_store(uri, "exp")
    assert time.monotonic() - started < 15
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77" and "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_a_sqlite_store_is_probed_without_being_made(tmp_path: Path) -> None:
    import pytest

    from harness.errors import HarnessInputError
    from harness.tracking import probe_store

    probe_store(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'mlflow.db'}", "exp")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # checked, and nothing of the check stays
    (tmp_path / "file").write_text("")
    with pytest.raises(HarnessInputError, match=r"cannot make the folder .*file/sub or write there"):
        probe_store(f"sqlite:///{tmp_path / 'file' / 'sub' / 'mlflow.db'}", "exp")


def test_a_recorder_makes_the_folder_of_a_new_sqlite_store(tmp_path: Path, make_config) -> None:
    uri = f"sqlite:///{tmp_path / 'runs' / 'deep' / 'mlflow.db'}"
    TrialRecorder(uri, "exp", _spec(make_config)).finish()
    assert (tmp_path / "runs" / "deep" / "mlflow.db").exists()


def test_a_refusal_is_worded_by_its_cause_not_by_digits_in_the_address() -> None:
    from mlflow.exceptions import MlflowException

    from harness.tracking import describe_refusal

    unreachable = MlflowException(
        "API request to http://127.0.0.1:35401/api/2.0/mlflow/experiments/get-by-name failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=35401): Max retries exceeded with url: ... Connection refused"
    )
    assert describe_refusal(unreachable).startswith("no tracking server answers there")
    refused = MlflowException(
        "API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 401"
    )
    assert describe_refusal(refused).startswith("the server refused the credentials")
    forbidden = MlflowException("failed with error code 403 != 200")
    assert describe_refusal(forbidden) == "this user may not use the experiment (permission denied)"
