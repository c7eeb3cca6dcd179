"""`harness sweep`: Optuna (TPE) searches scheduled by Ray Tune (ASHA), every trial in MLflow.

Flow (one direction): validated space -> one Tune experiment for the whole sweep, whose
`SweepSearcher` asks each method's own `OptunaSearch` (define-by-run: only that method's dims)
for its search trials and whose `MethodScheduler` gives each method its own ASHA -> `run_trial`
(the Tune trainable, a thin wrapper of `harness.trial.train`) reports each epoch with a
checkpoint -> `MlflowTrialCallback`, on the driver, writes one child run per trial. As soon as a
method's search is complete its best configuration is retrained over `search.final_repeats`
seeds (runs tagged `final`) in the same experiment, so no slot idles between stages.

Teachers are trained once, before the trials (a Ray task per distinct teacher), into the
teacher cache under the sweep's storage path, which every node must reach.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
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
from harness.errors import HarnessInputError
from harness.methods import METHODS, Method
from harness.ray_workers import FAILURE_KEY, NODE_KEY, ROLE_KEY, run_trial, train_teacher_task
from harness.sweep_search import DefineByRun, MethodScheduler, SweepSearcher
from harness.tracking import TrackedRun, param_value

TRIALS_FOLDER = "trials"  # the sweep's Tune experiment, under <storage>/<space name>/
PLAN_FILE = "plan.json"  # the resolved plan of the sweep in that folder; --resume must match it


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
            dims = ", ".join(plan.dims) or "nothing (one trial of its fixed config)"
            lines.append(f"  {plan.method}: {search_budget(plan, self.space)} trials, searching {dims}")
        finals = sum(final_run_count(plan, self.space) for plan in self.methods)
        total = sum(search_budget(plan, self.space) for plan in self.methods) + finals
        lines.append(
            f"  final stage: {search.final_repeats} seeds per method and T ({finals} runs, more if a search's best T "
            f"is another); {total} trials in all"
        )
        return "\n".join(lines)


def search_budget(plan: MethodPlan, space: SpaceFile) -> int:
    """Search trials of a method: `search.num_samples`, or one when it samples nothing."""
    return space.search.num_samples if plan.dims else 1


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


class MlflowTrialCallback(tune.Callback):
    """Driver-side MLflow logging: one child run per Tune trial, keyed by a stable trial id.

    A resumed or retried trial finds its run by the tag `harness.trial_id` and goes on
    logging into it, so every trial has exactly one run. Trials stopped early by the
    scheduler end FINISHED with `harness.pruned=true`; errored trials end FAILED with the
    reason in `harness.failure_reason`. Method and role come from each trial's config.
    """

    def __init__(
        self, tracking_uri: str, experiment: str, parent_run_id: str, sweep_id: str, plans: Mapping[str, MethodPlan]
    ) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.parent_run_id, self.sweep_id = parent_run_id, sweep_id
        self.plans = dict(plans)
        self.runs: dict[str, TrackedRun] = {}
        self.nodes: dict[str, str] = {}  # trial id -> the Ray node id last tagged

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment (for Tuner.restore); clients stay behind.
        return {**self.__dict__, "runs": {}}

    def trial_key(self, method: str, role: str, trial_id: str) -> str:
        """The tag `harness.trial_id`: stable across retries and resumes."""
        return f"{self.sweep_id}/{role}/{method}/{trial_id}"

    @staticmethod
    def _identity(trial: Any) -> tuple[str, str]:
        return trial.config["method"], trial.config[ROLE_KEY]

    def _describe(self, trial: Any) -> str:
        method, role = self._identity(trial)
        return f"{role} {method} {trial.trial_id}"

    def run_name(self, trial: Any) -> str:
        """`kd-trial-<id>` for search trials, `kd-final-T4-s1` for final runs (T and seed in the name,
        so the UI's run list reads as the report's rows)."""
        method, role = self._identity(trial)
        if role != "final":
            return f"{method}-{role}-{trial.trial_id}"
        config = {**self.plans[method].base, **trial.config}
        steps = f"-T{config['snn.time_steps']}" if "snn" in METHODS.get(method).sections else ""
        return f"{method}-final{steps}-s{config['seed']}"

    def _run(self, trial: Any) -> TrackedRun:
        method, role = self._identity(trial)
        key = self.trial_key(method, role, trial.trial_id)
        if key not in self.runs:
            plan = self.plans[method]
            tags = {
                "harness.role": role,
                "harness.method": method,
                "harness.trial_id": key,
                "mlflow.parentRunId": self.parent_run_id,
            }
            if role == "trial":
                tags["harness.searched"] = ",".join(plan.dims)  # compare views group by it
            run = TrackedRun.find_or_create(self.tracking_uri, self.experiment, self.run_name(trial), tags)
            logged = run.params
            params = {**plan.base, **{k: v for k, v in trial.config.items() if k != ROLE_KEY}}
            run.log_params({k: param_value(v) for k, v in params.items() if k not in logged})
            self.runs[key] = run
        return self.runs[key]

    def tag_trial(self, method: str, trial_id: str, tags: Mapping[str, str]) -> None:
        """Adds tags to the run of search trial `trial_id` of `method` (found by `harness.trial_id`)."""
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        key = self.trial_key(method, "trial", trial_id)
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
            _progress(f"{self._describe(trial)}: FAILED: {last[FAILURE_KEY]}")
            return
        epoch = int(last.get("epoch", 0))
        pruned = epoch < int(self.plans[trial.config["method"]].base["train.epochs"])
        if pruned:
            run.set_tags({"harness.pruned": "true"})
        run.finish("FINISHED")
        outcome = (
            f"pruned after epoch {epoch}" if pruned else f"test_accuracy {last.get('test_accuracy', float('nan')):.4f}"
        )
        _progress(f"{self._describe(trial)}: val_accuracy {last.get('val_accuracy', float('nan')):.4f}, {outcome}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        reason = _error_reason(trial)
        self._run(trial).finish("FAILED", reason)
        _progress(f"{self._describe(trial)}: FAILED: {reason}")


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


def final_seeds(space: SpaceFile, base_seed: int) -> list[int]:
    """Seeds of the final stage: `final_repeats` seeds after the search's own."""
    return [base_seed + 1 + k for k in range(space.search.final_repeats)]


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (from the CLI flags)."""

    tracking_uri: str
    experiment: str
    storage: Path
    address: str | None = None
    resume: bool = False


def final_runs(plan: SweepPlan, method: str, best: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The final runs that retrain `best` (a method's chosen sampled values): one per seed of
    `final_seeds` and T of `final_time_steps`, longest (largest T) first so that the
    schedule's tail is short."""
    (method_plan,) = [p for p in plan.methods if p.method == method]
    seeds = final_seeds(plan.space, int(method_plan.base["seed"]))
    if "snn" not in METHODS.get(method).sections:
        return [{**best, "seed": seed} for seed in seeds]
    steps = sorted(final_time_steps(method_plan, plan.space, best), reverse=True)
    return [{**best, "snn.time_steps": t, "seed": seed} for t in steps for seed in seeds]


