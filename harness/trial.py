"""`train(config) -> metrics`: one trial, the same function standalone, under Ray Tune and in tests.

The trial knows nothing about MLflow or Ray: it hands every metric to a `report` callable
(`harness train` logs them to MLflow; a Tune trainable forwards them to `tune.report`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch

from harness import contract
from harness.attacks.evaluate import attack_evaluation
from harness.config.sections import TrialConfig
from harness.data import DataSplits, load_splits
from harness.efficiency import count_ops
from harness.methods import Method, TrialContext, create_method
from harness.models import count_parameters
from harness.predictions import LABELS
from harness.provenance import device_name, environment_tags
from harness.training import accuracy, batch_hook, cumulative_accuracy, noise_accuracies, precision, predict_steps

Report = Callable[[dict[str, float], int, Method], None]
"""Receives each epoch's metrics, the epoch number and the method (for checkpoints); the
last epoch's metrics also carry the final evaluation."""

BatchProgress = Callable[[int, int, int], None]
"""Receives (epoch, batches done in it, batches in it) after every training step."""

DEFAULT_TEACHER_CACHE = Path("runs") / "teacher_cache"


def _ignore(metrics: dict[str, float], epoch: int, method: Method) -> None:
    del metrics, epoch, method


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_trial_data(config: TrialConfig, device: torch.device) -> DataSplits:
    """The splits of `dataset.*`, as tensors on `device` (an event set binned into the trial's
    `snn.time_steps` frames)."""
    return load_splits(config.dataset, device, time_bins=config.snn.time_steps)


def provenance(config: TrialConfig, data: DataSplits, device: torch.device) -> dict[str, Any]:
    """Where the trial runs (the harness's source, the libraries' versions, the device, as tags)
    and the digests of the splits it reads: JSON values, for the run's reproducibility record."""
    splits = {"train": data.train_x, "val": data.val_x, "test": data.test_x}
    return {
        "tags": environment_tags() | {contract.Tag.DEVICE.value: device_name(device)},
        "data": {
            part: {
                "name": f"{data.name}/{part}",
                "digest": data.digests[part],
                "samples": len(x),
                "shape": list(x.shape[1:]),
                "source": config.dataset.model_dump(mode="json"),
                "loader": data.loader,  # what `dataset.loader: auto` decided
                # The input normalisation every encoder applies: the training split's statistics.
                **({"mean": list(data.mean), "std": list(data.std)} if part == "train" else {}),
            }
            for part, x in splits.items()
        },
    }


def seed_everything(seed: int) -> None:
    """Seeds torch (CPU and CUDA); data order and augmentation use their own generators."""
    torch.manual_seed(seed)


def train(
    config: TrialConfig,
    *,
    report: Report = _ignore,
    teacher_cache: Path | None = None,
    log: Callable[[str], None] = _stderr,
    state: dict[str, Any] | None = None,
    on_batch: BatchProgress | None = None,
    describe: Callable[[dict[str, Any]], None] | None = None,
    on_predictions: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, float]:
    """Runs one trial end to end: setup, `train.epochs` epochs, final evaluation.

    Args:
        config: The resolved trial config.
        report: Called after every epoch with `train_loss` and `val_accuracy`; the last
            epoch's call also carries the final metrics (a scheduler may stop the trial at
            any report, so the final evaluation cannot wait for a later one).
        teacher_cache: Folder of the teacher cache (default `$HARNESS_TEACHER_CACHE` or
            `runs/teacher_cache`).
        log: Progress messages.
        state: A method `state_dict()` plus `epoch`, to resume after that epoch.
        on_batch: Progress display: called after every training step of the trial's epochs
            (not of a teacher trained during setup); it sees counts only, so results are the
            same with or without it.
        describe: Called once, before training, with what the reproducibility record needs
            from where the trial runs (`provenance(config, data, device)`).
        on_predictions: Called once, after the final evaluation and before the last epoch's
            `report`, with the per-image test predictions (`final_evaluation`'s `predictions`),
            for the run's predictions artifact (`harness.predictions`).

    Returns:
        The final metrics (the names of docs/ARCHITECTURE.md, "The MLflow contract"), accuracies as fractions.

    Raises:
        TrialFailed: the loss became NaN or infinite.
        HarnessInputError: the dataset's files are missing.
    """
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.seed)
    device = resolve_device(config.train.device)
    data = load_trial_data(config, device)
    if describe is not None:
        describe(provenance(config, data, device))
    cache = Path(teacher_cache or os.environ.get("HARNESS_TEACHER_CACHE", DEFAULT_TEACHER_CACHE))
    ctx = TrialContext(config=config, data=data, device=device, teacher_cache=cache, log=log)
    with precision(config.train.precision, device):
        method = create_method(config.method, ctx)
        first_epoch = 1
        if state is not None:
            method.load_state_dict(state)
            first_epoch = int(state["epoch"]) + 1
            log(f"{config.method}: resumed after epoch {first_epoch - 1}")
        train_seconds = float(state.get("train_seconds", 0.0)) if state else 0.0
        return _epochs(method, data, config, first_epoch, train_seconds, report, log, on_batch, on_predictions)


