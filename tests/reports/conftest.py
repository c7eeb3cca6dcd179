"""Report fixtures: the smoke sweep's report, and a small real MLflow store written run by run.

The written store holds what a sweep with three final seeds would log (so standard deviations
and paired intervals are defined), with one method stopped short of its final stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from baselines.conversion import ConversionMethod
from harness import contract
from harness.contract import Capabilities, Role, Tag
from harness.tracking import TrackedRun

SEEDS = (1, 2, 3)
METHODS = ("kd", "direct", "conversion")
# What each method declares, as the sweep records it (conversion's own, with its ANN row).
CAPABILITIES = {
    "kd": Capabilities(needs_teacher=True),
    "direct": Capabilities(),
    "conversion": ConversionMethod.capabilities,
}
REFERENCE_T = 2
TIME_STEPS = (1, 2, 4)
NOISE = {"gaussian": [0.1, 0.2], "salt_pepper": [0.05]}


@pytest.fixture(scope="session")
def smoke_report(smoke_sweep) -> Path:
    """`report.md` of the session's smoke sweep, made as `harness sweep` makes it when it ends."""
    from harness.api import publish_report

    plan, options, summary = smoke_sweep
    report = publish_report(options, summary.parent_run_id)
    assert report is not None
    return report


def _accuracy(method: str, seed: int, steps: int, offset: float = 0.0) -> float:
    base = {"kd": 0.90, "direct": 0.86, "conversion": 0.70}[method]
    per_seed = 0.015 if method == "kd" else 0.01  # so that KD - baseline differs between seeds
    return round(base + per_seed * seed + 0.005 * steps - offset, 6)


def _final_metrics(method: str, seed: int, steps: int) -> dict[str, float]:
    clean = _accuracy(method, seed, steps)
    metrics = {
        "test_accuracy": clean,
        "val_accuracy": clean + 0.01,
        "firing_rate": 0.1 + 0.01 * seed,
        "acs": 1000.0 * seed,
        "macs": 500.0,
        "synops": 1000.0 * seed + 500.0,
        "energy_uj": 0.003 * seed,
        "params": 20000.0,
        "train_seconds": 2.0,
    }
    for kind, levels in NOISE.items():
        for level in levels:
            metrics[contract.noise_metric(kind, level)] = round(clean - level * (1.0 if method == "kd" else 1.5), 6)
    for t in TIME_STEPS:
        metrics[contract.timestep_metric(t)] = _accuracy(method, seed, t, offset=0.05)
    if method == "kd":
        metrics |= {contract.TEACHER_TEST_ACCURACY: 0.97 + 0.001 * seed, contract.TEACHER_PARAMS: 50000.0}
    return metrics


def _params(method: str, seed: int, steps: int, **extra: object) -> dict[str, str]:
    return {
        "method": method,
        "seed": str(seed),
        "snn.time_steps": str(steps),
        "dataset.name": "digits",
        "eval.reference_time_steps": str(REFERENCE_T),
        "eval.time_steps": json.dumps(list(TIME_STEPS)),
        "eval.noise": json.dumps(NOISE, sort_keys=True),
        **{key: str(value) for key, value in extra.items()},
    }


def write_store(
    uri: str,
    experiment: str,
    with_conversion_finals: bool = False,
    reference_only: bool = False,
    final_metrics: Mapping[str, Mapping[int, Mapping[str, float]]] | None = None,
    capabilities_tags: Mapping[str, str] | None = None,
) -> None:
    """A sweep-shaped experiment: KD and direct searched and retrained over SEEDS at every T (only at the
    reference T, from one fixed-seed teacher, when `reference_only`); conversion searched (one trial failed)
    and, unless asked, without final runs. `final_metrics` (method -> seed -> metrics) adds to or replaces
    the metrics of those final runs; `capabilities_tags` (method -> text) replaces a method's
    `harness.capabilities` tag on every run (an older store's)."""
    final_metrics = final_metrics or {}
    capabilities_tags = capabilities_tags or {}
    sweep_tags = {Tag.ROLE: Role.SWEEP, Tag.TRIAL_ID: "sweep", Tag.METHODS: ",".join(METHODS)}
    parent = TrackedRun(uri, experiment, "sweep-synthetic", sweep_tags)
    searched = {"kd": "kd.alpha,student.width", "direct": "student.width", "conversion": "conversion.levels"}
    for method in METHODS:
        for number, value in enumerate((0.2, 0.5, 0.8)):
            tags = _tags(parent, method, Role.TRIAL, f"{method}/trial/{number}", seed=0) | {
                Tag.SEARCHED: searched[method],
                **({Tag.CAPABILITIES: capabilities_tags[method]} if method in capabilities_tags else {}),
            }
            run = TrackedRun(uri, experiment, f"{method}-trial{number}", tags)
            run.log_params(_params(method, 0, REFERENCE_T, **{"kd.alpha": value, "student.width": 8 * (number + 1)}))
            run.log_metrics({contract.VAL_ACCURACY: 0.5 + value / 4, contract.TRAIN_SECONDS: 3.0}, step=1)
            if number == 2 and method == "conversion":
                run.finish("FAILED", "loss became NaN")
                continue
            if number == 0:
                run.set_tags({Tag.PRUNED: contract.TRUE})
            else:
                run.log_metrics({contract.TEST_ACCURACY: 0.5 + value / 4})
                if number == 2:  # the searcher's choice, which the final stage retrains
                    run.set_tags({Tag.BEST: contract.TRUE})
            run.finish("FINISHED")
        if method == "conversion" and not with_conversion_finals:
            continue
        steps_list = (REFERENCE_T,) if method == "conversion" or reference_only else TIME_STEPS
        for seed in SEEDS:
            for steps in steps_list:
                teacher_seed = 0 if reference_only else seed  # one fixed-seed teacher, or one per seed
                tags = _tags(parent, method, Role.FINAL, f"{method}/final/{seed}/{steps}", teacher_seed)
                if method in capabilities_tags:
                    tags[Tag.CAPABILITIES] = capabilities_tags[method]
                run = TrackedRun(uri, experiment, f"{method}-final-s{seed}-T{steps}", tags)
                run.log_params(_params(method, seed, steps, **{"kd.alpha": 0.8, "student.width": 24}))
                run.log_metrics(_final_metrics(method, seed, steps) | dict(final_metrics.get(method, {}).get(seed, {})))
                run.finish("FINISHED")
    parent.finish("FINISHED")


def _tags(parent: TrackedRun, method: str, role: Role, trial_id: str, seed: int) -> dict[str, str]:
    capabilities = CAPABILITIES[method]
    teacher = f"teacher-of-seed-{seed}" if capabilities.needs_teacher else None
    return contract.run_tags(role, method, trial_id, capabilities, parent_run_id=parent.run_id, teacher=teacher)


@pytest.fixture(scope="session")
def written_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with experiments `partial` (conversion has no final runs), `complete` (it has), and
    `reference-only` (complete, final stage at the reference T only, one teacher)."""
    folder = tmp_path_factory.mktemp("written_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    write_store(uri, "partial")
    write_store(uri, "complete", with_conversion_finals=True)
    write_store(uri, "reference-only", with_conversion_finals=True, reference_only=True)
    return uri


@pytest.fixture
def read_csv() -> Callable[[Path], dict[str, dict[str, str]]]:
    """`read_csv(path)`: a table's CSV as {row label: {column: text}}."""
    import csv

    def read(path: Path) -> dict[str, dict[str, str]]:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        first = next(iter(rows[0])) if rows else ""
        return {row[first]: row for row in rows}

    return read
