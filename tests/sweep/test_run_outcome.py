"""The end of a sweep without Ray: `harness.sweep.run.missing_finals` on a real SQLite MLflow store
(planned final runs finished, failed, left running, never made; a method with no choice), and
`harness sweep`'s exit code and `harness: missing:` lines with `harness.api.sweep` replaced by one
that returns a prepared outcome (the CLI's part is only printing and the exit code).

`harness.sweep.run._stop_if_interrupted` needs a Tune experiment on disk and is left to the sweep tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import api
from harness.cli import main
from harness.contract import Role, Tag
from harness.run_spec import run_spec
from harness.sweep.plan import SweepPlan, plan_sweep
from harness.sweep.protocol import PlannedTrial
from harness.sweep.run import MethodOutcome, SweepOptions, SweepOutcome, end_orphans, missing_finals
from harness.sweep.search import CHOICES_FILE, read_choices, record_choice
from harness.tracking import TrialRecorder

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"
EXPERIMENT = "smoke-digits"
KD_BEST = {"student.width": 4, "snn.time_steps": 2, "kd.alpha": 0.5}  # final runs s1-T2, s1-T1
DIRECT_BEST = {"student.width": 8, "snn.time_steps": 3}  # final runs s1-T3, s1-T2, s1-T1
NAN = "loss became NaN or infinite in epoch 2 (by batch 3); lower train.lr or check the data"


@pytest.fixture(scope="module")
def smoke() -> SweepPlan:
    return plan_sweep(SMOKE)


@pytest.fixture
def options(smoke_store, tmp_path: Path) -> SweepOptions:
    uri, _ = smoke_store(tmp_path)
    return SweepOptions(tracking_uri=uri, experiment=EXPERIMENT, storage=tmp_path)


def record_final(
    plan: SweepPlan,
    options: SweepOptions,
    planned: PlannedTrial,
    status: str | None,
    reason: str | None = None,
    sweep: str = EXPERIMENT,
) -> None:
    """The MLflow run of a final run, as the sweep's callback writes it; ended with `status` (None: left RUNNING)."""
    spec = run_spec(planned.resolve(plan), Role.FINAL, planned.trial_id(sweep), run=planned.run)
    recorder = TrialRecorder(options.tracking_uri, options.experiment, spec)
    if status is not None:
        recorder.finish(status, reason)


def final(method: str, run: str, values: dict[str, Any], t: int | None) -> PlannedTrial:
    steps = {} if t is None else {"snn.time_steps": t}
    return PlannedTrial(method, Role.FINAL, run, {**values, **steps, "seed": 1})


def test_missing_finals_names_every_final_run_that_did_not_finish(
    smoke: SweepPlan, options: SweepOptions, tmp_path: Path
) -> None:
    choices = tmp_path / CHOICES_FILE
    record_choice(choices, "kd", "1", KD_BEST)
    record_choice(choices, "direct", "2", DIRECT_BEST)
    record_choice(choices, "conversion", None, None)  # no search trial qualified
    record_final(smoke, options, final("kd", "s1-T2", KD_BEST, 2), "FINISHED")
    record_final(smoke, options, final("kd", "s1-T1", KD_BEST, 1), "FAILED", NAN)
    record_final(smoke, options, final("direct", "s1-T3", DIRECT_BEST, 3), "FINISHED")
    record_final(smoke, options, final("direct", "s1-T2", DIRECT_BEST, 2), None)  # a killed driver left it RUNNING
    # direct s1-T1 was never made; another sweep's finished run of the same identity does not count.
    record_final(smoke, options, final("direct", "s1-T1", DIRECT_BEST, 1), "FINISHED", sweep="other-sweep")
    assert missing_finals(smoke, options, read_choices(choices)) == [
        f"kd final s1-T1: FAILED ({NAN})",
        "direct final s1-T2: RUNNING",
        "direct final s1-T1: never started",
        "conversion: no search trial finished, so no final run was made",
    ]


def test_missing_finals_is_empty_when_every_planned_final_run_finished(
    smoke: SweepPlan, options: SweepOptions, tmp_path: Path
) -> None:
    conversion_best = {"student.width": 4, "conversion.levels": 8}
    choices = {
        "kd": {"run": "1", "values": KD_BEST},
        "direct": {"run": "0", "values": DIRECT_BEST},
        "conversion": {"run": "2", "values": conversion_best},
    }
    for planned in (
        final("kd", "s1-T2", KD_BEST, 2),
        final("kd", "s1-T1", KD_BEST, 1),
        final("direct", "s1-T3", DIRECT_BEST, 3),
        final("direct", "s1-T2", DIRECT_BEST, 2),
        final("direct", "s1-T1", DIRECT_BEST, 1),
        final("conversion", "s1", conversion_best, None),
    ):
        record_final(smoke, options, planned, "FINISHED")
    assert missing_finals(smoke, options, choices) == []
    # Runs are matched by identity (method, seed, T), not by the values: a kd choice whose best T
    # is 3 adds the final run s1-T3, which is not there.
    choices["kd"]["values"] = {**KD_BEST, "snn.time_steps": 3}
    assert missing_finals(smoke, options, choices) == ["kd final s1-T3: never started"]


