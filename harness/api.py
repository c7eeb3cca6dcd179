"""The harness as a library: `validate`, `train_once`, `sweep` and `report`, from Python or a notebook.

The `harness` command line (`harness.cli`) parses its flags, calls these and prints what they
return; everything it does is here first. Each function imports what it needs when it runs, so
importing this module is cheap and `report` never loads Ray or the training stack.

    from harness import api

    plan = api.validate("search_spaces/smoke.yaml", {"train.epochs": 2})
    one = api.train_once("search_spaces/kd.yaml", method="direct", overrides={"dataset.name": "digits"})
    done = api.sweep("search_spaces/smoke.yaml", resume=True)
    api.report("smoke-digits")

Bad input raises `harness.errors.HarnessInputError` (one line naming the file and field, or the
`--set KEY`) before anything runs or is written.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessInputError, TrialFailed

if TYPE_CHECKING:
    from harness.config.sections import TrialConfig
    from harness.sweep.plan import SweepPlan
    from harness.sweep.run import SweepOptions, SweepOutcome
    from harness.trial import BatchProgress

Overrides = Mapping[str, Any] | Iterable[tuple[str, Any]]
"""`--set` values: `{"train.epochs": 2}` or `[("train.epochs", 2)]` (`parse_override` reads `KEY=VALUE`)."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    return list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)


def validate(space: str | Path, overrides: Overrides = ()) -> SweepPlan:
    """Checks a space file and overrides as `sweep` does (dataset files included); runs nothing.

    Returns:
        The sweep's plan (`harness.sweep.final.describe_plan` words it).
    """
    from harness.sweep.plan import plan_sweep

    return plan_sweep(space, _pairs(overrides))


@dataclass(frozen=True)
class TrainOutcome:
    """What one `train_once` left.

    Attributes:
        run_id: Its MLflow run.
        experiment: The run's experiment.
        tracking_uri: The store (absolute).
        metrics: The final metrics (empty when the trial failed).
        failure: Why the trial failed (its loss became NaN, say), or None.
    """

    run_id: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]
    failure: str | None = None


