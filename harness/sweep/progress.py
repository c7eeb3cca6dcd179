"""The sweep's progress on the driver: trials done of the planned total, the running trials
with their epoch, and an estimate of the time left.

On a terminal: a bar of the trials done and one status line of the running trials (tqdm),
redrawn as trials start, report and end. Otherwise plain lines: a one-line summary at most
every `interval_s` seconds, e.g. `12/18 trials done, running: kd trial 3 epoch 2/4,
direct final T4 s1 epoch 1/2; ETA 3 min`, and one at the end. Trials are named as
`PlannedTrial.label` names them, the MLflow callback's lines too. The line per finished trial
is not printed here: `MlflowTrialCallback` prints it, through `harness.progress.write` so that
it lands above the bars.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

from ray import tune

from harness.contract import Role
from harness.progress import format_duration, is_terminal, write
from harness.sweep.final import final_run_count
from harness.sweep.front import final_stage
from harness.sweep.plan import MethodPlan, SweepPlan, search_budget
from harness.sweep.protocol import PlannedTrial
from harness.sweep.search import read_choices

FinalCount = Callable[[str, Mapping[str, Any]], int]
"""(method, its choice on record: `run`, `values` and a Pareto search's `front`) -> how many
final-stage runs retrain it."""

_ENDED = ("TERMINATED", "ERROR")  # Tune's statuses of trials that will not run again


def _final_count(plan: SweepPlan, method: str, choice: Mapping[str, Any]) -> int:
    return len(final_stage(plan, method, choice))


def _planned_final_count(plan: SweepPlan, method_plan: MethodPlan) -> int:
    """Before the search ends: the reference's final runs, and a Pareto search's front runs at most."""
    search = plan.space.search
    front = (search.final_front - 1) * min(search.front_repeats, search.final_repeats) if search.pareto else 0
    return final_run_count(method_plan, plan.space) + front


class SweepProgress(tune.Callback):
    """Ray Tune callback that shows how far a sweep is (see the module docstring).

    The total is, per method, its search trials plus its final runs. A method that trains at
    several T also retrains at its search's best T, which adds runs when that T is not one
    already planned: when its first final run starts, the configuration its search chose is
    read from the searcher's record (`choices`, `harness.sweep.search.read_choices`), and its
    count is `final_count(method, chosen values)`. `set_final_runs` sets a count directly, and
    a method never counts fewer final runs than Tune has created.

    ETA: with m the mean duration (driver clock, start to end) of the trials finished so far,
    p the trials not started yet and e_i the time each running trial has run,
    work = m * p + sum_i max(0, m - e_i), and ETA = max(work / c, the longest single remaining
    trial: m if p > 0, else max_i (m - e_i)), where c is `concurrency` (`search.max_concurrent`)
    capped by the most trials seen running at once (a cluster may fit fewer). Unknown until a
    trial has ended. Trials that ended before a `--resume` count with Tune's `time_total_s`.

    Tune pickles its callbacks with the experiment: the stream and the bars are not pickled
    (a restored copy draws on stderr, or stdout if it drew there) and running trials are
    forgotten (they start again).

    Args:
        planned: Per method, (search trials, final runs) as planned (`for_plan` takes them
            from the plan: `search_budget` and `final_run_count`).
        epochs: Per method, its epochs per trial (`train.epochs`).
        concurrency: Trials run at once at most.
        stream: Where to draw or print (default: stderr).
        live: Draw bars (default: whether `stream` is a terminal).
        interval_s: Least time between two plain summaries.
        final_count: See above; None: the planned counts hold unless set or exceeded.
        choices: The searcher's record of its choices (`choices.json`); None: none is read.
    """

    _clock = staticmethod(time.monotonic)  # seconds; tests replace it

    def __init__(
        self,
        planned: Mapping[str, tuple[int, int]],
        epochs: Mapping[str, int],
        *,
        concurrency: int = 1,
        stream: IO[str] | None = None,
        live: bool | None = None,
        interval_s: float = 30.0,
        final_count: FinalCount | None = None,
        choices: Path | None = None,
    ) -> None:
        self.search = {method: search for method, (search, _) in planned.items()}
        self.finals = {method: finals for method, (_, finals) in planned.items()}
        self.epochs = dict(epochs)
        self.concurrency = max(1, concurrency)
        self.interval_s = interval_s
        self.final_count = final_count
        self.choices = choices
        self._live_choice = live
        self._resolved: set[str] = set()  # methods whose final-run count is known exactly
        self._done: dict[str, float] = {}  # planned trial (`_identity`) -> its duration in seconds
        self._peak = 0  # the most trials seen running at once
        self._attach(stream)

    @classmethod
    def for_plan(cls, plan: SweepPlan, **kwargs: Any) -> SweepProgress:
        """The progress of `plan`'s sweep: its budgets, final runs, epochs and concurrency
        (`choices=` the searcher's record, to count final runs exactly)."""
        planned = {p.method: (search_budget(p, plan.space), _planned_final_count(plan, p)) for p in plan.methods}
        epochs = {p.method: p.config.train.epochs for p in plan.methods}
        kwargs.setdefault("concurrency", plan.space.search.max_concurrent)
        return cls(planned, epochs, final_count=partial(_final_count, plan), **kwargs)

    def _attach(self, stream: IO[str] | None) -> None:
        """The unpicklable part: stream, bars, clocks and running trials."""
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if self._live_choice is None else self._live_choice
        self._bars: tuple[Any, Any] | None = None
        self._running: dict[str, tuple[str, str, float]] = {}  # trial id -> (method, label, start on the clock)
        self._epoch: dict[str, int] = {}  # trial id -> the last epoch it reported
        self._seen_finals: dict[str, set[str]] = {}  # method -> ids of its final runs Tune created
        self._started = self._clock()
        self._last_summary: tuple[float, str] | None = None  # when, and the summary without its ETA
        self._last_draw = float("-inf")

    def __getstate__(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key not in _LIVE}
        state["_stream_name"] = next((n for n in ("stderr", "stdout") if self.stream is getattr(sys, n)), None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        name = state.pop("_stream_name", None)
        self.__dict__.update(state)
        self._attach(getattr(sys, name) if name else None)

    # -- what the numbers are ------------------------------------------------------------

    @property
    def total(self) -> int:
        """Planned trials of the whole sweep, search and final runs."""
        return sum(self.search.values()) + sum(
            max(count, len(self._seen_finals.get(method, ()))) for method, count in self.finals.items()
        )

    @property
    def done(self) -> int:
        """Trials ended (finished, pruned, failed or errored)."""
        return len(self._done)

    def set_final_runs(self, method: str, count: int) -> None:
        """Sets how many final runs `method` gets (e.g. from the searcher once its search ended)."""
        self.finals[method] = count
        self._resolved.add(method)
        self._draw(force=True)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left by the rule of the class docstring, or None before a trial has ended."""
        if not self._done:
            return None
        now = self._clock() if now is None else now
        mean = sum(self._done.values()) / len(self._done)
        left = [max(0.0, mean - (now - start)) for _, _, start in self._running.values()]
        pending = max(0, self.total - self.done - len(self._running))
        slots = min(self.concurrency, max(1, self._peak))
        longest = mean if pending else max(left, default=0.0)
        return max((mean * pending + sum(left)) / slots, longest)

    def label(self, trial: Any) -> str:
        """`kd trial 3` for a search trial, `direct final T4 s1` for a final run (`PlannedTrial.label`)."""
        if PlannedTrial.in_tune(trial.config):
            return PlannedTrial.from_tune(trial.config).label()
        return f"{trial.config.get('method', '?')} trial {trial.trial_id}"

    def _running_text(self, limit: int | None = None) -> str:
        parts = []
        for trial_id, (method, label, _) in self._running.items():
            epochs = self.epochs.get(method)
            epoch = self._epoch.get(trial_id)
            if epoch is None:
                parts.append(f"{label} starting")
            else:
                parts.append(f"{label} epoch {epoch}/{epochs}" if epochs else f"{label} epoch {epoch}")
        if limit is not None and len(parts) > limit:
            parts = [*parts[:limit], f"{len(parts) - limit} more"]
        return ", ".join(parts) or "nothing"

    def _eta_text(self) -> str:
        eta = self.eta()
        return "ETA unknown" if eta is None else f"ETA {format_duration(eta)}"

    def summary(self) -> str:
        """`12/18 trials done, running: kd trial 1a2b epoch 2/4, direct final T4 s1 epoch 1/2; ETA 3 min`."""
        return f"{self.done}/{self.total} trials done, running: {self._running_text(limit=8)}; {self._eta_text()}"

    # -- Tune's hooks ---------------------------------------------------------------------

    def setup(self, **info: Any) -> None:
        self._started = self._clock()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._catch_up(trials)
        self._draw()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._catch_up(trials)
        self._running[trial.trial_id] = (trial.config.get("method"), self.label(trial), self._clock())
        self._epoch.pop(trial.trial_id, None)
        self._peak = max(self._peak, len(self._running))
        if _role(trial) in (Role.FINAL, Role.FRONT):
            self._count_final(trial.config.get("method"))
        self._draw(force=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" in result:
            self._epoch[trial.trial_id] = int(result["epoch"])
            self._draw(force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.pop(trial.trial_id, None)  # Tune retries it: it starts again
        self._draw(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)
        self._draw(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)
        self._draw(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._catch_up(trials)
        elapsed = format_duration(self._clock() - self._started)
        if self._bars is not None:
            self._draw(force=True)
            status, bar = self._bars
            status.close()
            bar.close()
            self._bars = None
        else:
            write(f"{self.done}/{self.total} trials done in {elapsed}", self.stream)

    # -- bookkeeping ----------------------------------------------------------------------

    def _end(self, trial: Any) -> None:
        entry = self._running.pop(trial.trial_id, None)
        if entry is not None:
            self._done[_identity(trial)] = self._clock() - entry[2]
        elif _identity(trial) not in self._done:  # ended before this driver saw it start (--resume)
            self._done[_identity(trial)] = float((getattr(trial, "last_result", None) or {}).get("time_total_s", 0.0))
        self._epoch.pop(trial.trial_id, None)

    def _catch_up(self, trials: Iterable[Any]) -> None:
        """Counts the trials Tune knows as ended (a resumed sweep's) and the final runs it created,
        each planned trial once however many Tune trials ran it."""
        for trial in trials:
            if getattr(trial, "status", None) in _ENDED and _identity(trial) not in self._done:
                self._end(trial)
            if _role(trial) in (Role.FINAL, Role.FRONT):
                self._seen_finals.setdefault(trial.config.get("method"), set()).add(_identity(trial))

    def _count_final(self, method: str) -> None:
        """The final-run count of `method`, from the choice on the searcher's record."""
        if self.final_count is None or method in self._resolved:
            return
        chosen = read_choices(self.choices).get(method)
        if chosen is not None and chosen["values"] is not None:
            self.finals[method] = self.final_count(method, chosen)
            self._resolved.add(method)

    # -- output ---------------------------------------------------------------------------

    def _draw(self, force: bool = False) -> None:
        now = self._clock()
        if self.live:
            if force or now - self._last_draw >= 1.0:
                self._last_draw = now
                self._draw_bars()
            return
        text = f"{self.done}/{self.total} trials done, running: {self._running_text(limit=8)}"
        last = self._last_summary
        if last is None:
            if self._done or self._running:  # the first line once the sweep has begun
                self._last_summary = (now, text)
            return
        if now - last[0] >= self.interval_s and (text != last[1] or now - last[0] >= 10 * self.interval_s):
            self._last_summary = (now, text)
            write(f"{text}; {self._eta_text()}", self.stream)

    def _draw_bars(self) -> None:
        from tqdm import tqdm

        if self._bars is None:
            bar = tqdm(
                total=self.total,
                initial=self.done,
                file=self.stream,
                desc="trials",
                postfix=self._eta_text(),
                unit="trial",
                dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| [{elapsed}{postfix}]",
                position=0,
                mininterval=0,
            )
            status = tqdm(
                file=self.stream,
                desc=f"running: {self._running_text()}",
                bar_format="{desc}",
                dynamic_ncols=True,
                position=1,
                leave=False,
            )
            self._bars = (status, bar)
        status, bar = self._bars
        bar.total, bar.n = self.total, self.done
        bar.set_postfix_str(self._eta_text(), refresh=False)
        bar.refresh()
        status.set_description_str(f"running: {self._running_text()}", refresh=True)


_LIVE = frozenset(
    {"stream", "live", "_bars", "_running", "_epoch", "_seen_finals", "_started", "_last_summary", "_last_draw"}
)


def _identity(trial: Any) -> str:
    """The planned trial a Tune trial runs (`PlannedTrial.identity`: the same for a trial that
    `--resume` issued again under a new Tune id), or its Tune id where its config names none."""
    return PlannedTrial.from_tune(trial.config).identity if PlannedTrial.in_tune(trial.config) else trial.trial_id


def _role(trial: Any) -> Role | None:
    return PlannedTrial.from_tune(trial.config).role if PlannedTrial.in_tune(trial.config) else None
