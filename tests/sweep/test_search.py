"""The sweep's searcher and scheduler, driven directly (no Ray): methods stay apart, final runs
follow each method's own search, and the state survives a save/restore."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from harness.contract import Role
from harness.sweep.front import pick_best
from harness.sweep.protocol import PlannedTrial
from harness.sweep.schedule import MethodScheduler
from harness.sweep.search import SweepSearcher
from harness.sweep.studies import DefineByRun

ALPHA = {"kd.alpha": optuna.distributions.FloatDistribution(0.1, 0.9)}


def _optuna(dims: dict) -> OptunaSearch:
    sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True)
    return OptunaSearch(space=DefineByRun(dims), metric="val_accuracy", mode="max", sampler=sampler)


def _final_runs(method: str, best: dict) -> list[PlannedTrial]:
    return [PlannedTrial(method, Role.FINAL, f"s{seed}", {**best, "seed": seed}) for seed in (1, 2)]


def _restored(folder: Path) -> SweepSearcher:
    """The searcher as Tune restores it from the experiment's last save."""
    searcher = SweepSearcher.__new__(SweepSearcher)
    searcher.restore_from_dir(str(folder))
    return searcher


def _searcher(budget: int = 2, choices: Path | None = None) -> SweepSearcher:
    return SweepSearcher(
        searchers={"kd": _optuna(ALPHA), "direct": None},
        budget={"kd": budget, "direct": 1},
        final_runs=_final_runs,
        metric="val_accuracy",
        mode="max",
        choices=choices,
    )


def test_pick_best_prefers_complete_trials_then_the_metric_and_keeps_the_earliest_tie() -> None:
    candidates = [
        ({"val_accuracy": 0.9}, False),  # pruned (no test_accuracy)
        ({"val_accuracy": 0.7, "test_accuracy": 0.7}, False),
        ({"val_accuracy": 0.8, "test_accuracy": 0.8}, False),
        ({"val_accuracy": 0.8, "test_accuracy": 0.8}, False),  # a tie: the earlier one wins
        ({"val_accuracy": 1.0, "test_accuracy": 1.0}, True),  # errored
        ({"val_accuracy": float("-inf"), "harness_failure_reason": "loss became NaN"}, False),
    ]
    assert pick_best(candidates, "val_accuracy", "max") == 2
    assert pick_best(candidates[:1], "val_accuracy", "min") == 0
    assert pick_best([(None, True), ({}, False)], "val_accuracy", "max") is None


def test_search_trials_alternate_methods_and_final_runs_follow_each_search() -> None:
    searcher = _searcher()
    first, second, third = (searcher.suggest(f"t{i}") for i in range(3))
    assert (first["method"], second["method"], third["method"]) == ("kd", "direct", "kd")
    assert set(first) == {"method", "role", "run", "kd.alpha"} and first["role"] == "trial"
    assert (first["run"], third["run"]) == ("0", "1")  # each trial's identity: its method's search index
    assert second == {"method": "direct", "role": "trial", "run": "0"}  # nothing to sample: its fixed config
    assert searcher.suggest("t3") is None  # every search trial handed out; none has ended

    assert not searcher.done
    searcher.on_trial_complete("t1", {"val_accuracy": 0.5, "test_accuracy": 0.5})  # direct's search ends
    finals = [searcher.suggest(f"f{i}") for i in range(2)]
    assert finals == [{"method": "direct", "role": "final", "seed": s, "run": f"s{s}"} for s in (1, 2)]
    assert searcher.suggest("t4") is None  # kd still searches

    searcher.on_trial_complete("t0", {"val_accuracy": 0.6, "test_accuracy": 0.6})
    searcher.on_trial_complete("f0", {"val_accuracy": 0.5, "test_accuracy": 0.5})  # a final run: ignored
    assert searcher.suggest("t5") is None
    searcher.on_trial_complete("t2", {"val_accuracy": 0.9, "test_accuracy": 0.9})
    kd_finals = [searcher.suggest(f"k{i}") for i in range(2)]
    assert [run["kd.alpha"] for run in kd_finals] == [third["kd.alpha"]] * 2  # the better kd trial
    assert searcher.chosen == {"direct": "0", "kd": "1"}  # the identities the sweep tags harness.best
    assert searcher.done
    assert searcher.suggest("t6") == Searcher.FINISHED


def test_a_method_whose_trials_all_failed_gets_no_final_runs() -> None:
    searcher = _searcher(budget=1)
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"val_accuracy": 0.5, "test_accuracy": 0.5})
    assert searcher.best["kd"] is None and searcher.chosen["kd"] is None
    assert [searcher.suggest(f"f{i}")["method"] for i in range(2)] == ["direct", "direct"]
    assert searcher.suggest("end") == Searcher.FINISHED


