"""`harness sweep`: Optuna (TPE) searches scheduled by Ray Tune (ASHA), every trial in MLflow.

Flow (one direction): validated space -> per method, a `Tuner` whose `OptunaSearch` samples
only that method's dims (define-by-run) -> `run_trial` (the Tune trainable, a thin wrapper of
`harness.trial.train`) reports each epoch with a checkpoint -> `MlflowTrialCallback`, on the
driver, writes one child run per trial -> after the search, the final stage retrains each
method's best configuration over `search.final_repeats` seeds (runs tagged `final`).

Teachers are trained once, before the trials (a Ray task per distinct teacher), into the
teacher cache under the sweep's storage path, which every node must reach.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from harness.config import (
    Distribution,
    ResourcesConfig,
    SpaceFile,
    TrialConfig,
    load_space,
    resolve_trial_config,
    unflatten,
)
from harness.errors import TrialFailed
from harness.methods import METHODS, Method
from harness.tracking import TrackedRun, param_value

CHECKPOINT_FILE = "trial_state.pt"
FAILURE_KEY = "harness_failure_reason"  # a trial's last result carries it when it failed
NODE_KEY = "harness_node_id"  # the Ray node that ran the epoch; becomes the run's tag `harness.node`


@dataclass(frozen=True)
class MethodPlan:
    """What the sweep runs for one method: its fixed config and the dims it samples."""

    method: str
    base: dict[str, Any]  # flat dotted keys of the resolved fixed config
    dims: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the space file and one `MethodPlan` per method."""

    space: SpaceFile
    source: str
    methods: tuple[MethodPlan, ...]

    def describe(self) -> str:
        """A short human-readable plan (what `harness validate` prints)."""
        search = self.space.search
        lines = [f"sweep {self.space.name!r} from {self.source}"]
        for plan in self.methods:
            dims = ", ".join(plan.dims) or "none"
            lines.append(f"  {plan.method}: {search.num_samples} trials, searching {dims}")
        finals = sum(final_run_count(plan, self.space) for plan in self.methods)
        total = search.num_samples * len(self.methods) + finals
        lines.append(
            f"  final stage: {search.final_repeats} seeds per method and T ({finals} runs, more if a search's best T "
            f"is another); {total} trials in all"
        )
        return "\n".join(lines)


def applicable_dims(method: type[Method], space: Mapping[str, Distribution]) -> dict[str, dict[str, Any]]:
    """The `space` entries a method reads: keys whose section is one of `method.sections`."""
    return {key: dist.as_dict() for key, dist in space.items() if key.split(".")[0] in method.sections}


def plan_sweep(path: str | Path, overrides: list[tuple[str, Any]] | None = None) -> SweepPlan:
    """Validates a space file for a sweep; every defect raises a one-line HarnessInputError."""
    space = load_space(path)
    plans = []
    for name in space.methods:
        config = resolve_trial_config(space, method=name, overrides=overrides or [], source=str(path))
        method = METHODS.get(name)
        method.preflight(config)
        plans.append(MethodPlan(name, config.flat(), applicable_dims(method, space.space)))
    return SweepPlan(space, str(path), tuple(plans))


