"""Progress on long work: `harness train`'s bar and per-batch hook, the sweep's progress callback.

The sweep's callback is driven here by hand, with fake Tune trials (trial_id, config,
last_result) and a fake clock, in both of its modes; no Ray runtime starts.
"""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.cli import main
from harness.contract import Role
from harness.data.augment import shift
from harness.progress import TrainProgress, format_duration, write
from harness.sweep.plan import plan_sweep
from harness.sweep.progress import SweepProgress
from harness.sweep.protocol import RUN_KEY, PlannedTrial
from harness.sweep.search import record_choice
from harness.training import batch_hook, train_one_epoch
from harness.trial import load_trial_data, train

REPO = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(SweepProgress, "_clock", staticmethod(fake))
    return fake


def _trial(trial_id: str, method: str, role: str = "trial", **values) -> SimpleNamespace:
    """A fake Tune trial of a planned trial; its identity (`run`) is its Tune id unless given (`_run`)."""
    run = values.pop(RUN_KEY, trial_id)
    config = PlannedTrial(method, Role(role), run, values).to_tune()
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={})


def _run(name: str) -> dict[str, str]:
    """A trial's identity within its method and role, as the searcher puts it in its config."""
    return {RUN_KEY: name}


def _progress(stream: io.StringIO, live: bool, **kwargs) -> SweepProgress:
    return SweepProgress(
        {"kd": (2, 2), "direct": (1, 2)}, {"kd": 4, "direct": 2}, concurrency=2, stream=stream, live=live, **kwargs
    )


# -- the training loop's hook ----------------------------------------------------------