def _epochs(
    method: Method,
    data: DataSplits,
    config: TrialConfig,
    first_epoch: int,
    train_seconds: float,
    report: Report,
    log: Callable[[str], None],
    on_batch: BatchProgress | None,
    on_predictions: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, float]:
    """Epochs `first_epoch`.. of `train.epochs`, each reported; the last one adds the final evaluation."""
    metrics: dict[str, float] = {}
    for epoch in range(first_epoch, config.train.epochs + 1):
        started = time.perf_counter()
        with nullcontext() if on_batch is None else batch_hook(partial(on_batch, epoch)):
            metrics = method.train_one_epoch(epoch)
        train_seconds += time.perf_counter() - started
        if epoch == config.train.epochs:  # the last epoch's validation also counts what the network costs
            metrics |= validate_with_costs(method, data, config)
        else:
            metrics[contract.VAL_ACCURACY] = validate(method, data, config)
        metrics[contract.TRAIN_SECONDS] = train_seconds
        log(
            f"{config.method} epoch {epoch}/{config.train.epochs}  loss {metrics[contract.TRAIN_LOSS]:.4f}  "
            f"val_accuracy {metrics[contract.VAL_ACCURACY]:.4f}  ({time.perf_counter() - started:.1f}s)"
        )
        if epoch == config.train.epochs:
            predictions: dict[str, torch.Tensor] = {}
            metrics |= final_evaluation(method, data, config, predictions) | method.extra_metrics()
            if on_predictions is not None:
                on_predictions(predictions)
        report(metrics, epoch, method)
    return metrics


def eval_batch(config: TrialConfig, time_steps: int) -> int:
    """Images per evaluation forward: `train.eval_batch_size` up to T = 4, scaled down beyond
    so that activation memory (proportional to T x batch) stays flat for long runs."""
    return max(1, config.train.eval_batch_size * 4 // max(4, time_steps))


def validate(method: Method, data: DataSplits, config: TrialConfig) -> float:
    """Validation accuracy of the method's network at its evaluation T."""
    t = method.eval_time_steps
    return accuracy(method.network(), data.val_x, data.val_y, time_steps=t, batch_size=eval_batch(config, t))


def validate_with_costs(method: Method, data: DataSplits, config: TrialConfig) -> dict[str, float]:
    """`val_accuracy` and the efficiency figures counted on the validation split at the method's
    T (`val/energy_uj`, `val/synops`, ...: `contract.COST_METRICS`), from the same op counting
    as the test figures: what a search may optimise without seeing test data."""
    net = method.network()
    t = method.eval_time_steps
    with count_ops(net, t) as counts:

        def before_batch(size: int) -> None:
            counts.batch = size
            counts.samples += size

        steps = predict_steps(
            net, data.val_x, time_steps=t, batch_size=eval_batch(config, t), before_batch=before_batch
        )
    accuracy_at_t = cumulative_accuracy(steps, data.val_y)[t - 1].item()
    summary = counts.summary(t)
    costs = {contract.val_cost_metric(name): summary[name] for name in contract.COST_METRICS if name in summary}
    return {contract.VAL_ACCURACY: accuracy_at_t, **costs}


def noise_evaluation(
    method: Method, data: DataSplits, config: TrialConfig, predictions: dict[str, torch.Tensor] | None = None
) -> dict[str, float]:
    """`noise/<type>/<level>` of every level of `eval.noise`, at the method's T: the part of
    `final_evaluation` that `harness evaluate` runs when only noise levels are added. Each
    level's per-image predicted classes go into `predictions` (if given) under its metric name."""
    t_eval = method.eval_time_steps
    return noise_accuracies(
        method.network(),
        data.test_x,
        data.test_y,
        config.eval.noise,
        prefix=contract.NOISE,
        time_steps=t_eval,
        batch_size=eval_batch(config, t_eval),
        corruption=data.corruption,
        predictions=predictions,
    )


def final_evaluation(
    method: Method, data: DataSplits, config: TrialConfig, predictions: dict[str, torch.Tensor] | None = None
) -> dict[str, float]:
    """Test accuracy, time-step curve, efficiency and noise robustness of the trained network.

    The clean test set runs once at T_max = max(eval T, `eval.time_steps`): its cumulative
    output gives `test_accuracy` at the method's T and, for a method whose curve comes from one
    run (`Capabilities.curve_from_one_run`), every `timestep/<T>`; the op counts of its first T
    steps give the efficiency figures at the method's T. Otherwise each T of the curve is one more
    run at that T. Each noise level is one more run at the method's T, and so is each attack and
    eps of `eval.attacks` (`harness.attacks.evaluate`: `attack/<name>/<eps>`), measured last.

    `predictions`, if given, receives the class predicted for every test image (CPU tensors
    `[N]`) under each accuracy's metric name (`test_accuracy`, `noise/<type>/<level>`,
    `attack/<name>/<eps>`), and the
    labels under `harness.predictions.LABELS`: what the run's predictions artifact stores.
    """
    net = method.network()
    t_eval = method.eval_time_steps
    one_run = method.capabilities.curve_from_one_run
    t_max = max(t_eval, *config.eval.time_steps) if one_run else t_eval
    with count_ops(net, t_max) as counts:

        def before_batch(size: int) -> None:
            counts.batch = size
            counts.samples += size

        steps = predict_steps(
            net, data.test_x, time_steps=t_max, batch_size=eval_batch(config, t_max), before_batch=before_batch
        )
    curve = cumulative_accuracy(steps, data.test_y)
    if predictions is not None:
        predictions[LABELS] = data.test_y.cpu()
        predictions[contract.TEST_ACCURACY] = steps[:t_eval].sum(dim=0).argmax(dim=-1).cpu()
    metrics = {contract.TEST_ACCURACY: curve[t_eval - 1].item(), contract.PARAMS: float(count_parameters(net))}
    for t in config.eval.time_steps:
        metrics[contract.timestep_metric(t)] = (
            curve[t - 1].item()
            if one_run
            else accuracy(net, data.test_x, data.test_y, time_steps=t, batch_size=eval_batch(config, t))
        )
    metrics |= counts.summary(t_eval)
    metrics |= noise_evaluation(method, data, config, predictions)
    return metrics | attack_evaluation(method, data, config, predictions)  # attack/<name>/<eps>, last
