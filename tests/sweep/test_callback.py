"""`harness.sweep.callback.MlflowTrialCallback` driven directly with fake Tune trials (no Ray
runtime) on a real SQLite MLflow store, with the plan of search_spaces/smoke.yaml: one run per
planned trial with the contract's tags, params and config; each epoch once (repeats, backfills
after a restart, a new callback for the same trial); pruned, failed and errored endings; the node tag.

Creating an MLflow SQLite store takes seconds, so the session makes one (conftest's `smoke_store`,
with the sweep's parent run) and every test works on its own copy of that file in its `tmp_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.contract import Role, Tag
from harness.sweep.callback import MlflowTrialCallback
from harness.sweep.plan import SweepPlan, plan_sweep
from harness.sweep.protocol import BACKFILL_KEY, FAILURE_KEY, NODE_KEY, PlannedTrial
from harness.tracking import CONFIG_ARTIFACT

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"
EXPERIMENT = "smoke-digits"  # the space's name: the experiment and the first part of every harness.trial_id
KD_TRIAL = PlannedTrial("kd", Role.TRIAL, "0", {"student.width": 4, "snn.time_steps": 3, "kd.alpha": 0.3})
# What Tune adds to every result; none of it is a metric of the trial.
BOOKKEEPING = {
    "training_iteration": 1,
    "time_this_iter_s": 0.5,
    "time_total_s": 0.5,
    "timestamp": 1_700_000_000,
    "pid": 4242,
    "time_since_restore": 0.5,
    "iterations_since_restore": 1,
    "done": False,
    "checkpoint_dir_name": "checkpoint_000000",
}


@dataclass(frozen=True)
class Store:
    uri: str
    parent_run_id: str
    client: MlflowClient


@pytest.fixture(scope="module")
def smoke() -> SweepPlan:
    return plan_sweep(SMOKE)


@pytest.fixture
def store(smoke_store, tmp_path: Path) -> Store:
    uri, parent_run_id = smoke_store(tmp_path)
    return Store(uri, parent_run_id, MlflowClient(uri))


def fake_trial(
    planned: PlannedTrial, last_result: dict[str, Any] | None = None, error: Callable[[], Any] | None = None
) -> SimpleNamespace:
    """What the callback reads of a Tune trial."""
    return SimpleNamespace(
        trial_id="fake_00000",
        config=planned.to_tune(),
        last_result=last_result or {},
        get_pickled_error=lambda: None,
        get_error=error or (lambda: None),
    )


def callback(store: Store, plan: SweepPlan) -> MlflowTrialCallback:
    return MlflowTrialCallback(store.uri, EXPERIMENT, store.parent_run_id, plan)


def trial_runs(mlflow_runs: Callable[..., list[Any]], store: Store) -> list[Any]:
    """The experiment's runs besides the parent."""
    return [r for r in mlflow_runs(store.uri, EXPERIMENT) if r.info.run_id != store.parent_run_id]


def only_run(mlflow_runs: Callable[..., list[Any]], store: Store) -> Any:
    runs = trial_runs(mlflow_runs, store)
    assert len(runs) == 1, [r.data.tags.get(Tag.TRIAL_ID) for r in runs]
    return store.client.get_run(runs[0].info.run_id)


def history(store: Store, run_id: str, metric: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store.client.get_metric_history(run_id, metric))


def epoch_result(epoch: int, val: float, loss: float, **extra: Any) -> dict[str, Any]:
    metrics = {"epoch": epoch, "val_accuracy": val, "train_loss": loss}
    return {**BOOKKEEPING, "training_iteration": epoch, **metrics, **extra}


# --- opening the run -----------------------------------------------------------------------