def final_run_count(plan: MethodPlan, space: SpaceFile, best: Mapping[str, Any] | None = None) -> int:
    """How many final runs a method gets: seeds x the T values it trains at."""
    return space.search.final_repeats * len(final_time_steps(plan, space, best))


def _trainable(plan: SweepPlan, teacher_cache: Path) -> Any:
    from ray import tune

    cpu, gpu = plan.space.resources.cpu, plan.space.resources.gpu
    fn = tune.with_parameters(
        run_trial,
        bases={p.method: p.base for p in plan.methods},
        teacher_cache=str(teacher_cache),
        threads=max(1, int(cpu)),
        metric=plan.space.search.metric,
        mode=plan.space.search.mode,
    )
    return tune.with_resources(fn, {"cpu": cpu, "gpu": gpu})


def _searcher(plan: SweepPlan) -> SweepSearcher:
    from ray.tune.search.optuna import OptunaSearch

    search = plan.space.search

    def optuna_search(method_plan: MethodPlan) -> OptunaSearch | None:
        if not method_plan.dims:
            return None
        sampler = (  # one study per method, each seeded alike: a method's draws do not depend on the others
            optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)
            if search.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=search.seed)
        )
        return OptunaSearch(
            space=DefineByRun(method_plan.dims), metric=search.metric, mode=search.mode, sampler=sampler
        )

    return SweepSearcher(
        searchers={p.method: optuna_search(p) for p in plan.methods},
        budget={p.method: search_budget(p, plan.space) for p in plan.methods},
        final_runs=partial(final_runs, plan),
        metric=search.metric,
        mode=search.mode,
    )