def test_the_searcher_state_survives_save_and_restore(tmp_path: Path) -> None:
    searcher = _searcher()
    for trial_id in ("t0", "t1"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("t1", {"val_accuracy": 0.5, "test_accuracy": 0.5})
    searcher.save_to_dir(str(tmp_path))  # as Tune saves it with the experiment
    restored = _restored(tmp_path)
    assert restored.suggest("t2")["method"] == "kd"  # the round-robin goes on where it was
    assert restored.suggest("f0") == {"method": "direct", "role": "final", "seed": 1, "run": "s1"}  # still queued
    assert restored.suggest("f1")["seed"] == 2
    assert restored.suggest("t3") is None


def test_a_pending_search_trial_goes_before_final_runs_and_the_longest_final_runs_go_first() -> None:
    """direct's search ends first, but kd's second trial still goes out before direct's final
    runs; and kd's final runs, whose trials took longer per epoch, overtake direct's in the queue."""
    searcher = _searcher()
    searcher.suggest("k0"), searcher.suggest("d0")
    searcher.on_trial_complete("d0", {"val_accuracy": 0.5, "test_accuracy": 0.5, "epoch": 4, "time_total_s": 40.0})
    assert searcher.suggest("k1")["role"] == "trial"  # before direct's queued final runs
    assert searcher.suggest("f0")["method"] == "direct"
    searcher.on_trial_complete("k0", {"val_accuracy": 0.6, "test_accuracy": 0.6, "epoch": 4, "time_total_s": 80.0})
    searcher.on_trial_complete("k1", {"val_accuracy": 0.4, "epoch": 1, "time_total_s": 30.0})  # pruned early
    assert searcher.run_seconds == {"direct": 40.0, "kd": 100.0}  # mean 25 s per epoch, 4 epochs reached
    order = [(run["method"], run["seed"]) for run in (searcher.suggest(f"f{i}") for i in range(1, 4))]
    assert order == [("kd", 1), ("kd", 2), ("direct", 2)]


def test_run_seconds_skips_trials_without_a_time() -> None:
    from harness.sweep.search import expected_run_seconds

    assert expected_run_seconds([(None, True), ({"epoch": 2}, False)]) == 0.0
    assert expected_run_seconds([({"epoch": 2, "time_total_s": 10.0}, False), (None, True)]) == 10.0


def test_a_choice_on_record_stands_when_a_resumed_search_ends_again(tmp_path: Path) -> None:
    """A driver killed after kd's choice (its final runs started) but before Tune saved the
    searcher: the resumed searcher reruns kd's last trial, which now ends better (say an older
    ASHA state no longer prunes it), and still retrains the configuration chosen first."""
    choices = tmp_path / "choices.json"
    searcher = _searcher(choices=choices)
    first, _, second = (searcher.suggest(f"t{i}") for i in range(3))
    searcher.save_to_dir(str(tmp_path))  # Tune's last save: no kd trial has ended
    searcher.on_trial_complete("t0", {"val_accuracy": 0.9, "test_accuracy": 0.9})
    searcher.on_trial_complete("t2", {"val_accuracy": 0.5})  # pruned
    assert searcher.chosen["kd"] == "0" and searcher.suggest("k0")["kd.alpha"] == first["kd.alpha"]

    resumed = _restored(tmp_path)
    resumed.on_trial_complete("t0", {"val_accuracy": 0.9, "test_accuracy": 0.9})
    resumed.on_trial_complete("t2", {"val_accuracy": 0.95, "test_accuracy": 0.95})  # would win now
    assert resumed.chosen["kd"] == "0" and resumed.best["kd"] == {"kd.alpha": first["kd.alpha"]}
    assert resumed.suggest("k0-new")["kd.alpha"] == first["kd.alpha"] != second["kd.alpha"]


def _trial(trial_id: str, method: str, role: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config=PlannedTrial(method, Role(role), trial_id).to_tune())


@pytest.mark.parametrize("role", ["trial", "final"])
def test_the_scheduler_prunes_search_trials_per_method_and_never_final_runs(role: str) -> None:
    def asha() -> ASHAScheduler:
        return ASHAScheduler(time_attr="training_iteration", metric="val_accuracy", mode="max", max_t=4, grace_period=1)

    scheduler = MethodScheduler({"kd": asha(), "direct": asha()})
    good, other_method, bad = _trial("a", "kd", "trial"), _trial("b", "direct", role), _trial("c", "kd", role)
    for trial in (good, other_method, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"training_iteration": 1, "val_accuracy": 0.9}) == "CONTINUE"
    # direct's rung holds only its own trials: a worse value than kd's does not prune it
    decision = scheduler.on_trial_result(None, other_method, {"training_iteration": 1, "val_accuracy": 0.1})
    assert decision == TrialScheduler.CONTINUE
    decision = scheduler.on_trial_result(None, bad, {"training_iteration": 1, "val_accuracy": 0.1})
    assert decision == (TrialScheduler.STOP if role == "trial" else TrialScheduler.CONTINUE)


