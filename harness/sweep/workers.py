"""What a sweep runs inside Ray workers: the Tune trainable and the teacher task.

A worker imports the module of the function it runs before its first line. This one imports
only torch, the plan and the protocol (the trial imports the rest of the harness when it
starts), not MLflow,
Optuna and Tune's search code: that saves each new trial actor and teacher worker about 3.5 s
(benchmarks/tune_startup.py). Each worker finds the methods, models, datasets and noises a
trial names through the installed entry points, as the driver does.

A trial keeps its own checkpoints, one per epoch under `<checkpoints>/<role>/<method>/<run>`,
named by the trial's identity in the plan (its search index, or the seed and T of a final run)
rather than by Tune's trial id, and written whole or not at all. However a trial restarts (a
worker died and Tune retried it, or the driver died and `--resume` re-issued it, possibly as a
new Tune trial), it continues from the newest checkpoint that still loads, or from scratch; a
trial whose last epoch is saved only reports its result again. The checkpoint holds every
epoch's metrics too, and the first result after a restart carries them (`BACKFILL_KEY`), so
the MLflow callback can log the epochs whose report died with a killed driver. What a trial is
and what its results carry is `harness.sweep.protocol`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.config.resolve import build_trial_config
from harness.errors import HarnessInputError, TrialFailed
from harness.files import write_atomically, write_text_atomically
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

if TYPE_CHECKING:
    from harness.methods import Method


class TrialCheckpoints:
    """One trial's checkpoints, `epoch-<N>.pt` in `folder`; the newest two are kept (one once done).
    A finished trial's test predictions lie beside them (`PREDICTIONS_FILE`), written before its
    last checkpoint, so a trial whose last checkpoint exists has them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob("epoch-*.pt"):
            try:
                found.append((int(path.stem.removeprefix("epoch-")), path))
            except ValueError:
                continue
        return sorted(found)

    def latest(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The newest checkpoint that loads and was written for `config` (the resolved config in
        its JSON form), or None. A damaged checkpoint is skipped; so is one of another config,
        which is not this trial's whatever its folder says."""
        for _, path in reversed(self._files()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - unreadable for any reason: fall back to the one before
                continue
            if state.get("config") == config:
                return state
        return None

    def save(self, state: Mapping[str, Any], epoch: int, done: bool) -> None:
        """Writes epoch `epoch` whole (a temporary file renamed), then drops older epochs."""
        path = self.folder / f"epoch-{epoch}.pt"
        write_atomically(path, lambda scratch: torch.save(dict(state), scratch))
        keep = 1 if done else 2
        for _, old in self._files()[:-keep]:
            old.unlink(missing_ok=True)

    def save_predictions(self, predictions: dict[str, Any]) -> None:
        """Writes the final evaluation's per-image predictions whole (`harness.predictions`)."""
        from harness.predictions import LABELS, encode_predictions

        predicted = {key: value for key, value in predictions.items() if key != LABELS}
        data = encode_predictions(predictions[LABELS], predicted)
        write_atomically(self.folder / PREDICTIONS_FILE, lambda scratch: Path(scratch).write_bytes(data))


def run_trial(
    sampled: dict[str, Any],
    *,
    plan: SweepPlan,
    teacher_cache: str,
    checkpoints: str,
    threads: int,
    metric: str,
    mode: str,
) -> None:
    """The Tune trainable: one `train()` with a checkpoint per epoch, resumed from the newest one.

    Args:
        sampled: the trial's Tune config: a `PlannedTrial` (`to_tune`).
        plan: the sweep's plan, which the planned trial resolves against.
        checkpoints: the sweep's checkpoint folder (every node must reach it).
    """
    import ray
    from ray import tune

    from harness.trial import train

    torch.set_num_threads(max(1, threads))
    node = ray.get_runtime_context().get_node_id()
    planned = PlannedTrial.from_tune(sampled)
    config = planned.resolve(plan)
    resolved = config.model_dump(mode="json")  # into every checkpoint, and checked on resume
    saved = TrialCheckpoints(Path(checkpoints) / planned.identity)
    state = saved.latest(resolved)
    history: dict[str, dict[str, float]] = {} if state is None else dict(state.get("history") or {})
    backfill = dict(history)  # what a restarted trial hands the driver again, once
    if state is not None and state.get("final") is not None:  # it ended; its driver did not hear
        tune.report({**state["final"], EPOCH_KEY: state["epoch"], NODE_KEY: node, BACKFILL_KEY: backfill})
        return
    last_epoch = 0 if state is None else int(state["epoch"])
    described: dict[str, str] = {}

    def describe(provenance: dict[str, Any]) -> None:
        described[PROVENANCE_KEY] = json.dumps(provenance)

    def report(metrics: dict[str, float], epoch: int, method: Method) -> None:
        nonlocal last_epoch, backfill
        done = epoch == config.train.epochs
        history[str(epoch)] = dict(metrics)
        snapshot = {**method.state_dict(), "epoch": epoch, "train_seconds": metrics["train_seconds"]}
        saved.save(
            {**snapshot, "config": resolved, "history": history, "final": dict(metrics) if done else None}, epoch, done
        )
        last_epoch = epoch
        extra = ({BACKFILL_KEY: backfill} if backfill else {}) | described
        backfill = {}
        described.clear()
        tune.report({**metrics, EPOCH_KEY: epoch, NODE_KEY: node, **extra})

    try:
        train(
            config,
            report=report,
            teacher_cache=Path(teacher_cache),
            state=state,
            log=lambda _: None,
            describe=describe,
            on_predictions=saved.save_predictions,
        )
    except (TrialFailed, HarnessInputError) as exc:
        # Deterministic (a NaN loss, a plugin that returns the wrong thing, a damaged cached
        # teacher): end the trial with its reason instead of raising, which would make Tune
        # retry it. The objective gets the worst value so the search moves on.
        worst = float("-inf") if mode == "max" else float("inf")
        tune.report({metric: worst, EPOCH_KEY: last_epoch + 1, FAILURE_KEY: str(exc)})


def train_teacher_task(config: dict[str, Any], teacher_cache: str) -> tuple[str, float, float]:
    """The Ray task that trains (or finds) the teacher of `config` in the cache.

    Returns:
        The teacher's cache key, and when the task started and ended (`time.time()`).
    """
    started = time.time()
    from harness.methods import TrialContext
    from harness.teacher import TEACHER_FAILED, load_or_train_teacher, teacher_key_of
    from harness.trial import load_trial_data, resolve_device

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    trial = build_trial_config(config)
    try:
        device = resolve_device(trial.train.device)
        data = load_trial_data(trial, device)
        record = load_or_train_teacher(TrialContext(trial, data, device, Path(teacher_cache), lambda _: None))
    except Exception as exc:
        failed = Path(teacher_cache) / teacher_key_of(trial) / TEACHER_FAILED
        write_text_atomically(failed, f"{type(exc).__name__}: {exc}\n")
        raise
    return record.key, started, time.time()
