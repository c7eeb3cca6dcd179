"""Driver-side MLflow logging of a sweep: one child run per Tune trial, through `harness.contract`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune

from harness import contract
from harness.config import TrialConfig
from harness.contract import Role, Tag
from harness.progress import write
from harness.sweep.plan import MethodPlan
from harness.sweep.workers import (
    BACKFILL_KEY,
    EPOCH_KEY,
    FAILURE_KEY,
    NODE_KEY,
    PROVENANCE_KEY,
    ROLE_KEY,
    RUN_KEY,
    trial_values,
)
from harness.teacher import teacher_identity
from harness.tracking import TrackedRun


class MlflowTrialCallback(tune.Callback):
    """One child run per planned trial, keyed by its identity (`harness.trial_id`).

    The identity is `<sweep>/<role>/<method>/<run>` (`run`: the search index, or the seed and T
    of a final run), not Tune's trial id, so a trial that is retried, resumed, or re-issued
    after a crash (as a new Tune trial) finds its run again, even one a killed driver left
    RUNNING, and goes on logging into it: every planned trial has exactly one run, and an
    epoch already logged is not logged twice. Trials stopped early by the scheduler end
    FINISHED with `harness.pruned=true`; errored trials end FAILED with the reason in
    `harness.failure_reason`. Method and role come from each trial's config.
    """

    def __init__(
        self, tracking_uri: str, experiment: str, parent_run_id: str, sweep_id: str, plans: Mapping[str, MethodPlan]
    ) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.parent_run_id, self.sweep_id = parent_run_id, sweep_id
        self.plans = dict(plans)
        self.runs: dict[str, TrackedRun] = {}
        self.logged: dict[str, int] = {}  # run key -> the last epoch it holds
        self.nodes: dict[str, str] = {}  # run key -> the Ray node id last tagged

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment (for Tuner.restore); clients stay behind.
        return {**self.__dict__, "runs": {}, "logged": {}}

    def trial_key(self, method: str, role: str, run: str) -> str:
        """The tag `harness.trial_id`: stable across retries, resumes and re-issued trials."""
        return f"{self.sweep_id}/{role}/{method}/{run}"

    @staticmethod
    def _identity(trial: Any) -> tuple[str, Role]:
        return trial.config["method"], Role(trial.config[ROLE_KEY])

    def _describe(self, trial: Any) -> str:
        method, role = self._identity(trial)
        return f"{role} {method} {trial.config[RUN_KEY]}"

    def _config(self, trial: Any) -> TrialConfig:
        return self.plans[trial.config["method"]].trial_config(trial_values(trial.config))

    def run_name(self, trial: Any) -> str:
        """`kd-trial-<id>` for search trials, `kd-final-T4-s1` for final runs (T and seed in the name,
        so the UI's run list reads as the report's rows)."""
        method, role = self._identity(trial)
        if role != Role.FINAL:
            return f"{method}-{role}-{trial.config[RUN_KEY]}"
        config = self._config(trial)
        steps = f"-T{config.snn.time_steps}" if self.plans[method].capabilities.trains_at_time_steps else ""
        return f"{method}-final{steps}-s{config.seed}"

    def _key(self, trial: Any) -> str:
        method, role = self._identity(trial)
        return self.trial_key(method, role, trial.config[RUN_KEY])

    def _run(self, trial: Any) -> TrackedRun:
        method, role = self._identity(trial)
        key = self._key(trial)
        if key not in self.runs:
            plan, config = self.plans[method], self._config(trial)
            tags = contract.run_tags(
                role, method, key, plan.capabilities, parent_run_id=self.parent_run_id, teacher=teacher_identity(config)
            )
            if role == Role.TRIAL:
                tags[Tag.SEARCHED] = ",".join(plan.dims)  # compare views group by it
            run = TrackedRun.find_or_create(self.tracking_uri, self.experiment, self.run_name(trial), tags)
            run.log_config(config.params(), config.model_dump(mode="json"))
            self.logged[key] = run.last_step(contract.VAL_ACCURACY)
            self.runs[key] = run
        return self.runs[key]

    def tag_trial(self, method: str, run: str, tags: Mapping[str, str]) -> None:
        """Adds tags to the run of search trial `run` (its index) of `method` (found by `harness.trial_id`)."""
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        key = self.trial_key(method, Role.TRIAL, run)
        for run in client.search_runs([experiment.experiment_id], f"tags.`{Tag.TRIAL_ID}` = '{key}'"):
            for name, value in tags.items():
                client.set_tag(run.info.run_id, name, value)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **_: Any) -> None:
        if FAILURE_KEY in result:
            return
        epoch = int(result.get(EPOCH_KEY, 0))
        run, key = self._run(trial), self._key(trial)
        if isinstance(result.get(PROVENANCE_KEY), str):  # where the trial (re)started: device, data digests
            run.log_provenance(json.loads(result[PROVENANCE_KEY]))
        earlier = {int(step): metrics for step, metrics in backfilled(result).items()}
        for step in sorted(earlier):  # epochs a killed driver never logged, from the trial's checkpoint
            if self.logged.get(key, 0) < step < epoch:
                run.log_metrics({k: v for k, v in earlier[step].items() if _is_harness_metric(k, v)}, step=step)
                self.logged[key] = step
        if epoch > self.logged.get(key, 0):  # a resumed trial may report an epoch its run holds already
            run.log_metrics({k: v for k, v in result.items() if _is_harness_metric(k, v)}, step=epoch)
            self.logged[key] = epoch
        node = result.get(NODE_KEY)
        if node is not None and self.nodes.get(key) != node:  # a retried trial may move
            run.set_tags({Tag.NODE: str(node)})
            self.nodes[key] = node

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        run = self._run(trial)
        last = trial.last_result or {}
        if FAILURE_KEY in last:
            run.finish("FAILED", last[FAILURE_KEY])
            _progress(f"{self._describe(trial)}: FAILED: {last[FAILURE_KEY]}")
            return
        epoch = int(last.get(EPOCH_KEY, 0))
        pruned = epoch < self.plans[trial.config["method"]].config.train.epochs
        if pruned:
            run.set_tags({Tag.PRUNED: contract.TRUE})
        run.finish("FINISHED")
        test = last.get(contract.TEST_ACCURACY, float("nan"))
        outcome = f"pruned after epoch {epoch}" if pruned else f"test_accuracy {test:.4f}"
        _progress(
            f"{self._describe(trial)}: val_accuracy {last.get(contract.VAL_ACCURACY, float('nan')):.4f}, {outcome}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        reason = _error_reason(trial)
        self._run(trial).finish("FAILED", reason)
        _progress(f"{self._describe(trial)}: FAILED: {reason}")


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


def _is_harness_metric(key: str, value: Any) -> bool:
    """Tune adds bookkeeping (`time_this_iter_s`, `pid`, ...); keep what the trial reported."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and key not in _BOOKKEEPING
        and not key.startswith((BACKFILL_KEY, PROVENANCE_KEY))
    )


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
