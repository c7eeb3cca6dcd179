"""The orchestration of a sweep: parent run, Ray, the teacher stage, one Tune experiment, the outcome.

Teachers are trained once, before the trials (a Ray task per distinct teacher), into the
teacher cache under the sweep's storage path, which every node must reach.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from harness.config import ResourcesConfig, TrialConfig
from harness.contract import Role, Tag
from harness.sweep.callback import MlflowTrialCallback
from harness.sweep.final import final_seeds
from harness.sweep.plan import SweepPlan, check_same_plan, record_plan
from harness.sweep.search import SweepSearcher, make_scheduler, make_searcher
from harness.sweep.workers import run_trial, train_teacher_task
from harness.tracking import TrackedRun

TRIALS_FOLDER = "trials"  # the sweep's Tune experiment, under <storage>/<space name>/


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (from the CLI flags)."""

    tracking_uri: str
    experiment: str
    storage: Path
    address: str | None = None
    resume: bool = False


def teacher_stage(plan: SweepPlan, teacher_cache: Path, resources: ResourcesConfig) -> int:
    """Trains every distinct teacher the trials of methods that need one will use, once, before
    the trials (Ray tasks). Returns how many teachers were trained (cached ones are only checked)."""
    import ray

    from harness.teacher import teacher_key_of

    needed: dict[str, TrialConfig] = {}
    for method_plan in plan.methods:
        if not method_plan.capabilities.needs_teacher:
            continue
        base_seed = method_plan.config.seed
        for seed in {base_seed, *final_seeds(plan.space, base_seed)}:
            config = method_plan.trial_config({"seed": seed})
            needed.setdefault(teacher_key_of(config), config)
    missing = [c for key, c in needed.items() if not (teacher_cache / key / "teacher.pt").exists()]
    task = ray.remote(num_cpus=_teacher_cpus(resources, len(missing)), num_gpus=resources.gpu)(train_teacher_task)
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


def _trainable(plan: SweepPlan, teacher_cache: Path) -> Any:
    from ray import tune

    cpu, gpu = plan.space.resources.cpu, plan.space.resources.gpu
    fn = tune.with_parameters(
        run_trial,
        plans={p.method: p for p in plan.methods},
        teacher_cache=str(teacher_cache),
        threads=max(1, int(cpu)),
        metric=plan.space.search.metric,
        mode=plan.space.search.mode,
    )
    return tune.with_resources(fn, {"cpu": cpu, "gpu": gpu})


def _sweep_tuner(plan: SweepPlan, folder: Path, trainable: Any, callback: Any) -> Any:
    from ray import tune

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=plan.space.search.metric,
            mode=plan.space.search.mode,
            search_alg=make_searcher(plan),
            scheduler=make_scheduler(plan),
            num_samples=-1,  # the searcher says when it is done: after every method's final runs
            max_concurrent_trials=plan.space.search.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[callback],
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
    parent = TrackedRun.find_or_create(
        options.tracking_uri,
        options.experiment,
        f"sweep-{sweep_id}",
        {
            Tag.ROLE: Role.SWEEP,
            Tag.TRIAL_ID: f"{sweep_id}/sweep",
            Tag.SPACE: plan.source,
            Tag.METHODS: ",".join(p.method for p in plan.methods),
        },
    )
    # The store is checked first (a bad URI or missing credentials fail before Ray starts).
    if not ray.is_initialized():
        # "local": a new in-process instance, never a leftover one that `ray start` recorded in /tmp/ray.
        ray.init(address=options.address or "local", include_dashboard=False, log_to_driver=False)
    folder.mkdir(parents=True, exist_ok=True)
    record_plan(plan, folder)
    trained = teacher_stage(plan, teacher_cache, plan.space.resources)
    log(f"teacher stage: {trained} teacher(s) trained")
    try:
        methods = _search_and_final_stage(plan, options, parent.run_id, folder / TRIALS_FOLDER, teacher_cache, log)
    except KeyboardInterrupt:
        parent.finish("KILLED", "interrupted; continue with harness sweep --resume")
        raise
    parent.log_metrics({"sweep_seconds": time.time() - started})
    parent.finish("FINISHED")
    return {"parent_run_id": parent.run_id, "teachers_trained": trained, "methods": methods}


def _search_and_final_stage(
    plan: SweepPlan,
    options: SweepOptions,
    parent_run_id: str,
    folder: Path,
    teacher_cache: Path,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Every method's search and final runs, as one Tune experiment in `folder`; returns each
    method's outcome (search trials, best sampled values)."""
    from ray import tune

    trainable = _trainable(plan, teacher_cache)
    callback = MlflowTrialCallback(
        options.tracking_uri, options.experiment, parent_run_id, plan.space.name, {p.method: p for p in plan.methods}
    )
    if options.resume and tune.Tuner.can_restore(str(folder)):
        # Errored trials stay errored: the searcher has counted them already and would ignore
        # a rerun's result (and a deterministic failure ends FAILED, not errored, anyway).
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = _sweep_tuner(plan, folder, trainable, callback)
    tuner.fit()
    searcher = SweepSearcher.saved(folder)
    _stop_if_interrupted(folder, searcher)
    outcomes = {}
    for method_plan in plan.methods:
        method, best = method_plan.method, searcher.best[method_plan.method]
        if searcher.chosen[method] is not None:  # the report names the configuration the final runs retrained
            callback.tag_trial(method, searcher.chosen[method], {Tag.BEST: "true"})
        log(f"{method}: {len(searcher.sampled[method])} trials searched; best {best}")
        outcomes[method] = {"trials": len(searcher.sampled[method]), "best": best}
    return outcomes
