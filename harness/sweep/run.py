"""The orchestration of a sweep: parent run, Ray, the teacher stage, one Tune experiment, the outcome.

Teachers are trained once, before the trials (a Ray task per distinct teacher), into the
teacher cache under the sweep's storage path, which every node must reach.

The record survives a killed driver (SIGKILL at any moment): `--resume` restores the Tune
experiment and its searcher from their last save; every trial finds its MLflow run and its
checkpoints again by its identity (`harness.sweep.callback`, `harness.sweep.workers`); runs a
killed driver left RUNNING are reused, or, when the sweep ends without them, ended KILLED; and
a sweep that ends with a planned final run unfinished says which (`SweepOutcome.missing`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from ray import tune

from harness import contract
from harness.config import ResourcesConfig, TrialConfig, flatten
from harness.contract import Role, Tag
from harness.errors import HarnessInputError
from harness.progress import write
from harness.provenance import cpu_name, environment_tags
from harness.sweep.callback import MlflowTrialCallback
from harness.sweep.final import final_runs, final_seeds
from harness.sweep.plan import SweepPlan, check_same_plan, record_plan
from harness.sweep.progress import SweepProgress
from harness.sweep.search import (
    SchedulerState,
    SweepSearcher,
    TeacherGate,
    make_scheduler,
    make_searcher,
)
from harness.sweep.workers import RUN_KEY, run_trial, train_teacher_task
from harness.teacher import TEACHER_FAILED, TEACHER_FILE, teacher_key_of
from harness.tracking import TrackedRun

TRIALS_FOLDER = "trials"  # the sweep's Tune experiment, under <storage>/<space name>/
CHECKPOINTS_FOLDER = "checkpoints"  # every trial's own checkpoints, by identity, beside it


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (from the CLI flags)."""

    tracking_uri: str
    experiment: str
    storage: Path
    address: str | None = None
    resume: bool = False


WAIT_NOTICE_S = 60.0  # how often a sweep that waits for resources says so


