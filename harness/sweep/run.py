"""The orchestration of a sweep: parent run, Ray, the teacher stage, one Tune experiment, the outcome.

`run_sweep` checks the store and the resources, opens the sweep's parent run, records the plan,
starts the teacher stage (`harness.sweep.teachers`) and runs every method's search and final
runs as one Tune experiment (`harness.sweep.search`, `harness.sweep.schedule`), logged by the
MLflow callback (`harness.sweep.callback`). Afterwards it reads what each search chose from the
searcher's record (`choices.json`), tags those trials `harness.best`, ends orphaned runs and
names every planned final run that did not finish.

The record survives a killed driver (SIGKILL at any moment): `--resume` restores the Tune
experiment and its searcher from their last save; every trial finds its MLflow run and its
checkpoints again by its identity (`harness.sweep.protocol.PlannedTrial`); runs a killed driver
left RUNNING are reused, or, when the sweep ends without them, ended KILLED; and a sweep that
ends with a planned final run unfinished says which (`SweepOutcome.missing`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from ray import tune

from harness import contract
from harness.config.dotted import flatten
from harness.contract import Role, Tag
from harness.errors import HarnessInputError
from harness.files import FRESH_START, DamagedState, check_writable_folder
from harness.provenance import cpu_name, environment_tags
from harness.sweep.callback import MlflowTrialCallback
from harness.sweep.front import final_stage
from harness.sweep.plan import SweepPlan, check_same_plan, record_plan, search_budget
from harness.sweep.progress import SweepProgress
from harness.sweep.protocol import PlannedTrial
from harness.sweep.resources import WaitNotice, check_resources
from harness.sweep.schedule import SchedulerState, make_scheduler
from harness.sweep.search import CHOICES_FILE, TeacherGate, make_searcher, read_choices
from harness.sweep.state import check_sweep_state
from harness.sweep.teachers import start_teachers, teacher_outcomes
from harness.sweep.workers import run_trial
from harness.tracking import TrackedRun, probe_store, tag_run

TRIALS_FOLDER = "trials"  # the sweep's Tune experiment, under <storage>/<space name>/
CHECKPOINTS_FOLDER = "checkpoints"  # every trial's own checkpoints, by identity, beside it
TEACHER_CACHE_FOLDER = "teacher_cache"  # under <storage>/


@dataclass(frozen=True)
class SweepOptions:
    """Where and how a sweep runs (from the CLI flags)."""

    tracking_uri: str
    experiment: str
    storage: Path
    address: str | None = None
    resume: bool = False


@dataclass(frozen=True)
class MethodOutcome:
    """What one method's search ended with.

    Attributes:
        trials: Its search trials.
        chosen: The identity (`run`) of the search trial its final runs retrain, or None when
            no search trial qualified.
        best: That trial's sampled values (None likewise).
    """

    trials: int
    chosen: str | None
    best: dict[str, Any] | None


@dataclass(frozen=True)
class SweepOutcome:
    """What a finished sweep says about itself.

    Attributes:
        parent_run_id: The sweep's parent run.
        teachers_trained: Teacher tasks this driver started.
        teacher_spans: (start, end) of each teacher task that trained, on the wall clock.
        methods: Per method, in sweep order, its outcome.
        missing: One sentence per planned final run that did not finish (empty: the record is whole).
    """

    parent_run_id: str
    teachers_trained: int
    teacher_spans: list[tuple[float, float]] = field(default_factory=list)
    methods: Mapping[str, MethodOutcome] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def _trainable(plan: SweepPlan, teacher_cache: Path, checkpoints: Path) -> Any:
    cpu, gpu = plan.space.resources.cpu, plan.space.resources.gpu
    fn = tune.with_parameters(
        run_trial,
        plan=plan,
        teacher_cache=str(teacher_cache),
        checkpoints=str(checkpoints),
        threads=max(1, int(cpu)),
        metric=plan.space.search.primary[0],
        mode=plan.space.search.primary[1],
    )
    return tune.with_resources(fn, {"cpu": cpu, "gpu": gpu})


def _sweep_tuner(plan: SweepPlan, folder: Path, trainable: Any, callbacks: list[Any], gate: TeacherGate) -> Any:
    scheduler = make_scheduler(plan)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=plan.space.search.primary[0],
            mode=plan.space.search.primary[1],
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


def _stop_if_interrupted(folder: Path, plan: SweepPlan, choices: Mapping[str, Mapping[str, Any]]) -> None:
    """Raises KeyboardInterrupt unless the experiment in `folder` ran every planned trial to its end:
    every method's search trials and the final runs of the choice on the searcher's record.

    Tune returns normally after Ctrl-C and marks the stopped trials terminated in memory; the
    experiment state it saved first still shows them unfinished, or lacks the planned trials not
    yet handed out, and --resume reads it.
    """
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(folder)).trials
    seen = {PlannedTrial.from_tune(t.config).identity for t in trials if PlannedTrial.in_tune(t.config)}
    planned: set[str] = set()
    for method_plan in plan.methods:
        method = method_plan.method
        if method not in choices:
            raise KeyboardInterrupt(f"interrupted before the search of {method} ended; continue with --resume")
        planned |= {
            PlannedTrial(method, Role.TRIAL, str(i)).identity for i in range(search_budget(method_plan, plan.space))
        }
        planned |= {run.identity for run in final_stage(plan, method, choices[method])}
    if planned - seen or any(t.status not in ("TERMINATED", "ERROR") for t in trials):
        raise KeyboardInterrupt(f"interrupted with trials unfinished in {folder}; continue with --resume")


def run_sweep(plan: SweepPlan, options: SweepOptions, log: Callable[[str], None]) -> SweepOutcome:
    """Runs the search and the final stage of every method (or resumes them); returns the outcome.

    Raises:
        HarnessInputError: the store refuses the client, a trial fits no node, or `--resume`
            meets another plan (before anything runs or is written).
        KeyboardInterrupt: interrupted (the parent run ends KILLED; `--resume` continues).
    """
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
    teacher_cache = storage / TEACHER_CACHE_FOLDER
    sweep_id = plan.space.name
    started = time.time()
    # Everything that can refuse, before Ray starts or anything is written.
    check_same_plan(plan, folder)
    check_sweep_state(folder, folder / TRIALS_FOLDER)
    check_storage(storage)
    probe_store(options.tracking_uri, options.experiment)
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
            **({Tag.OBJECTIVES: json.dumps(plan.space.search.objectives)} if plan.space.search.pareto else {}),
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
        methods = _search_and_final_stage(
            plan, options, parent.run_id, folder / TRIALS_FOLDER, teacher_cache, gate, log
        )
    except KeyboardInterrupt:
        parent.finish("KILLED", "interrupted; continue with harness sweep --resume")
        raise
    except HarnessInputError as exc:  # found only once Tune read its own state
        parent.finish("FAILED", str(exc))
        raise
    teacher_spans = teacher_outcomes(teachers, log)
    ended = end_orphans(options, sweep_id)
    if ended:
        log(f"{ended} run(s) a killed driver left RUNNING, and no planned trial claimed, ended KILLED")
    missing = missing_finals(plan, options, read_choices(folder / CHOICES_FILE))
    parent.log_metrics({"sweep_seconds": time.time() - started})
    parent.finish("FINISHED" if not missing else "FAILED", "; ".join(missing) or None)
    return SweepOutcome(parent.run_id, len(teachers), teacher_spans, methods, missing)


def check_storage(storage: Path) -> None:
    """The storage folder can be made (if missing) and takes files; nothing of the check stays.

    Raises:
        HarnessInputError: naming `--storage` and why it cannot be written.
    """
    try:
        check_writable_folder(storage)
    except OSError as exc:
        raise HarnessInputError(
            f"--storage {storage}: cannot make that folder or write there ({exc.strerror or exc})"
        ) from None


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
    # LIKE reads `_` (a space name may hold one) as any character: keep this sweep's runs only.
    ours = [run for run in runs if run.data.tags.get(Tag.TRIAL_ID, "").startswith(f"{sweep_id}/")]
    return [run for run in ours if run.data.tags.get(Tag.ROLE) in (Role.TRIAL, Role.FINAL, Role.FRONT)]


def end_orphans(options: SweepOptions, sweep_id: str) -> int:
    """Ends KILLED the sweep's runs still RUNNING once it is over (none of its trials claimed
    them: a killed driver made them for trials the resumed sweep did not run again)."""
    client = MlflowClient(options.tracking_uri)
    orphans = [run for run in _sweep_runs(options, sweep_id) if run.info.status == "RUNNING"]
    for run in orphans:
        client.set_tag(run.info.run_id, Tag.FAILURE_REASON, "orphaned: the sweep's driver stopped while it ran")
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(orphans)


def missing_finals(plan: SweepPlan, options: SweepOptions, choices: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per planned final run (of the choices on the searcher's record) whose MLflow
    run did not finish, and per method with no final run; empty when the record is whole."""
    status = {run.data.tags[Tag.TRIAL_ID]: run for run in _sweep_runs(options, plan.space.name)}
    missing = []
    for method_plan in plan.methods:
        method = method_plan.method
        best = (choices.get(method) or {}).get("values")
        if best is None:
            if plan.space.search.final_repeats:
                missing.append(f"{method}: no search trial finished, so no final run was made")
            continue
        for run in final_stage(plan, method, choices.get(method)):
            found = status.get(run.trial_id(plan.space.name))
            if found is None or found.info.status != "FINISHED":
                state = "never started" if found is None else found.info.status
                reason = "" if found is None else found.data.tags.get(Tag.FAILURE_REASON, "")
                missing.append(f"{method} final {run.run}: {state}{f' ({reason})' if reason else ''}")
    return missing


