"""Re-evaluation without retraining: a run's logged network, measured again under other `eval.*`.

Every finished trial logs what it trained as the artifact `model/checkpoint.pt` of its MLflow
run (`NETWORK_ARTIFACT`): the method's `state_dict()` (its networks, adapters and optimiser
state, as a sweep's checkpoint holds them) beside the resolved config, written with `torch.save`
and read back with `torch.load(..., weights_only=True)`. Not an MLflow logged model: that would
pickle the network's classes (a plugin's included) and load them by unpickling; a state dict
and the config rebuild the same network through the registries, and loading it runs nothing.

`evaluate_run` rebuilds the trial's method from that config with `eval.*` changed (`--set
eval.noise.gaussian=[0.3]`, `--set eval.time_steps=[1,2,4,8,16]`; any other key would need
retraining and is refused), loads the weights, measures the noise levels the run has no metric
of (and, when `eval.time_steps` or `eval.reference_time_steps` change, the whole final
evaluation: clean accuracy, T curve, op counts) and logs the metrics to the same run, so the
report's tables pick the new columns up. The run's params keep what it
trained with (MLflow params are immutable); the tag `harness.evaluated` records the `eval.*` of
the latest re-evaluation. A method that needs a teacher gets it from the teacher cache (its
test metrics are part of the evaluation).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from harness.config.dotted import KeyClash, flatten, unflatten
from harness.config.resolve import Origin, build_trial_config, one_line
from harness.config.sections import TrialConfig
from harness.contract import NOISE, PREDICTIONS_ARTIFACT, Tag, attack_metric, noise_metric
from harness.errors import HarnessInputError
from harness.tracking import NETWORK_ARTIFACT


def network_payload(method: Any, config: TrialConfig, epoch: int) -> dict[str, Any]:
    """What a finished trial logs of its method: the layout of a sweep's trial checkpoint."""
    return {**method.state_dict(), "epoch": epoch, "config": config.model_dump(mode="json")}


def evaluation_config(saved: Mapping[str, Any], overrides: Iterable[tuple[str, Any]]) -> TrialConfig:
    """The saved resolved config with `eval.*` overrides.

    Raises:
        HarnessInputError: an override outside `eval.*`, or one the config refuses (naming
            `--set KEY`).
    """
    flat = flatten(dict(saved))
    pairs = list(overrides)
    for key, _ in pairs:
        if not key.startswith("eval."):
            raise HarnessInputError(f"--set {key}: only eval.* can change without retraining")
    # `eval.noise` replaces the trained run's noise list: the run keeps its earlier metrics.
    flat = {k: v for k, v in flat.items() if not any(k == key or k.startswith(key + ".") for key, _ in pairs)}
    try:
        tree = unflatten({**flat, **dict(pairs)})
        return build_trial_config(tree)
    except KeyClash as exc:
        raise HarnessInputError(f"--set {exc.key}: {exc.problem}") from None
    except ValidationError as exc:
        origin = {key: Origin(f"--set {key}", nested=False) for key, _ in pairs}
        raise HarnessInputError(one_line("the run's config", exc, origin, tree)) from None


