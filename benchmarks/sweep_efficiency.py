"""Sweep efficiency: how much of a sweep's slot time goes into trials, and where the rest goes.

Runs a real sweep (`harness.sweep.plan.plan_sweep` + `harness.sweep.run.run_sweep`, local Ray, a fresh SQLite
MLflow store in a temporary folder) and reads back:

* per-trial compute: Ray Tune's `time_total_s` of each trial (search trials and final runs of
  every method share one Tune experiment, `<storage>/<name>/trials`; everything the trainable
  does: data, model, epochs, validation, final evaluation, checkpoint writes);
* per-trial lifetime on the driver: the MLflow run's start to end (the callback opens it
  when Tune starts the trial and closes it when Tune reports it complete);
* the training alone: the trial's `train_seconds` metric.

`utilization = (sum(time_total_s) + teacher task time) / (wall from Ray's start to the last
trial's end x slots)`, slots = min(search.max_concurrent, CPUs / resources.cpu): teachers train
in a slot beside the trials that need none, so their time is slot time used too. The slot
time not used is split into time with no trial running (Tuner setup, results) and time with fewer trials than slots (the
sweep's tail, a method's final runs waiting for its search, or a trial start in progress). Overheads per trial:
Ray/Tune = MLflow lifetime - time_total_s; in the trainable = time_total_s - train_seconds.
Teacher cache: teachers trained by the sweep against trials that use a teacher.

    python benchmarks/sweep_efficiency.py --quick    # smoke.yaml (digits) with longer trials
    python benchmarks/sweep_efficiency.py            # search_spaces/kd.yaml (hours on 2 cores)
    python benchmarks/sweep_efficiency.py --space search_spaces/kd.yaml --set train.epochs=1
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from benchlib import REPO, fmt, median, publish, set_threads, table

SMOKE = REPO / "search_spaces" / "smoke.yaml"
# --quick: smoke.yaml (digits, tiny ResNets, all three methods) with trials long enough that
# the experiment's fixed start-up (trial actors importing torch and Ray Tune, about 5 s) does
# not dominate, as it does not in a real sweep; about 2 minutes on 2 cores.
QUICK_EDITS = {"fixed": {"dataset.name": "mnist-5k", "train.epochs": 3}, "search": {"num_samples": 4}}


def quick_space(folder: Path) -> Path:
    """smoke.yaml with `QUICK_EDITS`, written to `folder`."""
    space = yaml.safe_load(SMOKE.read_text())
    for section, values in QUICK_EDITS.items():
        space[section].update(values)
    path = folder / "sweep-quick.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


DEFAULT = REPO / "search_spaces" / "kd.yaml"


def record_fits(stages: list[dict[str, Any]]) -> None:
    """Wraps `tune.Tuner.fit` to record each stage's name, start and end (sweep.py unchanged)."""
    from ray import tune

    fit = tune.Tuner.fit

    def timed_fit(self: Any) -> Any:
        name = self._local_tuner.get_run_config().name if self._local_tuner else "?"
        stage = {"name": name, "start": time.time()}
        try:
            return fit(self)
        finally:
            stage["end"] = time.time()
            stages.append(stage)

    tune.Tuner.fit = timed_fit  # type: ignore[method-assign]