def _epoch(on_batch=None) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(70, 1, 4, 4), torch.randint(0, 3, (70,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(images), labels)

    loss = train_one_epoch(
        [model],
        optimizer,
        schedule,
        x,
        y,
        loss_fn,
        batch_size=16,
        generator=torch.Generator().manual_seed(1),
        augment=shift,
        epoch=1,
        on_batch=on_batch,
    )
    return loss, model[1].weight.detach().clone()


def test_batch_hook_sees_every_step_and_changes_nothing() -> None:
    calls: list[tuple[int, int]] = []
    loss, weight = _epoch(lambda done, batches: calls.append((done, batches)))
    assert calls == [(i, 5) for i in range(1, 6)]  # 70 samples, 16 a batch
    plain_loss, plain_weight = _epoch()
    assert loss == plain_loss and torch.equal(weight, plain_weight)


def test_trial_hook_reports_each_epochs_batches_with_bit_identical_results(make_config) -> None:
    config = make_config("direct", **{"train.epochs": 2})
    calls: list[tuple[int, int, int]] = []
    with batch_hook(lambda *_: pytest.fail("an outer hook must not see the trial's batches")):
        hooked = train(config, log=lambda _: None, on_batch=lambda *call: calls.append(call))
    plain = train(config, log=lambda _: None)
    batches = -(-len(load_trial_data(config, torch.device("cpu")).train_x) // 64)
    assert calls == [(epoch, done, batches) for epoch in (1, 2) for done in range(1, batches + 1)]
    del hooked["train_seconds"], plain["train_seconds"]
    assert hooked == plain


# -- harness train ---------------------------------------------------------------------


def test_train_progress_plain_and_on_a_terminal() -> None:
    plain = io.StringIO()
    progress = TrainProgress(2, label="kd", stream=plain)
    assert not progress.live and progress.on_batch is None
    progress.write("kd epoch 1/2  loss 1.0")
    progress.close()
    assert plain.getvalue() == "kd epoch 1/2  loss 1.0\n"

    term = _Terminal()
    with TrainProgress(2, label="kd", stream=term) as progress:
        assert progress.live and progress.on_batch is not None
        for epoch in (1, 2):
            for done in range(1, 11):
                progress.on_batch(epoch, done, 10)
            progress.write(f"kd epoch {epoch}/2  loss 1.0")
    out = term.getvalue()
    assert "kd epoch 1/2" in out and "kd epoch 2/2" in out and "20/20" in out and "\r" in out
    assert "kd epoch 2/2  loss 1.0\n" in out


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_harness_train_shows_epochs_and_a_bar_only_on_a_terminal(
    terminal: bool, tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["train", "--space", str(tiny_space), "--method", "direct", "--set", "train.epochs=2"])
    assert code == 0
    assert "test_accuracy" in capsys.readouterr().out
    lines = err.getvalue()
    for epoch in (1, 2):
        assert f"direct epoch {epoch}/2  loss " in lines
    if terminal:
        assert "batch" in lines and "\r" in lines
    else:
        assert "\r" not in lines and "batch" not in lines
        # today's output: one line per epoch (and MLflow's notes on creating a new store)
        other = [line for line in lines.splitlines() if not line.startswith("direct epoch ")]
        assert len(lines.splitlines()) - len(other) == 2 and all("INFO mlflow.store" in line for line in other)
    assert "View run" not in lines


# -- harness sweep ---------------------------------------------------------------------


def test_sweep_progress_plain_lines_at_most_every_interval(clock: _Clock) -> None:
    out = io.StringIO()
    progress = _progress(out, live=False)
    assert progress.total == 7
    a, c = _trial("abc", "kd"), _trial("ghi", "kd")
    b = _trial("def", "direct", "final", seed=1, **{"snn.time_steps": 4})
    trials = [a, b]
    progress.setup()
    progress.on_trial_start(iteration=0, trials=trials, trial=a)
    progress.on_trial_start(iteration=0, trials=trials, trial=b)
    progress.on_trial_result(iteration=1, trials=trials, trial=a, result={"epoch": 2})
    progress.on_trial_result(iteration=1, trials=trials, trial=b, result={"epoch": 1})
    progress.on_step_end(iteration=1, trials=trials)
    assert out.getvalue() == ""  # nothing before the interval has passed

    clock.now += 31
    progress.on_step_end(iteration=2, trials=trials)
    assert out.getvalue() == (
        "0/7 trials done, running: kd trial abc epoch 2/4, direct final T4 s1 epoch 1/2; ETA unknown\n"
    )
    clock.now += 5
    progress.on_trial_complete(iteration=3, trials=trials, trial=a)  # took 36 s
    progress.on_step_end(iteration=3, trials=trials)
    assert out.getvalue().count("\n") == 1  # at most one summary per interval

    clock.now += 30
    progress.on_trial_start(iteration=4, trials=[*trials, c], trial=c)
    progress.on_step_end(iteration=4, trials=[*trials, c])
    last = out.getvalue().splitlines()[-1]
    # mean 36 s; b ran 66 s (0 left), c just started (36 s), 4 pending: (4 * 36 + 36) / 2 = 90 s
    assert last == "1/7 trials done, running: direct final T4 s1 epoch 1/2, kd trial ghi starting; ETA 2 min"
    assert progress.eta() == pytest.approx(90.0)

    clock.now += 31  # nothing changed: no new line until the heartbeat
    progress.on_step_end(iteration=5, trials=[*trials, c])
    assert out.getvalue().count("\n") == 2
    progress.on_experiment_end(trials=[*trials, c])
    assert out.getvalue().splitlines()[-1] == "1/7 trials done in 2 min"


def test_sweep_progress_on_a_terminal_draws_bars_and_writes_above_them(clock: _Clock) -> None:
    out = _Terminal()
    progress = SweepProgress({"kd": (2, 2), "direct": (1, 2)}, {"kd": 4, "direct": 2}, concurrency=2, stream=out)
    assert progress.live
    a, b = _trial("abc", "kd"), _trial("def", "direct", "final", seed=1, **{"snn.time_steps": 4})
    progress.on_trial_start(iteration=0, trials=[a, b], trial=a)
    progress.on_trial_start(iteration=0, trials=[a, b], trial=b)
    progress.on_trial_result(iteration=1, trials=[a, b], trial=a, result={"epoch": 3})
    drawn = out.getvalue()
    assert "trials 0/7" in drawn and "running: kd trial abc epoch 3/4, direct final T4 s1 starting" in drawn
    clock.now += 60
    a.status = "TERMINATED"
    progress.on_trial_complete(iteration=2, trials=[a, b], trial=a)
    write("kd trial abc: val_accuracy 0.9000, test_accuracy 0.8800", out)  # what MlflowTrialCallback prints
    progress.on_step_end(iteration=3, trials=[a, b])
    drawn = out.getvalue()
    assert "trials 1/7" in drawn and "ETA 3 min" in drawn  # (60 * 5 + 0) / 2 = 150 s
    assert "kd trial abc: val_accuracy 0.9000, test_accuracy 0.8800\n" in drawn
    progress.on_experiment_end(trials=[a, b])
    assert progress._bars is None


def test_sweep_progress_pickles_without_its_stream_and_bars(clock: _Clock) -> None:
    out = _Terminal()
    progress = _progress(out, live=None)
    a = _trial("abc", "kd")
    progress.on_trial_start(iteration=0, trials=[a], trial=a)
    clock.now += 10
    progress.on_trial_complete(iteration=1, trials=[a], trial=a)
    assert progress._bars is not None
    restored = pickle.loads(pickle.dumps(progress))
    assert restored.stream is sys.stderr and restored._bars is None and restored.live is sys.stderr.isatty()
    assert (restored.done, restored.total) == (1, 7)
    on_stderr = SweepProgress({"kd": (1, 0)}, {"kd": 1}, live=False)
    assert pickle.loads(pickle.dumps(on_stderr)).stream is sys.stderr


def test_sweep_progress_counts_trials_that_ended_before_a_resume(clock: _Clock) -> None:
    out = io.StringIO()
    progress = pickle.loads(pickle.dumps(_progress(out, live=False)))
    ended = _trial("old", "kd", **_run("0"))
    ended.status, ended.last_result = "TERMINATED", {"time_total_s": 40.0, "epoch": 4}
    progress.on_step_end(iteration=0, trials=[ended])
    assert progress.done == 1 and progress.eta() == pytest.approx(40.0 * 6 / 1)  # no trial seen running yet
    again = _trial("new", "kd", **_run("0"))  # the same planned trial, issued again under a new Tune id
    progress.on_trial_start(iteration=1, trials=[ended, again], trial=again)
    clock.now += 5
    progress.on_trial_complete(iteration=2, trials=[ended, again], trial=again)
    assert progress.done == 1


def test_sweep_progress_total_follows_the_final_runs(clock: _Clock, tmp_path: Path) -> None:
    """The count of a method's final runs comes from the choice on the searcher's record."""
    plan = plan_sweep(REPO / "search_spaces" / "smoke.yaml")
    choices = tmp_path / "choices.json"
    progress = SweepProgress.for_plan(plan, stream=io.StringIO(), live=False, choices=choices)
    # smoke: 3 search trials per method; kd and direct retrain at T in {1, 2} (1 seed), conversion once
    assert progress.total == 3 * 3 + 2 + 2 + 1
    assert progress.concurrency == 2 and progress.epochs == {"kd": 4, "direct": 4, "conversion": 4}
    assert pickle.loads(pickle.dumps(progress)).total == progress.total

    best = {"student.width": 4, "snn.time_steps": 3, "kd.alpha": 0.3}
    searched = [_trial(f"kd{i}", "kd", **{**best, "kd.alpha": 0.3 + i}, **_run(str(i))) for i in range(3)]
    final = _trial("f1", "kd", "final", **{**best, "snn.time_steps": 2, "seed": 1}, **_run("s1-T2"))
    trials = [*searched, final]
    record_choice(choices, "kd", "0", best)  # written by the searcher before it queues the final runs
    progress.on_trial_start(iteration=0, trials=trials, trial=final)
    assert progress.total == 15  # kd's best T = 3 is not among {1, 2}: one more final run

    best = {"student.width": 8, "snn.time_steps": 1}
    direct = _trial("d0", "direct", **best, **_run("0"))
    final = _trial("f2", "direct", "final", **{**best, "snn.time_steps": 2, "seed": 1}, **_run("s1-T2"))
    record_choice(choices, "direct", "0", best)
    progress.on_trial_start(iteration=1, trials=[*trials, direct, final], trial=final)
    assert progress.total == 15  # direct's best T = 1 is planned already

    unrecorded = SweepProgress.for_plan(plan, stream=io.StringIO(), live=False, choices=tmp_path / "none.json")
    unrecorded.on_trial_start(iteration=0, trials=trials, trial=trials[-1])
    assert unrecorded.total == 14  # no choice on record: the planned count holds

    progress.set_final_runs("conversion", 2)
    assert progress.total == 16


def test_sweep_progress_never_counts_fewer_final_runs_than_tune_made(clock: _Clock) -> None:
    progress = SweepProgress({"kd": (1, 1)}, {"kd": 2}, stream=io.StringIO(), live=False)
    finals = [_trial(f"f{i}", "kd", "final", seed=i, **_run(f"s{i}")) for i in range(3)]
    progress.on_step_end(iteration=0, trials=finals)
    assert progress.total == 4


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45, 200, 3600 + 5 * 60)] == ["0 s", "45 s", "3 min", "1 h 05 min"]