def read_network(client: Any, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The run and its logged network payload.

    Raises:
        HarnessInputError: an unknown run, or a run without a logged network.
    """
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per run, no bars
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise HarnessInputError(f"--run {run_id}: no such run in this store") from None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, NETWORK_ARTIFACT, folder)
        except (MlflowException, OSError):
            raise HarnessInputError(
                f"--run {run_id}: the run has no logged network ({NETWORK_ARTIFACT}); only finished trials log one"
            ) from None
        return run, torch.load(path, map_location="cpu", weights_only=True)


def evaluate_run(
    client: Any,
    run_id: str,
    overrides: Iterable[tuple[str, Any]] = (),
    *,
    teacher_cache: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """Measures a run's logged network again under its `eval.*` with `overrides`, and logs the
    metrics to that run (see the module docstring). Returns them.

    Raises:
        HarnessInputError: an unknown run, no logged network, or a bad override.
    """
    from harness.attacks.evaluate import attack_evaluation
    from harness.methods import TrialContext, create_method
    from harness.trial import DEFAULT_TEACHER_CACHE, final_evaluation, load_trial_data, noise_evaluation, resolve_device

    run, payload = read_network(client, run_id)
    asked = evaluation_config(payload["config"], overrides)
    config = only_missing_attacks(only_missing_noise(asked, set(run.data.metrics)), set(run.data.metrics))
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    data = load_trial_data(config, device)
    cache = Path(teacher_cache or os.environ.get("HARNESS_TEACHER_CACHE", DEFAULT_TEACHER_CACHE))
    method = create_method(config.method, TrialContext(config, data, device, cache, log))
    method.load_state_dict(payload)
    started = time.perf_counter()
    trained = build_trial_config(payload["config"]).eval
    predictions: dict[str, Any] = {}
    if (config.eval.time_steps, config.eval.reference_time_steps) == (trained.time_steps, trained.reference_time_steps):
        # The clean accuracy and the T curve are logged already: new noise levels and attacks only.
        metrics = noise_evaluation(method, data, config, predictions)
        metrics |= attack_evaluation(method, data, config, predictions)
    else:
        metrics = final_evaluation(method, data, config, predictions)
    metrics |= method.extra_metrics()
    _update_predictions(client, run_id, data.test_y, predictions, log)
    log(f"run {run_id}: evaluated in {time.perf_counter() - started:.1f}s")
    _log_metrics(client, run_id, metrics, step=int(payload.get("epoch", config.train.epochs)))
    client.set_tag(run_id, Tag.EVALUATED, json.dumps(asked.eval.model_dump(mode="json"), sort_keys=True))
    return metrics


def _update_predictions(
    client: Any, run_id: str, labels: Any, predictions: dict[str, Any], log: Callable[[str], None]
) -> None:
    """The run's predictions artifact with the newly measured accuracies' predictions added (a
    run logged before predictions were kept gets a new one; one of another test split is replaced)."""
    from mlflow.exceptions import MlflowException

    from harness.predictions import LABELS, merged, read_predictions, write_predictions
    from harness.tracking import log_predictions_file

    predictions.pop(LABELS, None)
    if not predictions:
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            old = read_predictions(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, folder))
            labels, predictions = merged(old, labels, predictions)
        except (MlflowException, OSError, ValueError) as exc:
            log(f"run {run_id}: no earlier predictions kept ({type(exc).__name__}); storing the new ones")
        path = Path(folder) / "new.npz"
        write_predictions(path, labels, predictions)
        log_predictions_file(client, run_id, path)


def only_missing_noise(config: TrialConfig, logged: set[str]) -> TrialConfig:
    """`config` with `eval.noise` narrowed to the levels the run has no metric of: a noise
    level is seeded per sample, so a logged one would come out the same (the clean accuracy and
    the T curve are measured again, as they cost one pass)."""
    noise = {
        kind: tuple(level for level in levels if noise_metric(kind, level, NOISE) not in logged)
        for kind, levels in config.eval.noise.items()
    }
    noise = {kind: levels for kind, levels in noise.items() if levels}
    return config.model_copy(update={"eval": config.eval.model_copy(update={"noise": noise})})


def only_missing_attacks(config: TrialConfig, logged: set[str]) -> TrialConfig:
    """`config` with `eval.attacks` narrowed to the eps the run has no `attack/<name>/<eps>` of:
    an attack is seeded per image (a transfer attack's images are cached), so a logged one would
    come out the same; one logged under other options keeps its figure."""
    attacks = {}
    for name, options in config.eval.attacks.items():
        eps = tuple(e for e in options.eps if attack_metric(name, e) not in logged)
        if eps:
            attacks[name] = options.model_copy(update={"eps": eps})
    return config.model_copy(update={"eval": config.eval.model_copy(update={"attacks": attacks})})


def _log_metrics(client: Any, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    entries = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
    for start in range(0, len(entries), 500):  # MLflow's batch limit is 1,000
        client.log_batch(run_id, metrics=entries[start : start + 500])
