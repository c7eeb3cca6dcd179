"""Driver-side MLflow logging of a sweep: one child run per planned trial, through `harness.tracking.TrialRecorder`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from ray import tune

from harness import contract
from harness.config.sections import TrialConfig
from harness.contract import Role, Tag
from harness.progress import write
from harness.run_spec import run_spec
from harness.sweep.front import front_point_of
from harness.sweep.plan import SweepPlan
from harness.sweep.protocol import (
    BACKFILL_KEY,
    EPOCH_KEY,
    FAILURE_KEY,
    NODE_KEY,
    PREDICTIONS_FILE,
    PROVENANCE_KEY,
    PlannedTrial,
)
from harness.tracking import TrialRecorder


class MlflowTrialCallback(tune.Callback):
    """One child run per planned trial, keyed by its identity (`harness.trial_id`).

    The identity is `<sweep>/<role>/<method>/<run>` (`PlannedTrial.trial_id`), not Tune's
    trial id, so a trial that is retried, resumed, or re-issued after a crash (as a new Tune
    trial) finds its run again, even one a killed driver left RUNNING, and goes on logging
    into it: every planned trial has exactly one run, and an epoch already logged is not
    logged twice. Trials stopped early by the scheduler end FINISHED with
    `harness.pruned=true`; errored trials end FAILED with the reason in
    `harness.failure_reason`. Each trial's config is resolved once, when its run opens. A trial
    that trains to its last epoch logs its last checkpoint (under `checkpoints`, by identity) as
    the run's network (`harness.evaluation`) and links the file (`harness.checkpoint`).
    """

    def __init__(
        self, tracking_uri: str, experiment: str, parent_run_id: str, plan: SweepPlan, checkpoints: Path | None = None
    ) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.parent_run_id = parent_run_id
        self.plan = plan
        self.checkpoints = checkpoints
        self.recorders: dict[str, TrialRecorder] = {}  # trial id -> its run's recorder
        self.configs: dict[str, TrialConfig] = {}  # trial id -> its resolved config
        self.nodes: dict[str, str] = {}  # trial id -> the Ray node id last tagged

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment (for Tuner.restore); clients stay behind.
        return {**self.__dict__, "recorders": {}, "configs": {}}

    @property
    def sweep_id(self) -> str:
        """The sweep's name, the first part of every `harness.trial_id`."""
        return self.plan.space.name

    def _planned(self, trial: Any) -> PlannedTrial:
        return PlannedTrial.from_tune(trial.config)

    def _recorder(self, trial: Any) -> tuple[TrialRecorder, str]:
        planned = self._planned(trial)
        key = planned.trial_id(self.sweep_id)
        if key not in self.recorders:
            config = self.configs[key] = planned.resolve(self.plan)
            searched = {Tag.SEARCHED: ",".join(self.plan.of(planned.method).dims)} if planned.role == Role.TRIAL else {}
            if planned.role == Role.FRONT:  # the report groups a front point's seeds by it
                searched = {Tag.FRONT_POINT: front_point_of(planned.run)}
            spec = run_spec(
                config,
                planned.role,
                key,
                run=planned.run,
                parent_run_id=self.parent_run_id,
                extra_tags=searched,  # compare views group by it
            )
            self.recorders[key] = TrialRecorder(self.tracking_uri, self.experiment, spec)
        return self.recorders[key], key

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self._recorder(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **_: Any) -> None:
        if FAILURE_KEY in result:
            return
        epoch = int(result.get(EPOCH_KEY, 0))
        recorder, key = self._recorder(trial)
        if isinstance(result.get(PROVENANCE_KEY), str):  # where the trial (re)started: device, data digests
            recorder.log_provenance(json.loads(result[PROVENANCE_KEY]))
        earlier = {int(step): metrics for step, metrics in backfilled(result).items()}
        for step in sorted(earlier):  # epochs a killed driver never logged, from the trial's checkpoint
            if step < epoch:
                recorder.log_epoch(harness_metrics(earlier[step]), step)
        recorder.log_epoch(harness_metrics(result), epoch)  # a resumed trial may report an epoch its run holds
        node = result.get(NODE_KEY)
        if node is not None and self.nodes.get(key) != node:  # a retried trial may move
            recorder.set_tags({Tag.NODE: str(node)})
            self.nodes[key] = node

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        recorder, key = self._recorder(trial)
        planned = self._planned(trial)
        last = trial.last_result or {}
        if FAILURE_KEY in last:
            recorder.finish("FAILED", last[FAILURE_KEY])
            _progress(f"{planned.label()}: FAILED: {last[FAILURE_KEY]}")
            return
        epoch = int(last.get(EPOCH_KEY, 0))
        pruned = epoch < self.configs[key].train.epochs
        if pruned:
            recorder.set_tags({Tag.PRUNED: contract.TRUE})
        else:
            self._log_network(recorder, planned, epoch)
        recorder.finish("FINISHED")
        test = last.get(contract.TEST_ACCURACY, float("nan"))
        outcome = f"pruned after epoch {epoch}" if pruned else f"test_accuracy {test:.4f}"
        _progress(f"{planned.label()}: val_accuracy {last.get(contract.VAL_ACCURACY, float('nan')):.4f}, {outcome}")

    def _log_network(self, recorder: TrialRecorder, planned: PlannedTrial, epoch: int) -> None:
        """The trial's last checkpoint as its run's network, and a tag linking the file."""
        if self.checkpoints is None:
            return
        path = self.checkpoints / planned.identity / f"epoch-{epoch}.pt"
        if not path.exists():
            return
        recorder.set_tags({Tag.CHECKPOINT: str(path.resolve())})
        predictions = path.parent / PREDICTIONS_FILE
        try:
            recorder.log_network_file(path)
            if predictions.exists():
                recorder.log_predictions_file(predictions)
        except (MlflowException, OSError) as exc:  # an artifact store it cannot write: the sweep goes on
            _progress(f"{planned.label()}: its network was not logged ({type(exc).__name__}: {exc}); see {path}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        reason = _error_reason(trial)
        recorder, _ = self._recorder(trial)
        recorder.finish("FAILED", reason)
        _progress(f"{self._planned(trial).label()}: FAILED: {reason}")


def _progress(message: str) -> None:
    write(message)  # above the progress bars on a terminal


_BOOKKEEPING = frozenset(
    {
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "pid",
        "time_since_restore",
        "iterations_since_restore",
        "done",
        "epoch",
        "checkpoint_dir_name",
    }
)


def harness_metrics(result: dict[str, Any]) -> dict[str, float]:
    """What the trial reported, without Tune's bookkeeping (`time_this_iter_s`, `pid`, ...)."""
    return {
        key: value
        for key, value in result.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and key not in _BOOKKEEPING
        and not key.startswith((BACKFILL_KEY, PROVENANCE_KEY))
    }


def backfilled(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The `{epoch: metrics}` a restarted trial re-sent (nested, or flattened by Tune as `harness_backfill/3/...`)."""
    nested = result.get(BACKFILL_KEY)
    if isinstance(nested, dict):
        return nested
    out: dict[str, dict[str, float]] = {}
    for name, value in result.items():
        if name.startswith(BACKFILL_KEY + "/"):
            step, _, metric = name.removeprefix(BACKFILL_KEY + "/").partition("/")
            out.setdefault(step, {})[metric] = value
    return out


def _error_reason(trial: Any) -> str:
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception as exc:  # the error file may be gone on a remote node: say so
        return f"trial errored; its error could not be read ({exc})"
    text = str(error).strip().splitlines()
    return text[-1] if text else "trial errored"