def final_time_steps(plan: MethodPlan, space: SpaceFile, best: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """T values the final stage trains at.

    For methods that train at a T (KD, direct): the reference T (every method is compared
    there), `search.final_time_steps` (default: every `eval.time_steps`) and the T of the
    search's best configuration, so the configuration the search chose is itself retrained.
    Conversion trains no T: the reference T only (its curve comes from one run).
    """
    reference = int(plan.base["eval.reference_time_steps"])
    if "snn" not in METHODS.get(plan.method).sections:
        return (reference,)
    extra = space.search.final_time_steps
    steps = {reference, *(plan.base["eval.time_steps"] if extra is None else extra)}
    if best is not None and "snn.time_steps" in best:
        steps.add(int(best["snn.time_steps"]))
    return tuple(sorted(steps))


class DefineByRun:
    """An Optuna define-by-run space sampling exactly `dims` (no computation inside).

    A class rather than a closure: Tune pickles the searcher with the experiment state.
    """

    def __init__(self, dims: Mapping[str, Mapping[str, Any]]) -> None:
        self.dims = {key: dict(dist) for key, dist in dims.items()}

    def __call__(self, trial: optuna.Trial) -> None:
        for key, dist in self.dims.items():
            if "categorical" in dist:
                trial.suggest_categorical(key, list(dist["categorical"]))
            elif "int" in dist:
                low, high = dist["int"]
                trial.suggest_int(key, low, high, log=dist.get("log", False), step=int(dist.get("step") or 1))
            else:
                low, high = dist["float"]
                trial.suggest_float(key, low, high, log=dist.get("log", False), step=dist.get("step"))


def run_trial(
    sampled: dict[str, Any], *, base: dict[str, Any], teacher_cache: str, threads: int, metric: str, mode: str
) -> None:
    """The Tune trainable: one `train()` with a checkpoint per epoch, resumed from the last one."""
    import ray
    from ray import tune

    from harness.trial import train

    torch.set_num_threads(max(1, threads))
    node = ray.get_runtime_context().get_node_id()
    config = TrialConfig.model_validate(unflatten({**base, **sampled}))
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


class MlflowTrialCallback(tune.Callback):
    """Driver-side MLflow logging: one child run per Tune trial, keyed by a stable trial id.

    A resumed or retried trial finds its run by the tag `harness.trial_id` and goes on
    logging into it, so every trial has exactly one run. Trials stopped early by the
    scheduler end FINISHED with `harness.pruned=true`; errored trials end FAILED with the
    reason in `harness.failure_reason`.
    """

    def __init__(
        self, tracking_uri: str, experiment: str, parent_run_id: str, sweep_id: str, role: str, plan: MethodPlan
    ) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.parent_run_id, self.sweep_id, self.role = parent_run_id, sweep_id, role
        self.method, self.base = plan.method, plan.base
        self.searched = ",".join(plan.dims)  # the tag `harness.searched`: compare views group by it
        self.epochs = int(plan.base["train.epochs"])
        self.runs: dict[str, TrackedRun] = {}
        self.nodes: dict[str, str] = {}  # trial id -> the Ray node id last tagged

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment (for Tuner.restore); clients stay behind.
        return {**self.__dict__, "runs": {}}

    def trial_key(self, trial: Any) -> str:
        return f"{self.sweep_id}/{self.role}/{self.method}/{trial.trial_id}"

    def run_name(self, trial: Any) -> str:
        """`kd-trial-<id>` for search trials, `kd-final-T4-s1` for final runs (T and seed in the name,
        so the UI's run list reads as the report's rows)."""
        if self.role != "final":
            return f"{self.method}-{self.role}-{trial.trial_id}"
        config = {**self.base, **trial.config}
        steps = f"-T{config['snn.time_steps']}" if "snn" in METHODS.get(self.method).sections else ""
        return f"{self.method}-final{steps}-s{config['seed']}"

    def _run(self, trial: Any) -> TrackedRun:
        key = self.trial_key(trial)
        if key not in self.runs:
            tags = {
                "harness.role": self.role,
                "harness.method": self.method,
                "harness.trial_id": key,
                "mlflow.parentRunId": self.parent_run_id,
            }
            if self.role == "trial":
                tags["harness.searched"] = self.searched
            run = TrackedRun.find_or_create(self.tracking_uri, self.experiment, self.run_name(trial), tags)
            logged = run.params
            params = {**self.base, **trial.config}
            run.log_params({k: param_value(v) for k, v in params.items() if k not in logged})
            self.runs[key] = run
        return self.runs[key]

    def tag_trial(self, trial_id: str, tags: Mapping[str, str]) -> None:
        """Adds tags to the run of Tune trial `trial_id` of this stage (found by `harness.trial_id`)."""
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        key = f"{self.sweep_id}/{self.role}/{self.method}/{trial_id}"  # as trial_key()
        for run in client.search_runs([experiment.experiment_id], f"tags.`harness.trial_id` = '{key}'"):
            for name, value in tags.items():
                client.set_tag(run.info.run_id, name, value)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **_: Any) -> None:
        if FAILURE_KEY in result:
            return
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        metrics = {k: v for k, v in result.items() if _is_harness_metric(k, v)}
        run = self._run(trial)
        run.log_metrics(metrics, step=epoch)
        node = result.get(NODE_KEY)
        if node is not None and self.nodes.get(trial.trial_id) != node:  # a retried trial may move
            run.set_tags({"harness.node": str(node)})
            self.nodes[trial.trial_id] = node

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        run = self._run(trial)
        last = trial.last_result or {}
        if FAILURE_KEY in last:
            run.finish("FAILED", last[FAILURE_KEY])
            _progress(f"{self.role} {self.method} {trial.trial_id}: FAILED: {last[FAILURE_KEY]}")
            return
        epoch = int(last.get("epoch", 0))
        pruned = epoch < self.epochs
        if pruned:
            run.set_tags({"harness.pruned": "true"})
        run.finish("FINISHED")
        outcome = (
            f"pruned after epoch {epoch}" if pruned else f"test_accuracy {last.get('test_accuracy', float('nan')):.4f}"
        )
        _progress(
            f"{self.role} {self.method} {trial.trial_id}: val_accuracy {last.get('val_accuracy', float('nan')):.4f}, "
            f"{outcome}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        reason = _error_reason(trial)
        self._run(trial).finish("FAILED", reason)
        _progress(f"{self.role} {self.method} {trial.trial_id}: FAILED: {reason}")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_harness_metric(key: str, value: Any) -> bool:
    """Tune adds bookkeeping (`time_this_iter_s`, `pid`, ...); keep what the trial reported."""
    bookkeeping = {
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
    return isinstance(value, int | float) and not isinstance(value, bool) and key not in bookkeeping


def _error_reason(trial: Any) -> str:
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception as exc:  # the error file may be gone on a remote node: say so
        return f"trial errored; its error could not be read ({exc})"
    text = str(error).strip().splitlines()
    return text[-1] if text else "trial errored"


def teacher_stage(plan: SweepPlan, teacher_cache: Path, resources: ResourcesConfig) -> int:
    """Trains every distinct teacher the KD trials need, once, before the trials (Ray tasks).

    Returns how many teachers were trained (cached ones are only checked).
    """
    import ray

    from harness.teacher import teacher_key_of

    needed: dict[str, TrialConfig] = {}
    for method_plan in plan.methods:
        if "teacher" not in METHODS.get(method_plan.method).sections:
            continue
        seeds = {int(method_plan.base["seed"])} | set(final_seeds(plan.space, int(method_plan.base["seed"])))
        for seed in seeds:
            config = TrialConfig.model_validate(unflatten({**method_plan.base, "seed": seed}))
            needed.setdefault(teacher_key_of(config), config)
    missing = [c for key, c in needed.items() if not (teacher_cache / key / "teacher.pt").exists()]
    task = ray.remote(num_cpus=_teacher_cpus(resources, len(missing)), num_gpus=resources.gpu)(_train_teacher_task)
    ray.get([task.remote(config.model_dump(mode="json"), str(teacher_cache)) for config in missing])
    return len(missing)


def _teacher_cpus(resources: ResourcesConfig, teachers: int) -> float:
    """CPUs per teacher task: nothing else runs during the teacher stage, so the teachers
    share the cluster's CPUs (at most one node's worth each, at least a trial's)."""
    import ray

    if teachers == 0:
        return resources.cpu
    largest_node = max(node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"])
    share = ray.cluster_resources().get("CPU", 0.0) // teachers
    return max(resources.cpu, min(largest_node, share))


def _train_teacher_task(config: dict[str, Any], teacher_cache: str) -> str:
    from harness.methods import TrialContext
    from harness.teacher import load_or_train_teacher
    from harness.trial import load_trial_data, resolve_device

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    trial = TrialConfig.model_validate(config)
    device = resolve_device(trial.train.device)
    data = load_trial_data(trial, device)
    record = load_or_train_teacher(TrialContext(trial, data, device, Path(teacher_cache), lambda _: None))
    return record.key


def final_seeds(space: SpaceFile, base_seed: int) -> list[int]:
    """Seeds of the final stage: `final_repeats` seeds after the search's own."""
    return [base_seed + 1 + k for k in range(space.search.final_repeats)]


def best_config(results: Any, metric: str, mode: str) -> dict[str, Any] | None:
    """The sampled values of the best trial that ran every epoch (else the best of all)."""
    found = best_result(results, metric, mode)
    return None if found is None else dict(found.config)


def best_result(results: Any, metric: str, mode: str) -> Any | None:
    """The Tune result of the best trial that ran every epoch (else the best of all); ties keep
    the earliest."""
    best = None
    for result in results:
        if (
            result.error is not None
            or not result.metrics
            or metric not in result.metrics
            or FAILURE_KEY in result.metrics
        ):
            continue
        complete = "test_accuracy" in result.metrics
        key = (complete, result.metrics[metric] if mode == "max" else -result.metrics[metric])
        if best is None or key > best[0]:
            best = (key, result)
    return None if best is None else best[1]


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (from the CLI flags)."""

    tracking_uri: str
    experiment: str
    storage: Path
    address: str | None = None
    resume: bool = False


def _trainable(plan: MethodPlan, space: SpaceFile, teacher_cache: Path) -> Any:
    from ray import tune

    cpu, gpu = space.resources.cpu, space.resources.gpu
    fn = tune.with_parameters(
        run_trial,
        base=plan.base,
        teacher_cache=str(teacher_cache),
        threads=max(1, int(cpu)),
        metric=space.search.metric,
        mode=space.search.mode,
    )
    return tune.with_resources(fn, {"cpu": cpu, "gpu": gpu})


def _search_tuner(plan: MethodPlan, space: SpaceFile, folder: Path, trainable: Any, callback: Any) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    search = space.search
    epochs = int(plan.base["train.epochs"])
    sampler = (
        optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=search.seed)
    )
    searcher = (
        OptunaSearch(space=DefineByRun(plan.dims), metric=search.metric, mode=search.mode, sampler=sampler)
        if plan.dims
        else None
    )
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=epochs,
            grace_period=min(search.scheduler.grace_period, epochs),
            reduction_factor=search.scheduler.reduction_factor,
        )
        if search.scheduler.name == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=search.metric,
            mode=search.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=search.num_samples if plan.dims else 1,
            max_concurrent_trials=search.max_concurrent,
            reuse_actors=True,
        ),
        run_config=_run_config(folder, callback),
    )


def _run_config(folder: Path, callback: Any) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=folder.name,
        storage_path=str(folder.parent),
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[callback],
        verbose=0,
    )


def _final_tuner(
    plan: MethodPlan, space: SpaceFile, best: dict[str, Any], folder: Path, trainable: Any, callback: Any
) -> Any:
    from ray import tune

    param_space: dict[str, Any] = {**best, "seed": tune.grid_search(final_seeds(space, int(plan.base["seed"])))}
    steps = final_time_steps(plan, space, best)
    if "snn" in METHODS.get(plan.method).sections:
        param_space["snn.time_steps"] = tune.grid_search(list(steps))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=space.search.max_concurrent, reuse_actors=True),
        run_config=_run_config(folder, callback),
    )


def _tuner(folder: Path, resume: bool, trainable: Any, build: Callable[[], Any]) -> Any:
    """Restores the Tune experiment in `folder` when resuming, else builds a new one."""
    from ray import tune

    if resume and tune.Tuner.can_restore(str(folder)):
        return tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True)
    return build()


def final_run_count(plan: MethodPlan, space: SpaceFile, best: Mapping[str, Any] | None = None) -> int:
    """How many final runs a method gets: seeds x the T values it trains at."""
    return space.search.final_repeats * len(final_time_steps(plan, space, best))


def _stop_if_interrupted(folder: Path, expected: int) -> None:
    """Raises KeyboardInterrupt when the stage in `folder` has unfinished trials.

    Tune returns normally after Ctrl-C and marks the stopped trials terminated in memory;
    the experiment state it saved first still shows them unfinished, and --resume reads it.
    """
    from ray.tune import ExperimentAnalysis

    statuses = [trial.status for trial in ExperimentAnalysis(str(folder)).trials]
    if sum(status in ("TERMINATED", "ERROR") for status in statuses) < expected:
        raise KeyboardInterrupt(f"interrupted with trials unfinished in {folder}; continue with --resume")


def _sweep_method(
    method_plan: MethodPlan,
    plan: SweepPlan,
    options: SweepOptions,
    parent_run_id: str,
    folder: Path,
    teacher_cache: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The search, then the final stage, of one method; returns its outcome."""
    trainable = _trainable(method_plan, plan.space, teacher_cache)
    search_cb = MlflowTrialCallback(
        options.tracking_uri, options.experiment, parent_run_id, plan.space.name, "trial", method_plan
    )
    search_dir = folder / f"search-{method_plan.method}"
    results = _tuner(
        search_dir,
        options.resume,
        trainable,
        partial(_search_tuner, method_plan, plan.space, search_dir, trainable, search_cb),
    ).fit()
    expected = plan.space.search.num_samples if method_plan.dims else 1
    _stop_if_interrupted(search_dir, expected)
    chosen = best_result(results, plan.space.search.metric, plan.space.search.mode)
    best = None if chosen is None else dict(chosen.config)
    if chosen is not None:  # the report names the configuration the final stage retrains
        search_cb.tag_trial(str(chosen.metrics["trial_id"]), {"harness.best": "true"})
    log(f"{method_plan.method}: {len(results)} trials searched; best {best}")
    outcome = {"trials": len(results), "best": best}
    if best is None or plan.space.search.final_repeats == 0:
        return outcome
    final_cb = MlflowTrialCallback(
        options.tracking_uri, options.experiment, parent_run_id, plan.space.name, "final", method_plan
    )
    final_dir = folder / f"final-{method_plan.method}"
    _tuner(
        final_dir,
        options.resume,
        trainable,
        partial(_final_tuner, method_plan, plan.space, best, final_dir, trainable, final_cb),
    ).fit()
    _stop_if_interrupted(final_dir, final_run_count(method_plan, plan.space, best))
    return outcome


def run_sweep(plan: SweepPlan, options: SweepOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """Runs the search and the final stage of every method; returns a summary."""
    import ray

    # Tune warns at every per-epoch checkpoint of short trials, prints a box per experiment on
    # stdout and logs every state save; Optuna logs every study. The harness reports progress
    # itself (one line per trial on stderr), so all of that is turned down.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = options.storage.resolve()
    folder = storage / plan.space.name
    teacher_cache = storage / "teacher_cache"
    sweep_id = plan.space.name
    started = time.time()
    parent = TrackedRun.find_or_create(
        options.tracking_uri,
        options.experiment,
        f"sweep-{sweep_id}",
        {"harness.role": "sweep", "harness.trial_id": f"{sweep_id}/sweep", "harness.space": plan.source},
    )
    # The store is checked first (a bad URI or missing credentials fail before Ray starts).
    if not ray.is_initialized():
        # "local": a new in-process instance, never a leftover one that `ray start` recorded in /tmp/ray.
        ray.init(address=options.address or "local", include_dashboard=False, log_to_driver=False)
    folder.mkdir(parents=True, exist_ok=True)
    trained = teacher_stage(plan, teacher_cache, plan.space.resources)
    log(f"teacher stage: {trained} teacher(s) trained")
    summary: dict[str, Any] = {"parent_run_id": parent.run_id, "teachers_trained": trained, "methods": {}}
    try:
        for method_plan in plan.methods:
            summary["methods"][method_plan.method] = _sweep_method(
                method_plan, plan, options, parent.run_id, folder, teacher_cache, log
            )
    except KeyboardInterrupt:
        parent.finish("KILLED", "interrupted; continue with harness sweep --resume")
        raise
    parent.log_metrics({"sweep_seconds": time.time() - started})
    parent.finish("FINISHED")
    return summary


__all__ = [
    "DefineByRun",
    "MethodPlan",
    "MlflowTrialCallback",
    "SweepOptions",
    "SweepPlan",
    "applicable_dims",
    "final_time_steps",
    "plan_sweep",
    "run_sweep",
    "run_trial",
]