def train_once(
    space: str | Path,
    *,
    method: str | None = None,
    overrides: Overrides = (),
    tracking_uri: str | None = None,
    experiment: str | None = None,
    teacher_cache: Path | None = None,
    log: Callable[[str], None] = _stderr,
    on_batch: BatchProgress | None = None,
    on_start: Callable[[TrialConfig], None] | None = None,
) -> TrainOutcome:
    """One trial from a space file's `fixed` values and `eval` block plus overrides, without Ray,
    logged as one MLflow run (`harness train`).

    Args:
        space: The search-space file.
        method: The method to run (default: the file's first).
        overrides: Dotted keys that win over the file's (`--set`).
        tracking_uri: The MLflow store (default `$MLFLOW_TRACKING_URI`, else `./mlflow.db`).
        experiment: The MLflow experiment (default: the space's `name`).
        teacher_cache: The teacher cache (default `$HARNESS_TEACHER_CACHE` or `runs/teacher_cache`).
        log: Progress lines (one per epoch).
        on_batch: Called after every training step (a progress bar).
        on_start: Called with the resolved config once everything is checked, before training.

    Raises:
        HarnessInputError: bad input, before the run is made.
    """
    import torch
    from mlflow.exceptions import MlflowException

    from harness.config.resolve import check_dataset_files, resolve
    from harness.config.space import load_space, trial_overrides
    from harness.contract import Role, Tag
    from harness.evaluation import network_payload
    from harness.methods import METHODS
    from harness.methods.base import uses_teacher
    from harness.predictions import LABELS, write_predictions
    from harness.run_spec import run_spec
    from harness.teacher import check_teacher_checkpoint
    from harness.tracking import TrialRecorder, absolute_tracking_uri, probe_store
    from harness.trial import train

    pairs = _pairs(overrides)
    loaded = load_space(space, pairs)
    resolved = resolve(loaded, method=method, overrides=trial_overrides(pairs), source=str(space))
    check_dataset_files(resolved)
    config = resolved.config
    METHODS.get(config.method).preflight(config)
    if uses_teacher(config):
        check_teacher_checkpoint(config, resolved.label("teacher.checkpoint"))

    experiment = experiment or loaded.name
    tracking_uri = absolute_tracking_uri(tracking_uri)
    probe_store(tracking_uri, experiment)  # an unreachable or unwritable store fails before anything trains
    if on_start is not None:
        on_start(config)
    spec = run_spec(config, Role.TRIAL, uuid.uuid4().hex[:12], extra_tags={Tag.SPACE: str(space)})
    recorder = TrialRecorder(tracking_uri, experiment, spec)

    def report(metrics: dict[str, float], epoch: int, method: Any) -> None:
        recorder.log_epoch(metrics, epoch)
        if epoch == config.train.epochs:  # the trained network, for `harness evaluate`
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "checkpoint.pt"
                torch.save(network_payload(method, config, epoch), path)
                try:
                    recorder.log_network_file(path)
                except (MlflowException, OSError) as exc:  # an artifact store it cannot write: the run goes on
                    log(f"the trained network was not logged ({type(exc).__name__}: {exc})")

    def keep_predictions(predictions: dict[str, Any]) -> None:
        """The per-image test predictions as the run's artifact, for the report's significance tests."""
        labels = predictions.pop(LABELS)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "test.npz"
            write_predictions(path, labels, predictions)
            try:
                recorder.log_predictions_file(path)
            except (MlflowException, OSError) as exc:
                log(f"the test predictions were not logged ({type(exc).__name__}: {exc})")

    try:
        metrics = train(
            config,
            report=report,
            teacher_cache=teacher_cache,
            log=log,
            on_batch=on_batch,
            describe=recorder.log_provenance,
            on_predictions=keep_predictions,
        )
    except TrialFailed as exc:
        recorder.finish("FAILED", str(exc))
        return TrainOutcome(recorder.run_id, experiment, recorder.tracking_uri, {}, failure=str(exc))
    except KeyboardInterrupt:
        recorder.finish("KILLED", "interrupted")
        raise
    except BaseException as exc:  # recorded, then raised: bad input (exit 2) or a crash (exit 1)
        recorder.finish("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    recorder.finish("FINISHED")
    return TrainOutcome(recorder.run_id, experiment, recorder.tracking_uri, metrics)


@dataclass(frozen=True)
class SweepResult:
    """What one `sweep` left.

    Attributes:
        options: Where it ran (store, experiment, storage folder).
        outcome: The sweep's own account (`harness.sweep.run.SweepOutcome`): parent run, each
            method's choice, the final runs that did not finish (`missing`).
        report: The report's `report.md`, or None when there was nothing to report.
    """

    options: SweepOptions
    outcome: SweepOutcome
    report: Path | None


def sweep(
    space: str | Path,
    *,
    overrides: Overrides = (),
    tracking_uri: str | None = None,
    experiment: str | None = None,
    storage: str | Path = "runs",
    address: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] = _stderr,
) -> SweepResult:
    """Searches every method of a space file (Optuna on Ray Tune), retrains each one's best
    configuration over new seeds, logs every trial to MLflow, then builds the report into
    `<storage>/<experiment>/report` and logs it to the parent run (`harness sweep`).

    Args:
        space, overrides, tracking_uri, experiment: As for `train_once`.
        storage: Tune experiments, checkpoints and the teacher cache; on a cluster, a path
            every node reaches.
        address: A running Ray cluster to join (`auto`, `ray://host:10001`); None: local Ray.
        resume: Continue the sweep of the same space from `storage`.
        log: Progress lines.

    Raises:
        HarnessInputError: bad input, or a sweep of that name already ran there without `resume`.
        KeyboardInterrupt: interrupted; `resume=True` continues it.
    """
    from harness.sweep.run import TRIALS_FOLDER, SweepOptions, run_sweep
    from harness.tracking import absolute_tracking_uri

    plan = validate(space, overrides)
    storage = Path(storage)
    folder = storage.resolve() / plan.space.name
    if not resume and (folder / TRIALS_FOLDER).exists():
        raise HarnessInputError(
            f"{space}: a sweep named {plan.space.name!r} already ran in {folder}; "
            "pass --resume to continue it, or remove that folder to start again"
        )
    options = SweepOptions(
        tracking_uri=absolute_tracking_uri(tracking_uri),
        experiment=experiment or plan.space.name,
        storage=storage,
        address=address,
        resume=resume,
    )
    outcome = run_sweep(plan, options, log=log)
    return SweepResult(options, outcome, publish_report(options, outcome.parent_run_id, log))