def cluster_shape() -> tuple[list[dict[str, float]], dict[str, float]]:
    """The alive nodes' resources and the cluster's total (Ray must be initialised)."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    return nodes, ray.cluster_resources()


def describe_cluster(nodes: list[dict[str, float]], total: dict[str, float]) -> str:
    """`2 node(s), 4 CPU and 0 GPU in all; the largest has 2 CPU, 0 GPU`."""
    largest_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    largest_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    return (
        f"{len(nodes)} node(s), {total.get('CPU', 0.0):g} CPU and {total.get('GPU', 0.0):g} GPU in all; "
        f"the largest has {largest_cpu:g} CPU, {largest_gpu:g} GPU"
    )


def check_resources(resources: ResourcesConfig, growing: bool, log: Callable[[str], None]) -> None:
    """Checks that one trial (`resources.cpu` CPUs and `resources.gpu` GPUs on one node) fits a node.

    Raises:
        HarnessInputError: it fits no node and the cluster cannot grow (a local Ray instance).
    """
    nodes, total = cluster_shape()
    if any(n.get("CPU", 0.0) >= resources.cpu and n.get("GPU", 0.0) >= resources.gpu for n in nodes):
        return
    short = "gpu" if not any(n.get("GPU", 0.0) >= resources.gpu for n in nodes) else "cpu"
    need = f"a trial needs {resources.cpu:g} CPU and {resources.gpu:g} GPU on one node"
    if not growing:
        raise HarnessInputError(
            f"resources.{short}: {need}, but this machine's Ray has {describe_cluster(nodes, total)}; "
            f"lower resources.{short} in the space file, or run on a cluster with --address"
        )
    log(f"waiting for the cluster to grow: {need}; it has {describe_cluster(nodes, total)}")


class WaitNotice(tune.Callback):
    """Says on stderr, at most once a minute, what the sweep waits for while trials are pending
    and none runs (an autoscaling cluster that has not grown yet), instead of silence."""

    def __init__(self, resources: ResourcesConfig, every: float = WAIT_NOTICE_S) -> None:
        self.resources, self.every = resources, every
        self.since: float | None = None
        self.said = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "since": None, "said": 0.0}  # clocks of another process mean nothing

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        waiting = any(t.status == "PENDING" for t in trials) and not any(t.status == "RUNNING" for t in trials)
        now = time.monotonic()
        if not waiting:
            self.since = None
            return
        self.since = self.since or now
        if now - self.since >= self.every and now - self.said >= self.every:
            nodes, total = cluster_shape()
            pending = sum(t.status == "PENDING" for t in trials)
            write(
                f"waiting for resources for {now - self.since:.0f} s: {pending} trial(s) need "
                f"{self.resources.cpu:g} CPU and {self.resources.gpu:g} GPU each on one node; the cluster has "
                f"{describe_cluster(nodes, total)}"
            )
            self.said = now


def teachers_needed(plan: SweepPlan) -> dict[str, dict[str, TrialConfig]]:
    """Per method that needs a teacher, the distinct teachers its search and final runs use (by key)."""
    needed: dict[str, dict[str, TrialConfig]] = {}
    for method_plan in plan.methods:
        if not method_plan.capabilities.needs_teacher:
            continue
        base_seed = method_plan.config.seed
        for seed in sorted({base_seed, *final_seeds(plan.space, base_seed)}):
            config = method_plan.trial_config({"seed": seed})
            needed.setdefault(method_plan.method, {}).setdefault(teacher_key_of(config), config)
    return needed


def start_teachers(plan: SweepPlan, teacher_cache: Path, resources: ResourcesConfig) -> tuple[list[Any], TeacherGate]:
    """Starts a Ray task for every teacher not in the cache yet, without waiting for them.

    They train beside the trials of the methods that need none (direct, conversion): the
    searcher hands out a method's trials only once its teachers are cached (the returned gate).
    When every method needs a teacher, nothing else can run meanwhile, so the teachers share
    the cluster's CPUs.

    Returns:
        The tasks' object refs and the gate.
    """
    import ray

    needed = teachers_needed(plan)
    configs = {key: config for by_key in needed.values() for key, config in by_key.items()}
    missing = {key: c for key, c in configs.items() if not (teacher_cache / key / TEACHER_FILE).exists()}
    for key in missing:
        (teacher_cache / key / TEACHER_FAILED).unlink(missing_ok=True)  # a failure before a resume: try again
    alone = all(p.capabilities.needs_teacher for p in plan.methods)
    cpus = _teacher_cpus(resources, len(missing)) if alone else resources.cpu
    task = ray.remote(num_cpus=cpus, num_gpus=resources.gpu)(train_teacher_task)
    refs = [task.remote(config.model_dump(mode="json"), str(teacher_cache)) for config in missing.values()]
    gate = TeacherGate(
        {m: tuple(str(teacher_cache / key / TEACHER_FILE) for key in by_key) for m, by_key in needed.items()}
    )
    return refs, gate


def _teacher_cpus(resources: ResourcesConfig, teachers: int) -> float:
    """CPUs per teacher task when nothing else can run: the teachers share the cluster's CPUs
    (at most one node's worth each, at least a trial's)."""
    import ray

    if teachers == 0:
        return resources.cpu
    largest_node = max(node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"])
    share = ray.cluster_resources().get("CPU", 0.0) // teachers
    return max(resources.cpu, min(largest_node, share))


def _teacher_outcomes(refs: list[Any], log: Callable[[str], None]) -> list[tuple[float, float]]:
    """Waits for the teacher tasks (done by now: their methods' trials ran), says which failed,
    and returns when each that succeeded started and ended."""
    import ray

    spans = []
    for ref in refs:
        try:
            _, started, ended = ray.get(ref)
            spans.append((started, ended))
        except Exception as exc:  # noqa: BLE001 - the trials that needed it recorded their own failure
            log(f"a teacher failed to train: {str(exc).strip().splitlines()[-1][:300]}")
    return spans


def _trainable(plan: SweepPlan, teacher_cache: Path, checkpoints: Path) -> Any:
    cpu, gpu = plan.space.resources.cpu, plan.space.resources.gpu
    fn = tune.with_parameters(
        run_trial,
        plans={p.method: p for p in plan.methods},
        teacher_cache=str(teacher_cache),
        checkpoints=str(checkpoints),
        threads=max(1, int(cpu)),
        metric=plan.space.search.metric,
        mode=plan.space.search.mode,
    )
    return tune.with_resources(fn, {"cpu": cpu, "gpu": gpu})


def _sweep_tuner(plan: SweepPlan, folder: Path, trainable: Any, callbacks: list[Any], gate: TeacherGate) -> Any:
    scheduler = make_scheduler(plan)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=plan.space.search.metric,
            mode=plan.space.search.mode,
            search_alg=make_searcher(plan, folder.parent, gate),
            scheduler=scheduler,
            num_samples=-1,  # the searcher says when it is done: after every method's final runs
            max_concurrent_trials=plan.space.search.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[*callbacks, SchedulerState(scheduler)],
            verbose=0,
        ),
    )


def _stop_if_interrupted(folder: Path, searcher: SweepSearcher) -> None:
    """Raises KeyboardInterrupt unless every trial in `folder` ended and the searcher is done.

    Tune returns normally after Ctrl-C and marks the stopped trials terminated in memory;
    the experiment state it saved first (with the searcher) still shows them unfinished, or
    final runs not yet handed out, and --resume reads it.
    """
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(folder)).trials
    if not searcher.done or any(t.status not in ("TERMINATED", "ERROR") for t in trials):
        raise KeyboardInterrupt(f"interrupted with trials unfinished in {folder}; continue with --resume")


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
    check_same_plan(plan, folder)
    check_store(options)  # a bad URI or missing credentials fail before Ray starts
    if not ray.is_initialized():
        # "local": a new in-process instance, never a leftover one that `ray start` recorded in /tmp/ray.
        ray.init(address=options.address or "local", include_dashboard=False, log_to_driver=False)
    check_resources(plan.space.resources, growing=options.address is not None, log=log)
    parent = TrackedRun.find_or_create(
        options.tracking_uri,
        options.experiment,
        f"sweep-{sweep_id}",
        {
            Tag.ROLE: Role.SWEEP,
            Tag.TRIAL_ID: f"{sweep_id}/sweep",
            Tag.SPACE: plan.source,
            Tag.METHODS: ",".join(p.method for p in plan.methods),
            **environment_tags(),
            Tag.DEVICE: cpu_name(),  # the driver's; each trial run names the device that ran it
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    record_plan(plan, folder)
    record_sweep(parent, plan)
    teachers, gate = start_teachers(plan, teacher_cache, plan.space.resources)
    log(f"teachers: {len(teachers)} training beside the trials that need none")
    try:
        methods, searcher = _search_and_final_stage(
            plan, options, parent.run_id, folder / TRIALS_FOLDER, teacher_cache, gate, log
        )
    except KeyboardInterrupt:
        parent.finish("KILLED", "interrupted; continue with harness sweep --resume")
        raise
    teacher_spans = _teacher_outcomes(teachers, log)
    ended = end_orphans(options, sweep_id)
    if ended:
        log(f"{ended} run(s) a killed driver left RUNNING, and no planned trial claimed, ended KILLED")
    missing = missing_finals(plan, options, searcher)
    parent.log_metrics({"sweep_seconds": time.time() - started})
    parent.finish("FINISHED" if not missing else "FAILED", "; ".join(missing) or None)
    return {
        "parent_run_id": parent.run_id,
        "teachers_trained": len(teachers),
        "teacher_spans": teacher_spans,  # (start, end) of each teacher task, beside the trials
        "methods": methods,
        "missing": missing,
    }


def check_store(options: SweepOptions) -> None:
    """Reads from the tracking store, writing nothing.

    Raises:
        HarnessInputError: the store refuses the client or cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    from harness.tracking import describe_refusal

    uri = options.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return  # a new local store: nothing can refuse, and reading would create the file
    try:
        MlflowClient(options.tracking_uri).get_experiment_by_name(options.experiment)
    except MlflowException as exc:
        raise HarnessInputError(f"--tracking-uri {options.tracking_uri}: {describe_refusal(exc)}") from None


def record_sweep(parent: TrackedRun, plan: SweepPlan) -> None:
    """The parent run's params (the space's name, methods, search and resources) and its
    artifacts: the space file as given and the resolved plan (`plan.json`)."""
    space = plan.space
    settings = {"space.name": space.name, "space.methods": list(space.methods)}
    settings |= flatten(space.search.model_dump(mode="json"), "search.")
    settings |= flatten(space.resources.model_dump(mode="json"), "resources.")
    parent.log_config(settings, {})
    source = Path(plan.source)
    if source.is_file():
        parent.log_text(source.read_text(), f"space/{source.name}")
    parent.log_text(json.dumps(plan.record(), indent=1, sort_keys=True), "space/plan.json")


def _sweep_runs(options: SweepOptions, sweep_id: str) -> list[Any]:
    """Every trial and final run of the sweep `sweep_id` in the experiment (by their `harness.trial_id`)."""
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    prefix = sweep_id.replace("'", "")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{Tag.TRIAL_ID}` LIKE '{prefix}/%'", max_results=50_000
    )
    return [run for run in runs if run.data.tags.get(Tag.ROLE) in (Role.TRIAL, Role.FINAL)]


def end_orphans(options: SweepOptions, sweep_id: str) -> int:
    """Ends KILLED the sweep's runs still RUNNING once it is over (none of its trials claimed
    them: a killed driver made them for trials the resumed sweep did not run again)."""
    client = MlflowClient(options.tracking_uri)
    orphans = [run for run in _sweep_runs(options, sweep_id) if run.info.status == "RUNNING"]
    for run in orphans:
        client.set_tag(run.info.run_id, Tag.FAILURE_REASON, "orphaned: the sweep's driver stopped while it ran")
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(orphans)


def missing_finals(plan: SweepPlan, options: SweepOptions, searcher: SweepSearcher) -> list[str]:
    """One sentence per planned final run that did not finish (and per method with no final run)."""
    status = {run.data.tags[Tag.TRIAL_ID]: run for run in _sweep_runs(options, plan.space.name)}
    missing = []
    for method_plan in plan.methods:
        method = method_plan.method
        best = searcher.best.get(method)
        if best is None:
            if plan.space.search.final_repeats:
                missing.append(f"{method}: no search trial finished, so no final run was made")
            continue
        for run in final_runs(plan, method, best):
            key = f"{plan.space.name}/{Role.FINAL}/{method}/{run[RUN_KEY]}"
            found = status.get(key)
            if found is None or found.info.status != "FINISHED":
                state = "never started" if found is None else found.info.status
                reason = "" if found is None else found.data.tags.get(Tag.FAILURE_REASON, "")
                missing.append(f"{method} final {run[RUN_KEY]}: {state}{f' ({reason})' if reason else ''}")
    return missing


def _search_and_final_stage(
    plan: SweepPlan,
    options: SweepOptions,
    parent_run_id: str,
    folder: Path,
    teacher_cache: Path,
    gate: TeacherGate,
    log: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], SweepSearcher]:
    """Every method's search and final runs, as one Tune experiment in `folder`; returns each
    method's outcome (search trials, best sampled values) and the searcher as last saved."""
    trainable = _trainable(plan, teacher_cache, folder.parent / CHECKPOINTS_FOLDER)
    callback = MlflowTrialCallback(
        options.tracking_uri, options.experiment, parent_run_id, plan.space.name, {p.method: p for p in plan.methods}
    )
    if options.resume and tune.Tuner.can_restore(str(folder)):
        # Errored trials stay errored: the searcher has counted them already and would ignore
        # a rerun's result (and a deterministic failure ends FAILED, not errored, anyway).
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=False)
    else:
        callbacks = [callback, WaitNotice(plan.space.resources), SweepProgress.for_plan(plan)]
        tuner = _sweep_tuner(plan, folder, trainable, callbacks, gate)
    tuner.fit()
    searcher = SweepSearcher.saved(folder)
    _stop_if_interrupted(folder, searcher)
    outcomes = {}
    for method_plan in plan.methods:
        method, best = method_plan.method, searcher.best[method_plan.method]
        if searcher.chosen[method] is not None:  # the report names the configuration the final runs retrained
            callback.tag_trial(method, searcher.chosen[method], {Tag.BEST: contract.TRUE})
        log(f"{method}: {len(searcher.sampled[method])} trials searched; best {best}")
        outcomes[method] = {"trials": len(searcher.sampled[method]), "best": best}
    return outcomes, searcher