def test_a_trial_handed_out_after_the_last_save_is_handed_out_again_with_its_identity(tmp_path: Path) -> None:
    """A driver killed after handing out a trial: the searcher restored from its last save
    suggests the same planned trial again (same identity, same values), as a new Tune trial."""
    searcher = _searcher()
    searcher.suggest("t0"), searcher.suggest("t1")
    searcher.save_to_dir(str(tmp_path))
    lost = searcher.suggest("t2")  # handed out, then the driver dies
    again = _restored(tmp_path).suggest("t2-new")
    assert again == lost and again["run"] == "1"


def test_ended_search_trials_are_mirrored_once_into_a_sqlite_study_per_method(tmp_path: Path) -> None:
    from harness.sweep.studies import StudyMirror

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    mirror = StudyMirror(storage, {"kd": ALPHA}, "max")
    searcher = SweepSearcher(
        searchers={"kd": _optuna(ALPHA)},
        budget={"kd": 3},
        final_runs=_final_runs,
        metric="val_accuracy",
        mode="max",
        mirror=mirror,
    )
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", {"val_accuracy": 0.7, "test_accuracy": 0.7, "epoch": 2})
    searcher.on_trial_complete("t1", {"val_accuracy": 0.4, "epoch": 1})  # pruned: no test accuracy
    searcher.on_trial_complete("t2", None, error=True)
    mirror.record(
        "kd", "0", {"kd.alpha": suggested[0]["kd.alpha"]}, {"val_accuracy": 0.7, "test_accuracy": 0.7}, "val_accuracy"
    )
    study = optuna.load_study(study_name="kd", storage=storage)  # what optuna-dashboard reads
    trials = sorted(study.trials, key=lambda t: t.user_attrs["harness_run"])
    assert [t.user_attrs["harness_run"] for t in trials] == ["0", "1", "2"]  # once each, the repeat ignored
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].value == 0.7 and trials[0].params["kd.alpha"] == suggested[0]["kd.alpha"]
    assert study.best_trial.user_attrs["harness_run"] == "0"


def test_the_schedulers_rungs_survive_a_resume() -> None:
    import pickle

    from harness.sweep.schedule import SchedulerState

    def scheduler() -> MethodScheduler:
        return MethodScheduler({"kd": ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=4)})

    before = scheduler()
    for number, accuracy in enumerate((0.9, 0.8)):
        trial = _trial(f"t{number}", "kd", "trial")
        before.on_trial_add(None, trial)
        before.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": accuracy})
    state = pickle.loads(pickle.dumps(SchedulerState(before).get_state()))  # as Tune saves it
    after = scheduler()
    SchedulerState(after).set_state(state)
    late = _trial("t2", "kd", "trial")
    after.on_trial_add(None, late)
    # Against the restored rung (0.9, 0.8) a weak trial is stopped; against empty rungs it would go on.
    assert after.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.1}) == TrialScheduler.STOP
    fresh = scheduler()
    fresh.on_trial_add(None, late)
    assert fresh.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.1}) == TrialScheduler.CONTINUE


def test_a_method_waits_for_its_teacher_while_the_others_run(tmp_path: Path) -> None:
    from harness.sweep.search import TeacherGate

    teacher = tmp_path / "key" / "teacher.pt"
    searcher = SweepSearcher(
        searchers={"kd": _optuna(ALPHA), "direct": None},
        budget={"kd": 1, "direct": 1},
        final_runs=_final_runs,
        metric="val_accuracy",
        mode="max",
        gate=TeacherGate({"kd": (str(teacher),)}),
    )
    assert searcher.suggest("t0")["method"] == "direct"  # kd's turn passes: its teacher trains
    assert searcher.suggest("t1") is None
    searcher.on_trial_complete("t0", {"val_accuracy": 0.5, "test_accuracy": 0.5})
    assert [searcher.suggest(f"f{i}")["role"] for i in range(2)] == ["final", "final"]  # direct's go on meanwhile
    assert searcher.suggest("t2") is None
    teacher.parent.mkdir()
    (teacher.parent / "failed.txt").write_text("boom")  # a failed teacher opens the gate: the trial records it
    assert searcher.suggest("t3")["method"] == "kd"


def test_a_choice_on_record_that_disagrees_with_the_searcher_is_kept_and_said(tmp_path: Path, capsys) -> None:
    from harness.sweep.search import read_choices, record_choice

    choices = tmp_path / "choices.json"
    record_choice(choices, "direct", "0", {"student.width": 16})  # not what this searcher sampled (nothing)
    searcher = _searcher(choices=choices)
    for trial_id in ("t0", "t1"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("t1", {"val_accuracy": 0.5, "test_accuracy": 0.5})  # direct's search ends
    assert searcher.best["direct"] == {"student.width": 16}  # the record's
    said = capsys.readouterr().err
    assert "search direct: keeping the choice on record in" in said and "over this searcher's own values" in said
    assert read_choices(choices)["direct"] == {"run": "0", "values": {"student.width": 16}}  # not rewritten