def publish_report(options: SweepOptions, parent_run_id: str, log: Callable[[str], None] = _stderr) -> Path | None:
    """The sweep's report, built into `<storage>/<experiment>/report` and logged as the parent
    run's artifacts (`report/`); None, said on `log`, when there is nothing to report (every
    trial failed): the sweep still ends normally."""
    from mlflow.tracking import MlflowClient

    from reports.build import build_report, default_report_dir

    try:
        built = build_report(
            options.tracking_uri, options.experiment, default_report_dir(options.experiment, options.storage)
        )
    except HarnessInputError as exc:
        log(f"harness: no report: {exc}")
        return None
    MlflowClient(options.tracking_uri).log_artifacts(parent_run_id, str(built.parent), "report")
    return built


def evaluate(
    *,
    run_id: str | None = None,
    experiment: str | None = None,
    overrides: Overrides = (),
    tracking_uri: str | None = None,
    teacher_cache: Path | None = None,
    log: Callable[[str], None] = _stderr,
) -> dict[str, dict[str, float]]:
    """`harness evaluate`: a run's logged network (`run_id`), or every final run of a sweep's
    `experiment`, measured again with `eval.*` overrides and no training; the metrics go to
    those runs (`harness.evaluation`). Returns them by run id.

    Raises:
        HarnessInputError: neither or both of run and experiment, an unknown run or experiment,
            a run without a logged network, or an override outside `eval.*`.
    """
    from mlflow.tracking import MlflowClient

    from harness.contract import Role, Tag
    from harness.evaluation import evaluate_run
    from harness.tracking import absolute_tracking_uri

    if (run_id is None) == (experiment is None):
        raise HarnessInputError("evaluate: give --run RUN_ID or --experiment NAME")
    client = MlflowClient(absolute_tracking_uri(tracking_uri))
    if run_id is not None:
        run_ids = [run_id]
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise HarnessInputError(f"--experiment {experiment}: no such experiment in this store")
        finals = client.search_runs(
            [found.experiment_id], f"tags.`{Tag.ROLE}` = '{Role.FINAL}' and attributes.status = 'FINISHED'"
        )
        if not finals:
            raise HarnessInputError(f"--experiment {experiment}: it has no finished final runs to evaluate")
        run_ids = [run.info.run_id for run in finals]
    pairs = _pairs(overrides)
    return {rid: evaluate_run(client, rid, pairs, teacher_cache=teacher_cache, log=log) for rid in run_ids}


def report(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    out: str | Path | None = None,
    reference: str | None = None,
    corruption_baseline: str | None = None,
) -> Path:
    """An experiment's tables (md/tex/csv), figures (png/pdf) and `report.md` from its MLflow runs
    (`harness report`); needs neither Ray nor torch.

    Args:
        experiment: The MLflow experiment (a sweep's space name).
        tracking_uri: The store (default as for `train_once`).
        out: The report folder (default `runs/<experiment>/report`).
        reference: The method the significance table compares with the others (default: the sweep's first).
        corruption_baseline: The method the corruption summary's mCE is relative to (default: the
            sweep's first that needs no teacher and trains at a T).

    Returns:
        The path of `report.md`.
    """
    from harness.tracking import absolute_tracking_uri, probe_store
    from reports.build import build_report, default_report_dir

    tracking_uri = absolute_tracking_uri(tracking_uri)
    if not tracking_uri.startswith("sqlite:///"):  # a local store is checked by the report itself
        probe_store(tracking_uri, experiment)
    folder = Path(out) if out is not None else default_report_dir(experiment)
    return build_report(tracking_uri, experiment, folder, reference=reference, corruption_baseline=corruption_baseline)