def run(space: Path, folder: Path, cpus: int, overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Runs the sweep of `space` under `folder`; returns its summary and stage timestamps."""
    import ray

    from harness.sweep.plan import plan_sweep
    from harness.sweep.run import SweepOptions, run_sweep

    plan = plan_sweep(space, overrides)
    options = SweepOptions(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment=plan.space.name, storage=folder / "runs"
    )
    marks: dict[str, float] = {}

    def log(message: str) -> None:
        del message  # the sweep's own progress lines; the figures come from the store and Tune

    stages: list[dict[str, Any]] = []
    record_fits(stages)
    started = time.time()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    marks["ray_ready"] = time.time()
    try:
        summary = run_sweep(plan, options, log)
    finally:
        ended = time.time()
        ray.shutdown()
    return {"plan": plan, "options": options, "summary": summary, "started": started, "ended": ended,
            "stages": stages, **marks}  # fmt: skip


def tune_trials(storage: Path, name: str) -> dict[str, dict[str, Any]]:
    """`time_total_s` and status of every Tune trial of the sweep, keyed `<role>/<method>/<run>`
    (the trial's identity in the plan, as in its MLflow run's `harness.trial_id`)."""
    from ray.tune import ExperimentAnalysis

    from harness.sweep.protocol import PlannedTrial
    from harness.sweep.run import TRIALS_FOLDER

    trials: dict[str, dict[str, Any]] = {}
    for trial in ExperimentAnalysis(str(storage / name / TRIALS_FOLDER)).trials:
        last = trial.last_result or {}
        key = PlannedTrial.from_tune(trial.config).identity
        trials[key] = {"time_total_s": float(last.get("time_total_s", 0.0)), "status": trial.status}
    return trials


def mlflow_runs(tracking_uri: str, experiment: str) -> dict[str, dict[str, Any]]:
    """Start, end and `train_seconds` of every trial/final MLflow run, keyed like `tune_trials`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs: dict[str, dict[str, Any]] = {}
    for r in client.search_runs([exp.experiment_id], max_results=5000):
        role = r.data.tags.get("harness.role")
        if role not in ("trial", "final"):
            continue
        _, role_, method, run = r.data.tags["harness.trial_id"].split("/")
        runs[f"{role_}/{method}/{run}"] = {
            "start": r.info.start_time / 1000,
            "end": (r.info.end_time or r.info.start_time) / 1000,
            "train_seconds": r.data.metrics.get("train_seconds", float("nan")),
            "pruned": r.data.tags.get("harness.pruned") == "true",
        }
    return runs


def idle_split(intervals: list[tuple[float, float]], start: float, end: float, slots: int) -> dict[str, float]:
    """Unused slot-seconds in [start, end]: with no trial running, and with fewer than `slots`."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running, last, none, partial = 0, start, 0.0, 0.0
    for moment, step in [*events, (end, 0)]:
        span = max(0.0, min(moment, end) - max(last, start))
        if running == 0:
            none += span * slots
        elif running < slots:
            partial += span * (slots - running)
        running, last = running + step, max(last, moment)
    return {"no_trial_running": none, "fewer_trials_than_slots": partial}


def analyse(outcome: dict[str, Any], cpus: int) -> dict[str, Any]:
    """Utilization, overheads and the teacher-cache saving of a finished sweep."""
    plan, options = outcome["plan"], outcome["options"]
    space = plan.space
    slots = int(min(space.search.max_concurrent, cpus // max(space.resources.cpu, 1e-9)))
    tune = tune_trials(options.storage.resolve(), space.name)
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    keys = sorted(set(tune) & set(runs))
    teachers = [tuple(span) for span in outcome["summary"]["teacher_spans"]]
    teacher_compute = sum(end - start for start, end in teachers)
    compute = sum(tune[k]["time_total_s"] for k in keys)
    wall = outcome["ended"] - outcome["ray_ready"]
    ray_overhead = [runs[k]["end"] - runs[k]["start"] - tune[k]["time_total_s"] for k in keys]
    in_trainable = [tune[k]["time_total_s"] - runs[k]["train_seconds"] for k in keys]
    intervals = [(runs[k]["start"], runs[k]["end"]) for k in keys] + teachers
    stages = stage_breakdown(outcome["stages"], tune, runs, outcome["ended"])
    teacher_trials = sum(1 for k in keys if plan.of(k.split("/")[1]).capabilities.needs_teacher)
    return {
        "space": plan.source,
        "slots": slots,
        "trials": len(keys),
        "pruned": sum(runs[k]["pruned"] for k in keys),
        "wall_s": {
            "total": outcome["ended"] - outcome["started"],
            "ray_start": outcome["ray_ready"] - outcome["started"],
            "trials_and_teachers": wall,
        },
        "trial_compute_s": compute,
        "teacher_compute_s": teacher_compute,
        "utilization": (compute + teacher_compute) / (wall * slots),
        "lifetime_utilization": sum(e - s for s, e in intervals) / (wall * slots),
        "idle_slot_s": idle_split(intervals, outcome["ray_ready"], outcome["ended"], slots),
        "per_trial_overhead_s": {
            "ray_tune_mlflow_median": median(ray_overhead),
            "ray_tune_mlflow_total": sum(ray_overhead),
            "in_trainable_median": median(in_trainable),
        },
        "stages": stages,
        "projection": projection(tune, runs, stages, slots),
        "trials_detail": {k: {**runs[k], "time_total_s": tune[k]["time_total_s"]} for k in keys},
        "teachers_trained": outcome["summary"]["teachers_trained"],
        "trials_using_a_teacher": teacher_trials,
    }


def stage_breakdown(stages: list[dict[str, Any]], tune: dict, runs: dict, ended: float) -> list[dict[str, Any]]:
    """Per Tune experiment (the sweep runs one): wall, trial compute, start-up before its first
    trial, wind-down after its last, and the driver's time after it."""
    keys = [k for k in runs if k in tune]
    starts, ends = [runs[k]["start"] for k in keys], [runs[k]["end"] for k in keys]
    return [
        {
            "stage": stage["name"],
            "trials": len(keys),
            "wall_s": stage["end"] - stage["start"],
            "compute_s": sum(tune[k]["time_total_s"] for k in keys),
            "to_first_trial_s": (min(starts) - stage["start"]) if starts else float("nan"),
            "after_last_trial_s": (stage["end"] - max(ends)) if ends else float("nan"),
            "driver_before_next_s": ended - stage["end"],
        }
        for stage in stages
    ]


def list_schedule(durations: list[float], slots: int) -> float:
    """Makespan of greedy list scheduling: each job in order goes to the first free slot."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def projection(tune: dict, runs: dict, stages: list[dict[str, Any]], slots: int) -> dict[str, float]:
    """A bound to read the measured wall against: this sweep's measured trial times scheduled
    longest first on `slots` with no dependencies (a method's final runs may not really start
    before its search ends), plus the measured start-up of the experiment."""
    durations = sorted((tune[k]["time_total_s"] for k in set(tune) & set(runs)), reverse=True)
    startup = stages[0]["to_first_trial_s"] if stages else 0.0
    bound = startup + list_schedule(durations, slots)
    return {
        "stage_startup_s": startup,
        "model_wall_longest_first_s": bound,
        "bound_utilization": sum(durations) / (slots * bound) if bound else float("nan"),
    }


def report(result: dict[str, Any]) -> str:
    """The Markdown summary of one sweep."""
    w, idle, over = result["wall_s"], result["idle_slot_s"], result["per_trial_overhead_s"]
    rows = [
        ["trials (pruned)", f"{result['trials']} ({result['pruned']})"],
        ["slots", result["slots"]],
        ["wall: Ray start / trials and teachers (s)", f"{fmt(w['ray_start'], 1)} / {fmt(w['trials_and_teachers'], 1)}"],
        ["compute: trials time_total_s / teachers (s)",
         f"{fmt(result['trial_compute_s'], 1)} / {fmt(result['teacher_compute_s'], 1)}"],
        ["**utilization**", f"**{fmt(result['utilization'], 3)}**"],
        ["slot time inside trial lifetimes", fmt(result["lifetime_utilization"], 3)],
        ["unused slot-s: no trial running / fewer trials than slots",
         f"{fmt(idle['no_trial_running'], 1)} / {fmt(idle['fewer_trials_than_slots'], 1)}"],
        ["per-trial Ray+Tune+MLflow overhead, median (s)", fmt(over["ray_tune_mlflow_median"], 2)],
        ["per-trial in-trainable time beyond train epochs, median (s)", fmt(over["in_trainable_median"], 2)],
        ["teachers trained / trials using a teacher",
         f"{result['teachers_trained']} / {result['trials_using_a_teacher']}"],
    ]  # fmt: skip
    stage_rows = [[st["stage"], st["trials"], fmt(st["wall_s"], 1), fmt(st["compute_s"], 1),
                   fmt(st["to_first_trial_s"], 1), fmt(st["after_last_trial_s"], 1), fmt(st["driver_before_next_s"], 1)]
                  for st in result["stages"]]  # fmt: skip
    stage_headers = ["stage", "trials", "wall s", "trial compute s", "to first trial s", "after last trial s",
                     "driver before next s"]  # fmt: skip
    proj = result["projection"]
    model_rows = [
        ["experiment start-up to the first trial (s)", fmt(proj["stage_startup_s"], 1)],
        ["bound: these trials longest first, no dependencies (s)", fmt(proj["model_wall_longest_first_s"], 1)],
        ["bound: utilization", fmt(proj["bound_utilization"], 3)],
    ]
    return "\n\n".join(
        [table(["sweep", "value"], rows), table(stage_headers, stage_rows), table(["projection", "value"], model_rows)]
    )


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`key=value` pairs, values read as YAML."""
    return [(k, yaml.safe_load(v)) for k, _, v in (item.partition("=") for item in items)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke.yaml with QUICK_EDITS instead of kd.yaml")
    parser.add_argument("--space", type=Path, help="search-space file (overrides --quick's choice)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs given to Ray")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(1)  # the driver; trials set their own threads from resources.cpu
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        space = args.space or (quick_space(Path(tmp)) if args.quick else DEFAULT)
        outcome = run(space, Path(tmp), args.cpus, parse_overrides(args.overrides))
        result = analyse(outcome, args.cpus)
    result["overrides"] = args.overrides
    publish("sweep_efficiency", result, report(result), quick=args.quick, out=args.out, headline="utilization")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