def test_on_trial_start_creates_one_run_with_the_contracts_tags(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    tracker = callback(store, smoke)
    tracker.on_trial_start(0, [], fake_trial(KD_TRIAL))
    tracker.on_trial_start(1, [], fake_trial(KD_TRIAL))  # the same trial again: no second run
    run = only_run(mlflow_runs, store)
    tags = run.data.tags
    assert tags[Tag.TRIAL_ID] == "smoke-digits/trial/kd/0"
    assert tags[Tag.ROLE] == "trial"
    assert tags[Tag.METHOD] == "kd"
    assert tags[Tag.PARENT] == store.parent_run_id
    assert tags[Tag.SEARCHED] == "student.width,snn.time_steps,kd.alpha"
    assert tags[Tag.TEACHER]  # kd needs a teacher: its cache key
    assert run.info.run_name == "kd-trial-0"
    assert run.info.status == "RUNNING"


def test_a_kd_run_logs_its_sampled_values_and_the_sections_it_reads(store: Store, smoke: SweepPlan) -> None:
    tracker = callback(store, smoke)
    tracker.on_trial_start(0, [], fake_trial(KD_TRIAL))
    params = store.client.get_run(tracker.recorders["smoke-digits/trial/kd/0"].run_id).data.params
    assert (params["kd.alpha"], params["student.width"], params["snn.time_steps"]) == ("0.3", "4", "3")
    assert (params["method"], params["train.lr"], params["teacher.depth"]) == ("kd", "0.05", "8")
    assert {key.split(".")[0] for key in params} == {
        "method",
        "seed",
        "dataset",
        "teacher",
        "student",
        "snn",
        "encoding",
        "train",
        "eval",
        "kd",
    }


def test_a_direct_run_has_no_kd_or_teacher_params(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    planned = PlannedTrial("direct", Role.TRIAL, "1", {"student.width": 8, "snn.time_steps": 1})
    callback(store, smoke).on_trial_start(0, [], fake_trial(planned))
    run = only_run(mlflow_runs, store)
    assert not [key for key in run.data.params if key.startswith(("kd.", "teacher.", "conversion."))]
    assert (run.data.params["snn.time_steps"], run.data.params["method"]) == ("1", "direct")
    assert Tag.TEACHER not in run.data.tags
    assert run.data.tags[Tag.SEARCHED] == "student.width,snn.time_steps"


def test_a_conversion_run_has_conversion_params_and_no_snn_params(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    planned = PlannedTrial("conversion", Role.TRIAL, "2", {"student.width": 4, "conversion.levels": 4})
    callback(store, smoke).on_trial_start(0, [], fake_trial(planned))
    run = only_run(mlflow_runs, store)
    assert run.data.params["conversion.levels"] == "4"
    assert not [key for key in run.data.params if key.startswith(("snn.", "kd.", "teacher."))]
    assert run.data.tags[Tag.SEARCHED] == "student.width,conversion.levels"


def test_a_run_stores_its_resolved_config_as_config_yaml(store: Store, smoke: SweepPlan, tmp_path: Path) -> None:
    tracker = callback(store, smoke)
    tracker.on_trial_start(0, [], fake_trial(KD_TRIAL))
    run_id = tracker.recorders["smoke-digits/trial/kd/0"].run_id
    assert [a.path for a in store.client.list_artifacts(run_id)] == [CONFIG_ARTIFACT]
    config = yaml.safe_load(Path(store.client.download_artifacts(run_id, CONFIG_ARTIFACT, str(tmp_path))).read_text())
    assert config["method"] == "kd"
    assert (config["kd"]["alpha"], config["student"]["width"], config["snn"]["time_steps"]) == (0.3, 4, 3)
    assert config["train"]["epochs"] == 4


def test_a_final_run_has_role_final_and_no_searched_tag(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    planned = PlannedTrial("kd", Role.FINAL, "s1-T2", {"kd.alpha": 0.3, "snn.time_steps": 2, "seed": 1})
    callback(store, smoke).on_trial_start(0, [], fake_trial(planned))
    run = only_run(mlflow_runs, store)
    assert run.data.tags[Tag.ROLE] == "final"
    assert run.data.tags[Tag.TRIAL_ID] == "smoke-digits/final/kd/s1-T2"
    assert Tag.SEARCHED not in run.data.tags
    assert run.info.run_name == "kd-final-T2-s1"
    assert run.data.params["seed"] == "1"


# --- epochs --------------------------------------------------------------------------------


def test_on_trial_result_logs_epoch_metrics_at_step_epoch_without_tune_bookkeeping(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL)
    tracker.on_trial_start(0, [], trial)
    tracker.on_trial_result(1, [], trial, epoch_result(1, 0.4, 1.5))
    tracker.on_trial_result(2, [], trial, epoch_result(2, 0.6, 1.1))
    run = only_run(mlflow_runs, store)
    assert set(run.data.metrics) == {"val_accuracy", "train_loss"}
    assert history(store, run.info.run_id, "val_accuracy") == [(1, 0.4), (2, 0.6)]
    assert history(store, run.info.run_id, "train_loss") == [(1, 1.5), (2, 1.1)]


def test_a_repeated_epoch_is_not_logged_twice(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL)
    tracker.on_trial_result(1, [], trial, epoch_result(1, 0.4, 1.5))
    tracker.on_trial_result(2, [], trial, epoch_result(2, 0.6, 1.1))
    tracker.on_trial_result(3, [], trial, epoch_result(2, 0.9, 0.2))  # resumed from the epoch-1 checkpoint
    tracker.on_trial_result(4, [], trial, epoch_result(3, 0.7, 0.9))
    run = only_run(mlflow_runs, store)
    assert history(store, run.info.run_id, "val_accuracy") == [(1, 0.4), (2, 0.6), (3, 0.7)]


def test_a_nested_backfill_after_a_restarted_driver_logs_each_missing_epoch_once(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    first = callback(store, smoke)
    first.on_trial_result(1, [], fake_trial(KD_TRIAL), epoch_result(1, 0.4, 1.5))
    # The driver was killed while the trial ran on; the new driver's callback gets the trial's
    # saved epochs with its first result.
    backfill = {"1": {"val_accuracy": 0.9, "train_loss": 9.0}, "2": {"val_accuracy": 0.5, "train_loss": 1.3}}
    second = callback(store, smoke)
    second.on_trial_result(1, [], fake_trial(KD_TRIAL), epoch_result(3, 0.7, 0.9, **{BACKFILL_KEY: backfill}))
    run = only_run(mlflow_runs, store)
    assert history(store, run.info.run_id, "val_accuracy") == [(1, 0.4), (2, 0.5), (3, 0.7)]
    assert history(store, run.info.run_id, "train_loss") == [(1, 1.5), (2, 1.3), (3, 0.9)]
    assert set(run.data.metrics) == {"val_accuracy", "train_loss"}


def test_tunes_flattened_backfill_logs_the_earlier_epochs_once_each(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    flat = {
        f"{BACKFILL_KEY}/1/val_accuracy": 0.3,
        f"{BACKFILL_KEY}/1/train_loss": 2.0,
        f"{BACKFILL_KEY}/2/val_accuracy": 0.5,
        f"{BACKFILL_KEY}/2/train_loss": 1.4,
        f"{BACKFILL_KEY}/3/val_accuracy": 0.99,  # the current epoch itself: the result's own values win
    }
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL)
    tracker.on_trial_result(1, [], trial, epoch_result(3, 0.7, 0.9, **flat))
    tracker.on_trial_result(2, [], trial, epoch_result(4, 0.8, 0.5, **flat))  # sent again: nothing twice
    run = only_run(mlflow_runs, store)
    assert history(store, run.info.run_id, "val_accuracy") == [(1, 0.3), (2, 0.5), (3, 0.7), (4, 0.8)]
    assert history(store, run.info.run_id, "train_loss") == [(1, 2.0), (2, 1.4), (3, 0.9), (4, 0.5)]
    assert set(run.data.metrics) == {"val_accuracy", "train_loss"}


def test_a_new_callback_for_the_same_planned_trial_finds_its_run_again(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    first = callback(store, smoke)
    first.on_trial_start(0, [], fake_trial(KD_TRIAL))
    run_id = first.recorders["smoke-digits/trial/kd/0"].run_id
    restarted = callback(store, smoke)  # a restarted driver; Tune gave the trial a new id
    retried = fake_trial(KD_TRIAL)
    retried.trial_id = "fake_00007"
    restarted.on_trial_start(0, [], retried)
    restarted.on_trial_result(1, [], retried, epoch_result(1, 0.4, 1.5))
    run = only_run(mlflow_runs, store)
    assert run.info.run_id == run_id
    assert history(store, run_id, "val_accuracy") == [(1, 0.4)]


# --- endings -------------------------------------------------------------------------------


def test_a_trial_stopped_before_train_epochs_ends_finished_and_pruned(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    tracker = callback(store, smoke)  # smoke trains 4 epochs
    last = epoch_result(2, 0.5, 1.2)
    trial = fake_trial(KD_TRIAL, last_result=last)
    tracker.on_trial_result(2, [], trial, last)
    tracker.on_trial_complete(2, [], trial)
    run = only_run(mlflow_runs, store)
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tag.PRUNED] == "true"
    assert Tag.FAILURE_REASON not in run.data.tags


def test_a_trial_that_ran_every_epoch_ends_finished_and_not_pruned(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    last = epoch_result(4, 0.8, 0.4, test_accuracy=0.75)
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL, last_result=last)
    tracker.on_trial_result(4, [], trial, last)
    tracker.on_trial_complete(4, [], trial)
    run = only_run(mlflow_runs, store)
    assert run.info.status == "FINISHED"
    assert Tag.PRUNED not in run.data.tags
    assert run.data.metrics["test_accuracy"] == 0.75


def test_a_last_result_with_a_failure_reason_ends_failed_with_it(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    reason = "loss became NaN or infinite in epoch 2 (by batch 3); lower train.lr or check the data"
    last = {**epoch_result(2, float("-inf"), float("nan")), FAILURE_KEY: reason}
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL, last_result=last)
    tracker.on_trial_result(1, [], trial, epoch_result(1, 0.4, 1.5))
    tracker.on_trial_result(2, [], trial, last)  # the failing result is not an epoch
    tracker.on_trial_complete(2, [], trial)
    run = only_run(mlflow_runs, store)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.FAILURE_REASON] == reason
    assert Tag.PRUNED not in run.data.tags
    assert history(store, run.info.run_id, "val_accuracy") == [(1, 0.4)]


def test_an_errored_trial_ends_failed_with_the_last_line_of_its_error(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    text = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nRuntimeError: worker died\n'
    trial = fake_trial(KD_TRIAL, error=lambda: text)
    tracker = callback(store, smoke)
    tracker.on_trial_start(0, [], trial)
    tracker.on_trial_error(1, [], trial)
    run = only_run(mlflow_runs, store)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.FAILURE_REASON] == "RuntimeError: worker died"


def test_an_errored_trial_whose_pickled_error_is_an_exception_names_its_last_line(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    trial = fake_trial(KD_TRIAL)
    trial.get_pickled_error = lambda: RuntimeError("ray.exceptions.RayTaskError\nValueError: bad shape")
    callback(store, smoke).on_trial_error(1, [], trial)
    assert only_run(mlflow_runs, store).data.tags[Tag.FAILURE_REASON] == "ValueError: bad shape"


def test_an_errored_trial_whose_error_cannot_be_read_says_so(store: Store, smoke: SweepPlan, mlflow_runs) -> None:
    def gone() -> None:
        raise FileNotFoundError("error.pkl")

    trial = fake_trial(KD_TRIAL)
    trial.get_pickled_error = gone
    callback(store, smoke).on_trial_error(1, [], trial)
    run = only_run(mlflow_runs, store)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.FAILURE_REASON] == "trial errored; its error could not be read (error.pkl)"


def test_the_node_of_a_result_becomes_the_node_tag_and_follows_a_moved_trial(
    store: Store, smoke: SweepPlan, mlflow_runs
) -> None:
    tracker, trial = callback(store, smoke), fake_trial(KD_TRIAL)
    tracker.on_trial_result(1, [], trial, epoch_result(1, 0.4, 1.5, **{NODE_KEY: "node-a"}))
    assert only_run(mlflow_runs, store).data.tags[Tag.NODE] == "node-a"
    tracker.on_trial_result(2, [], trial, epoch_result(2, 0.5, 1.4, **{NODE_KEY: "node-b"}))  # retried elsewhere
    run = only_run(mlflow_runs, store)
    assert run.data.tags[Tag.NODE] == "node-b"
    assert NODE_KEY not in run.data.metrics
