"""What a sweep runs inside Ray workers: the Tune trainable and the teacher task.

A worker imports the module of the function it runs before its first line. This one imports
only torch and the plan (the trial imports the rest of the harness when it starts), not MLflow,
Optuna and Tune's search code: that saves each new trial actor and teacher worker about 3.5 s
(benchmarks/tune_startup.py). Each worker finds the methods, models, datasets and noises a
trial names through the installed entry points, as the driver does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.config import TrialConfig
from harness.errors import TrialFailed
from harness.sweep.plan import MethodPlan

if TYPE_CHECKING:
    from harness.methods import Method

CHECKPOINT_FILE = "trial_state.pt"
FAILURE_KEY = "harness_failure_reason"  # a trial's last result carries it when it failed
NODE_KEY = "harness_node_id"  # the Ray node that ran the epoch; becomes the run's tag `harness.node`
ROLE_KEY = "role"  # `trial` (search) or `final`; in every trial's config beside `method`


def trial_values(sampled: Mapping[str, Any]) -> dict[str, Any]:
    """A Tune trial's config without its role: `method` and the values that override the plan."""
    return {key: value for key, value in sampled.items() if key != ROLE_KEY}


def run_trial(
    sampled: dict[str, Any],
    *,
    plans: Mapping[str, MethodPlan],
    teacher_cache: str,
    threads: int,
    metric: str,
    mode: str,
) -> None:
    """The Tune trainable: one `train()` with a checkpoint per epoch, resumed from the last one.

    Args:
        sampled: the trial's config: `method`, `role` and the values that override the
            method's plan (sampled dims; seed and T for final runs).
        plans: per method, its plan.
    """
    import ray
    from ray import tune

    from harness.trial import train

    torch.set_num_threads(max(1, threads))
    node = ray.get_runtime_context().get_node_id()
    config = plans[sampled["method"]].trial_config(trial_values(sampled))
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def report(metrics: dict[str, float], epoch: int, method: Method) -> None:
        with tempfile.TemporaryDirectory() as folder:
            snapshot = {**method.state_dict(), "epoch": epoch, "train_seconds": metrics["train_seconds"]}
            torch.save(snapshot, Path(folder) / CHECKPOINT_FILE)
            tune.report({**metrics, "epoch": epoch, NODE_KEY: node}, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        train(config, report=report, teacher_cache=Path(teacher_cache), state=state, log=lambda _: None)
    except TrialFailed as exc:
        # Deterministic (a NaN loss): end the trial with its reason instead of raising, which
        # would make Tune retry it. The objective gets the worst value so the search moves on.
        tune.report({metric: float("-inf") if mode == "max" else float("inf"), FAILURE_KEY: str(exc)})


def train_teacher_task(config: dict[str, Any], teacher_cache: str) -> str:
    """The Ray task of the teacher stage: trains (or finds) the teacher of `config` in the cache.

    Returns:
        The teacher's cache key.
    """
    from harness.methods import TrialContext
    from harness.teacher import load_or_train_teacher
    from harness.trial import load_trial_data, resolve_device

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    trial = TrialConfig.of(config)
    device = resolve_device(trial.train.device)
    data = load_trial_data(trial, device)
    record = load_or_train_teacher(TrialContext(trial, data, device, Path(teacher_cache), lambda _: None))
    return record.key