def _search_and_final_stage(
    plan: SweepPlan,
    options: SweepOptions,
    parent_run_id: str,
    folder: Path,
    teacher_cache: Path,
    gate: TeacherGate,
    log: Callable[[str], None],
) -> dict[str, MethodOutcome]:
    """Every method's search and final runs, as one Tune experiment in `folder`; returns each
    method's outcome, read from the searcher's record of its choices."""
    checkpoints = folder.parent / CHECKPOINTS_FOLDER
    trainable = _trainable(plan, teacher_cache, checkpoints)
    choices_file = folder.parent / CHOICES_FILE
    if options.resume and tune.Tuner.can_restore(str(folder)):
        # Errored trials stay errored: the searcher has counted them already and would ignore
        # a rerun's result (and a deterministic failure ends FAILED, not errored, anyway).
        try:
            tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=False)
        except Exception as exc:  # noqa: BLE001 - state that reads whole but does not restore
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise DamagedState(
                f"{folder}: the Tune experiment cannot be restored ({type(exc).__name__}: {first}); {FRESH_START}"
            ) from None
    else:
        callbacks = [
            MlflowTrialCallback(options.tracking_uri, options.experiment, parent_run_id, plan, checkpoints),
            WaitNotice(plan.space.resources),
            SweepProgress.for_plan(plan, choices=choices_file),
        ]
        tuner = _sweep_tuner(plan, folder, trainable, callbacks, gate)
    tuner.fit()
    choices = read_choices(choices_file)
    _stop_if_interrupted(folder, plan, choices)
    outcomes = {}
    for method_plan in plan.methods:
        method = method_plan.method
        chosen, best = choices[method]["run"], choices[method]["values"]
        if chosen is not None:  # the report names the configuration the final runs retrained
            trial = PlannedTrial(method, Role.TRIAL, chosen)
            tag_run(
                options.tracking_uri, options.experiment, trial.trial_id(plan.space.name), {Tag.BEST: contract.TRUE}
            )
        trials = search_budget(method_plan, plan.space)
        log(f"{method}: {trials} trials searched; best {best}")
        outcomes[method] = MethodOutcome(trials, chosen, best)
    return outcomes
