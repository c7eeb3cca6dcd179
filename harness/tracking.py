"""MLflow records, written through `MlflowClient` from one process (the names are `harness.contract`'s).

`TrialRecorder` is the one writer of a trial's run, for `harness train` and for the sweep's
callback alike: it finds the run again by its identity (`harness.trial_id`) or creates it with
the contract's tags, logs its params and resolved config once, each epoch once, and ends it
with a status and a reason. `TrackedRun` is the plain run underneath (the sweep's parent run
uses it directly).

SQLite stores are always addressed by an absolute path (trials run in other working
directories), and their artifacts go to `mlartifacts/` beside the database file. This module
imports nothing of the training stack: `harness report` uses its URI helpers.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.contract import DATA_CONTEXT, EXPERIMENT_KIND, PREDICTIONS_ARTIFACT, VAL_ACCURACY, Tag

# Against a tracking server, MlflowClient.set_terminated writes two "View run ... at" link lines
# to stdout for every run it ends; a sweep ends one run per trial.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
from harness.errors import HarnessInputError
from harness.files import check_writable_folder

# Opens the training-runs table (not the GenAI overview) in the MLflow 3 UI.
EXPERIMENT_KIND_TAGS = {Tag.EXPERIMENT_KIND.value: EXPERIMENT_KIND}
_BATCH = 900  # log_batch takes at most 1000 entries
CONFIG_ARTIFACT = "config.yaml"  # every trial run's resolved config
NETWORK_ARTIFACT = "model/checkpoint.pt"  # a finished trial's trained network (harness.evaluation)
_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def default_tracking_uri(cwd: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` when set, else `sqlite:///<abs cwd>/mlflow.db`."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return absolute_tracking_uri(from_env)
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def absolute_tracking_uri(uri: str | None) -> str:
    """Makes a relative `sqlite:///x.db` (or a bare `x.db` path) absolute; servers pass through."""
    if uri is None:
        return default_tracking_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return f"sqlite:///{path.resolve()}"
    if "://" not in uri:
        return f"sqlite:///{Path(uri).resolve()}"
    return uri


def _artifact_root(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def make_store_folder(tracking_uri: str) -> None:
    """Makes the folder of a SQLite store (MLflow makes the file, not its folder); a server: nothing."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment `name`, created (with the UI's training-runs tag) if missing.

    Raises:
        HarnessInputError: The store refuses the client (a server's basic-auth without
            `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`, say) or cannot be reached.
    """
    try:
        experiment = client.get_experiment_by_name(name)
    except MlflowException as exc:
        raise HarnessInputError(f"--tracking-uri {tracking_uri}: {describe_refusal(exc)}") from None
    if experiment is not None:
        return experiment.experiment_id
    root = _artifact_root(tracking_uri)
    return client.create_experiment(name, artifact_location=root, tags=EXPERIMENT_KIND_TAGS)


def describe_refusal(exc: MlflowException) -> str:
    """One line on why the store refused (credentials, permission, no answer, or its own first line)."""
    text = str(exc)
    # No answer first: the message then holds the address, whose port may read like a status (35401).
    if any(sign in text for sign in ("Connection refused", "Max retries exceeded", "timed out", "Name or service")):
        return f"no tracking server answers there (within {PROBE_TIMEOUT_S} s); start it, or check the address"
    if re.search(r"\b401\b", text):
        return "the server refused the credentials (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    if re.search(r"\b403\b", text):
        return "this user may not use the experiment (permission denied)"
    return text.splitlines()[0][:300]


PROBE_TIMEOUT_S = 10
"""How long the first request to a tracking server may take: `probe_store` sets MLflow's
`MLFLOW_HTTP_REQUEST_TIMEOUT` to it, and `MLFLOW_HTTP_REQUEST_MAX_RETRIES` to 0, for that
request only (MLflow's own defaults retry for minutes before a word is said)."""


def probe_store(tracking_uri: str, experiment: str) -> None:
    """Checks, before anything runs, that the store can be used: a SQLite file's folder can be
    made and takes files (nothing of the check stays); a server answers within `PROBE_TIMEOUT_S`
    and takes the credentials. Reads one experiment, writes nothing.

    Raises:
        HarnessInputError: one line naming `--tracking-uri` and what is wrong.
    """
    uri = absolute_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        try:
            check_writable_folder(database.parent)
        except OSError as exc:
            raise HarnessInputError(
                f"--tracking-uri {uri}: cannot make the folder {database.parent} or write there ({exc.strerror or exc})"
            ) from None
        if not database.exists():
            return  # a new local store: nothing can refuse, and reading would create the file
    saved = {name: os.environ.get(name) for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(PROBE_TIMEOUT_S))
    try:
        MlflowClient(uri).get_experiment_by_name(experiment)
    except MlflowException as exc:
        raise HarnessInputError(f"--tracking-uri {uri}: {describe_refusal(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a store that fails in its own way: say how, in one line
        raise HarnessInputError(
            f"--tracking-uri {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def param_value(value: Any) -> str:
    """MLflow params are strings: lists and mappings as JSON, the rest as `str`."""
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)


class TrackedRun:
    """One MLflow run, opened on construction and closed by `finish`."""

    def __init__(
        self, tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, str], run_id: str | None = None
    ) -> None:
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        make_store_folder(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri)
        experiment_id = ensure_experiment(self.client, experiment, self.tracking_uri)
        if run_id is None:
            plain = {str(key): str(value) for key, value in tags.items()}
            run_id = self.client.create_run(experiment_id, run_name=run_name, tags=plain).info.run_id
        self.run_id = run_id

    @classmethod
    def find_or_create(cls, tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, str]) -> TrackedRun:
        """The run tagged `harness.trial_id = tags["harness.trial_id"]`, reopened if it exists.

        This keeps exactly one run per trial across retries and resumed sweeps.
        """
        uri = absolute_tracking_uri(tracking_uri)
        make_store_folder(uri)
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, experiment, uri)
        trial_id = str(tags[Tag.TRIAL_ID]).replace("'", "")
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{Tag.TRIAL_ID}` = '{trial_id}'", max_results=1
        )
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return cls(uri, experiment, run_name, tags, run_id=found[0].info.run_id)
        return cls(uri, experiment, run_name, tags)

    def last_step(self, metric: str) -> int:
        """The largest step at which `metric` is logged (0 when it is not)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, metric)), default=0)

    @property
    def params(self) -> dict[str, str]:
        """Params already logged (MLflow refuses to change a logged param)."""
        return dict(self.client.get_run(self.run_id).data.params)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Logs every param (values turned into strings)."""
        entries = [Param(key, param_value(value)) for key, value in params.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(self.run_id, params=entries[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Logs metrics at `step` (the epoch for per-epoch values)."""
        now = int(time.time() * 1000)
        entries = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(entries), _BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + _BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Adds tags to the run."""
        self.client.log_batch(self.run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])

    def log_config(self, params: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """A trial's params (those not logged yet: MLflow refuses to change one) and, the first
        time, its whole resolved config as the artifact `config.yaml`."""
        logged = self.params
        self.log_params({key: value for key, value in params.items() if key not in logged})
        if not logged and config:
            import yaml

            self.log_text(yaml.safe_dump(dict(config), sort_keys=False), CONFIG_ARTIFACT)

    def log_provenance(self, provenance: Mapping[str, Any]) -> None:
        """`harness.trial.provenance`'s tags (source, libraries, device) and the data splits as
        MLflow dataset inputs (logged once: a resumed run has them already)."""
        self.set_tags(provenance["tags"])
        if self.client.get_run(self.run_id).inputs.dataset_inputs:
            return
        inputs = []
        for part, split in provenance["data"].items():
            dataset = Dataset(
                name=split["name"],
                digest=split["digest"][:36],
                source_type="harness",
                source=json.dumps(split["source"], sort_keys=True),
                schema=json.dumps({"image": split["shape"], "label": "int64"}),
                profile=json.dumps({key: split[key] for key in ("samples", "loader", "mean", "std") if key in split}),
            )
            inputs.append(DatasetInput(dataset, tags=[InputTag(DATA_CONTEXT, _CONTEXTS.get(part, part))]))
        self.client.log_inputs(self.run_id, datasets=inputs)

    def log_network_file(self, path: str | Path) -> None:
        """Logs a trained network's file (`harness.evaluation.network_payload`, or a sweep trial's
        last checkpoint, of the same layout) as the run's `model/checkpoint.pt`."""
        import shutil

        folder, name = NETWORK_ARTIFACT.rsplit("/", 1)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / name
            shutil.copyfile(path, copy)
            self.client.log_artifact(self.run_id, str(copy), folder)

    def log_predictions_file(self, path: str | Path) -> None:
        """Logs a predictions file (`harness.predictions`) as the run's `predictions/test.npz`."""
        log_predictions_file(self.client, self.run_id, path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Stores `text` as an artifact of the run."""
        self.client.log_text(self.run_id, text, artifact_file)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Ends the run as FINISHED, FAILED or KILLED; a reason goes to `harness.failure_reason`."""
        if reason:
            self.set_tags({Tag.FAILURE_REASON: reason[:5000]})
        self.client.set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


def log_predictions_file(client: MlflowClient, run_id: str, path: str | Path) -> None:
    """Logs `path` as the run's `contract.PREDICTIONS_ARTIFACT` (replacing an earlier one)."""
    import shutil

    folder, name = PREDICTIONS_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / name
        shutil.copyfile(path, copy)
        client.log_artifact(run_id, str(copy), folder)


@dataclass(frozen=True)
class RunSpec:
    """What one trial's MLflow run is made of (`harness.run_spec.run_spec` builds it from a config).

    Attributes:
        name: The run's name in the UI (`kd-trial-3`, `kd-final-T4-s1`, `kd-digits-T2-s0`).
        tags: Its tags, `harness.trial_id` among them (the run is found again by it).
        params: Its params (dotted keys of the sections its method reads).
        config: Its whole resolved config, as JSON values (the artifact `config.yaml`).
    """

    name: str
    tags: Mapping[str, str]
    params: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trial_id(self) -> str:
        """The run's identity, the tag `harness.trial_id`."""
        return str(self.tags[Tag.TRIAL_ID])


class TrialRecorder:
    """The MLflow run of one trial, with every write it takes: the one recorder of `harness train`
    and of the sweep's callback.

    Opening finds the run tagged with the spec's `harness.trial_id` (reopened as RUNNING) or
    creates it, and logs the params and config it lacks; so a retried, resumed or re-issued
    trial goes on in its own run. `log_epoch` logs an epoch's metrics once: an epoch the run
    holds already (a resumed trial reports it again) is skipped.
    """

    def __init__(self, tracking_uri: str, experiment: str, spec: RunSpec) -> None:
        self.spec = spec
        self.run = TrackedRun.find_or_create(tracking_uri, experiment, spec.name, spec.tags)
        self.run.log_config(spec.params, spec.config)
        self.last_epoch = self.run.last_step(VAL_ACCURACY)

    @property
    def run_id(self) -> str:
        """The MLflow run id."""
        return self.run.run_id

    @property
    def tracking_uri(self) -> str:
        """The store the run is in (absolute)."""
        return self.run.tracking_uri

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> bool:
        """Logs `metrics` at step `epoch` unless the run holds that epoch already; says whether it logged."""
        if epoch <= self.last_epoch:
            return False
        self.run.log_metrics(metrics, step=epoch)
        self.last_epoch = epoch
        return True

    def log_provenance(self, provenance: Mapping[str, Any]) -> None:
        """Where the trial ran and the digests of its data splits (`TrackedRun.log_provenance`)."""
        self.run.log_provenance(provenance)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Adds tags to the run."""
        self.run.set_tags(tags)

    def log_network_file(self, path: str | Path) -> None:
        """The trained network's file as the run's `model/checkpoint.pt` (`TrackedRun.log_network_file`)."""
        self.run.log_network_file(path)

    def log_predictions_file(self, path: str | Path) -> None:
        """The final evaluation's per-image test predictions as the run's `predictions/test.npz`."""
        self.run.log_predictions_file(path)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Ends the run as FINISHED, FAILED or KILLED; a reason goes to `harness.failure_reason`."""
        self.run.finish(status, reason)


def tag_run(tracking_uri: str, experiment: str, trial_id: str, tags: Mapping[str, str]) -> None:
    """Adds tags to the run whose `harness.trial_id` is `trial_id` (none: nothing happens)."""
    client = MlflowClient(absolute_tracking_uri(tracking_uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return
    quoted = trial_id.replace("'", "")
    for run in client.search_runs([found.experiment_id], f"tags.`{Tag.TRIAL_ID}` = '{quoted}'"):
        for name, value in tags.items():
            client.set_tag(run.info.run_id, name, value)