def test_missing_finals_of_a_method_without_a_choice_or_with_no_choice_on_record(
    smoke: SweepPlan, options: SweepOptions, tmp_path: Path
) -> None:
    assert missing_finals(smoke, options, {}) == [
        "kd: no search trial finished, so no final run was made",
        "direct: no search trial finished, so no final run was made",
        "conversion: no search trial finished, so no final run was made",
    ]
    space = yaml.safe_load(SMOKE.read_text())
    space["search"]["final_repeats"] = 0  # no final stage: nothing is missing
    path = tmp_path / "no-finals.yaml"
    path.write_text(yaml.safe_dump(space))
    no_finals = plan_sweep(path)
    assert missing_finals(no_finals, options, {"kd": {"run": None, "values": None}}) == []
    assert missing_finals(no_finals, options, {"kd": {"run": "0", "values": KD_BEST}}) == []


# --- runs a killed driver left RUNNING ----------------------------------------------------


def _status(options: SweepOptions, trial_id: str) -> tuple[str, str | None]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment).experiment_id
    (run,) = client.search_runs([experiment], f"tags.`{Tag.TRIAL_ID}` = '{trial_id}'")
    return run.info.status, run.data.tags.get(Tag.FAILURE_REASON)


def test_end_orphans_ends_the_sweeps_running_runs_killed_and_leaves_the_rest(
    smoke: SweepPlan, options: SweepOptions
) -> None:
    record_final(smoke, options, final("kd", "s1-T2", KD_BEST, 2), None)
    record_final(smoke, options, final("kd", "s1-T1", KD_BEST, 1), "FINISHED")
    record_final(smoke, options, final("direct", "s1-T2", DIRECT_BEST, 2), None, sweep="smoke-digits2")
    assert end_orphans(options, EXPERIMENT) == 1
    reason = "orphaned: the sweep's driver stopped while it ran"
    assert _status(options, "smoke-digits/final/kd/s1-T2") == ("KILLED", reason)
    assert _status(options, "smoke-digits/final/kd/s1-T1") == ("FINISHED", None)
    assert _status(options, "smoke-digits2/final/direct/s1-T2") == ("RUNNING", None)  # another sweep's run


def test_end_orphans_leaves_the_running_runs_of_a_sweep_whose_name_differs_only_where_this_one_has_an_underscore(
    smoke: SweepPlan, options: SweepOptions
) -> None:
    record_final(smoke, options, final("kd", "s1-T2", KD_BEST, 2), None, sweep="kd-a")  # still running elsewhere
    assert end_orphans(options, "kd_a") == 0
    assert _status(options, "kd-a/final/kd/s1-T2") == ("RUNNING", None)


# --- harness sweep's exit code -------------------------------------------------------------


def _fake_sweep(options: SweepOptions, missing: list[str], seen: dict[str, Any]) -> Callable[..., api.SweepResult]:
    def sweep(space: Any, **kwargs: Any) -> api.SweepResult:
        seen.update(kwargs, space=space)
        outcome = SweepOutcome(
            parent_run_id="parent-1",
            teachers_trained=1,
            methods={"kd": MethodOutcome(3, "1", {"kd.alpha": 0.5}), "direct": MethodOutcome(3, None, None)},
            missing=missing,
        )
        return api.SweepResult(options, outcome, report=None)

    return sweep


def test_harness_sweep_exits_1_and_prints_each_missing_final_run(
    options: SweepOptions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = [f"kd final s1-T1: FAILED ({NAN})", "direct: no search trial finished, so no final run was made"]
    seen: dict[str, Any] = {}
    monkeypatch.setattr(api, "sweep", _fake_sweep(options, missing, seen))
    code = main(["sweep", "--space", str(SMOKE), "--set", "train.epochs=2", "--tracking-uri", options.tracking_uri])
    assert code == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"harness: missing: kd final s1-T1: FAILED ({NAN})",
        "harness: missing: direct: no search trial finished, so no final run was made",
        "harness: 2 planned final run(s) did not finish (listed above and in the report's Missing section)",
    ]
    assert "kd: 3 trials; best {'kd.alpha': 0.5}" in out.splitlines()
    assert f"MLflow: experiment 'smoke-digits' at {options.tracking_uri} (parent run parent-1)" in out
    assert seen["overrides"] == [("train.epochs", 2)]  # the CLI parsed --set as YAML
    assert seen["space"] == SMOKE


def test_harness_sweep_exits_0_without_missing_final_runs(
    options: SweepOptions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(api, "sweep", _fake_sweep(options, [], {}))
    assert main(["sweep", "--space", str(SMOKE)]) == 0
    out, err = capsys.readouterr()
    assert "harness: missing" not in err
    assert "direct: 3 trials; best None" in out.splitlines()
    assert f"Open the MLflow UI with: harness ui --tracking-uri {options.tracking_uri}, then:" in out