def _scheduler(plan: SweepPlan) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    search = plan.space.search
    if search.scheduler.name != "asha":
        return MethodScheduler({})
    schedulers = {}
    for method_plan in plan.methods:
        epochs = int(method_plan.base["train.epochs"])
        schedulers[method_plan.method] = ASHAScheduler(
            time_attr="training_iteration",
            metric=search.metric,
            mode=search.mode,
            max_t=epochs,
            grace_period=min(search.scheduler.grace_period, epochs),
            reduction_factor=search.scheduler.reduction_factor,
        )
    return MethodScheduler(schedulers)


def _sweep_tuner(plan: SweepPlan, folder: Path, trainable: Any, callback: Any) -> Any:
    from ray import tune

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=plan.space.search.metric,
            mode=plan.space.search.mode,
            search_alg=_searcher(plan),
            scheduler=_scheduler(plan),
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


def _plan_record(plan: SweepPlan) -> dict[str, Any]:
    """What a sweep's trials are made of (as JSON values): per method its fixed config and
    dims, and the search settings."""
    record = {
        "methods": {p.method: {"base": p.base, "dims": p.dims} for p in plan.methods},
        "search": plan.space.search.model_dump(mode="json"),
    }
    return json.loads(json.dumps(record, default=str))


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}{key}/").items()}
    return {path.rstrip("/"): value}


def check_same_plan(plan: SweepPlan, folder: Path) -> None:
    """Refuses to continue the sweep in `folder` with another plan than the one it started with
    (another space file or `--set`): its searcher and trials were made from the first.

    Raises:
        HarnessInputError: naming the first setting that differs.
    """
    path = folder / PLAN_FILE
    if not path.exists():
        return
    before, now = _leaves(json.loads(path.read_text())), _leaves(_plan_record(plan))
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            raise HarnessInputError(
                f"{plan.source}: {key} is {now.get(key)!r}, but the sweep in {folder} started with "
                f"{before.get(key)!r}; resume it with the same space and --set, or remove that folder to start again"
            )


def _record_plan(plan: SweepPlan, folder: Path) -> None:
    path = folder / PLAN_FILE
    if not path.exists():
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(_plan_record(plan), indent=1, sort_keys=True))
        scratch.replace(path)


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
        {"harness.role": "sweep", "harness.trial_id": f"{sweep_id}/sweep", "harness.space": plan.source},
    )
    # The store is checked first (a bad URI or missing credentials fail before Ray starts).
    if not ray.is_initialized():
        # "local": a new in-process instance, never a leftover one that `ray start` recorded in /tmp/ray.
        ray.init(address=options.address or "local", include_dashboard=False, log_to_driver=False)
    folder.mkdir(parents=True, exist_ok=True)
    _record_plan(plan, folder)
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
            callback.tag_trial(method, searcher.chosen[method], {"harness.best": "true"})
        log(f"{method}: {len(searcher.sampled[method])} trials searched; best {best}")
        outcomes[method] = {"trials": len(searcher.sampled[method]), "best": best}
    return outcomes


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
