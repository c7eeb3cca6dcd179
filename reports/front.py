"""A Pareto sweep's configurations on the test set: their means, fronts, hypervolumes and the words
the summary opens with.

The search chose its front on validation figures (`val_accuracy`, `val/energy_uj`); the report
measures every configuration it retrained on the test set instead, mapping each objective to
its test-set counterpart (`measure_of`): `val_accuracy` -> `test_accuracy`, an efficiency
figure (`energy_uj`, `synops`, ...) -> itself (counted on the test set at the run's T), a config
key (`snn.time_steps`, `student.depth`) -> the runs' param (the same for every seed); `train_loss`
has none and is left out. A configuration's point is its mean over seeds; fronts are
`harness.pareto.non_dominated` over those points, per method and over every method together.

The hypervolume is `harness.pareto.hypervolume` over every test-set objective, against one
reference point for all methods: `harness.pareto.reference_point` over every method's
configuration means with margin 0.1 (the worst value per objective pushed out by a tenth of its
range). Per method it is given for its configuration means, and per seed: the seeds every one of
its configurations ran (a seed's points: each configuration's run of that seed), with the mean
and a 95% t interval over them. Where no seed is common to all its configurations, the seeds of
its reference configuration are used instead, each with the configurations that ran it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd

from harness import contract
from harness.contract import metric_column, param_column
from harness.pareto import hypervolume, non_dominated, reference_point
from reports.loading import Configuration, ExperimentRuns
from reports.render import Stat, significant
from reports.stats import Interval, mean_interval

MARGIN = 0.1  # the reference point's margin, a fraction of each objective's range
SEED = param_column("seed")
TIME_STEPS = "snn.time_steps"
LABELS = {
    contract.TEST_ACCURACY: "test accuracy",
    contract.ENERGY_UJ: "energy (µJ)",
    contract.SYNOPS: "SynOps",
    contract.ACS: "ACs",
    contract.MACS: "MACs",
    contract.FIRING_RATE: "firing rate",
    TIME_STEPS: "T",
}


def measure_of(objective: str) -> str | None:
    """The test-set measure of a search objective: `val_accuracy` -> `test_accuracy`, an efficiency
    figure -> itself, `train_loss` -> None (no test-set counterpart), a config key -> itself (a param)."""
    if objective == contract.VAL_ACCURACY:
        return contract.TEST_ACCURACY
    if objective == contract.TRAIN_LOSS:
        return None
    return objective


def is_metric(key: str) -> bool:
    """Whether a test-set objective is a metric of the runs (else a config key, read from their params)."""
    return key == contract.TEST_ACCURACY or key in contract.COST_METRICS


def label(key: str) -> str:
    """A test-set measure's name in tables and figures: `energy (µJ)`, `T`, `student.depth`."""
    return LABELS.get(key, key)


def amount(key: str, value: float) -> str:
    """A value of a measure in words: `0.0231 µJ`, `12.3k SynOps`, `T = 3`, `student.depth = 4`."""
    if key == contract.ENERGY_UJ:
        return f"{significant(value)} µJ"
    if key in (contract.SYNOPS, contract.ACS, contract.MACS):
        return f"{significant(value)} {label(key)}"
    if key == contract.FIRING_RATE:
        return f"a firing rate of {value:.3g}"
    if key == contract.TEST_ACCURACY:
        return f"{value:.3f}"
    return f"{label(key)} = {value:g}"


def per_seed(configuration: Configuration, key: str) -> dict[int, float]:
    """A configuration's value of measure `key` per seed (runs of one seed averaged)."""
    runs = configuration.runs
    if key == TIME_STEPS:
        values = pd.Series(float(configuration.time_steps), index=runs.index)
    else:
        column = metric_column(key) if is_metric(key) else param_column(key)
        if column not in runs.columns:
            return {}
        values = pd.to_numeric(runs[column], errors="coerce")
    frame = pd.DataFrame({"seed": pd.to_numeric(runs[SEED], errors="coerce"), "value": values}).dropna()
    return {int(seed): float(value) for seed, value in frame.groupby("seed")["value"].mean().items()}


def stat(configuration: Configuration, key: str) -> Stat | None:
    """Mean ± std over seeds of measure `key` (None where no run has it)."""
    return Stat.of(per_seed(configuration, key).values())


@dataclass(frozen=True)
class MethodHypervolume:
    """One method's hypervolume: of its configuration means, and per seed with its interval."""

    method: str
    configurations: int
    of_means: float
    per_seed: dict[int, float]
    interval: Interval | None  # None where no seed has a point
    common_seeds: bool  # the seeds every configuration ran (else the reference configuration's)


@dataclass(frozen=True)
class Front:
    """Every Pareto configuration of an experiment measured on the test set.

    Attributes:
        searched: The sweep's `search.objectives`, as the search used them (validation).
        objectives: Their test-set measures (`measure_of`) with their directions, in order.
        skipped: The search objectives without a test-set measure (`train_loss`).
        configurations: Every method's configurations, the methods in the report's order.
        points: Per configuration, its mean over seeds of every objective (missing: left out).
        method_front: Indices of the configurations non-dominated among their own method's.
        overall_front: Indices of those non-dominated among every method's.
        reference: The hypervolume's reference point (None when no configuration has every objective).
        hypervolumes: Per method with configurations, its hypervolume.
    """

    searched: dict[str, str]
    objectives: dict[str, str]
    skipped: tuple[str, ...]
    configurations: tuple[Configuration, ...]
    points: tuple[dict[str, float], ...]
    method_front: frozenset[int]
    overall_front: frozenset[int]
    reference: dict[str, float] | None
    hypervolumes: tuple[MethodHypervolume, ...]

    @property
    def y(self) -> str:
        """The figure's y measure: test accuracy (the primary objective where accuracy is not one)."""
        return contract.TEST_ACCURACY if contract.TEST_ACCURACY in self.objectives else next(iter(self.objectives))

    @property
    def x(self) -> str | None:
        """The figure's x measure: the first objective besides `y` (energy); None with one objective."""
        return next((key for key in self.objectives if key != self.y), None)

    def of(self, method: str) -> list[int]:
        """Indices of `method`'s configurations, the reference first."""
        return [i for i, c in enumerate(self.configurations) if c.method == method]

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(c.method for c in self.configurations))

    def reference_text(self) -> str:
        """The reference point in words: `test accuracy 0.1408, energy 0.08141 µJ`."""
        if self.reference is None:
            return "none (no configuration has every objective)"
        return ", ".join(reference_amount(key, value) for key, value in self.reference.items())


def reference_amount(key: str, value: float) -> str:
    """A reference point's value of one measure: `test accuracy 0.1408`, `energy 0.08141 µJ`, `T 3.2`."""
    if key in (contract.TEST_ACCURACY, contract.FIRING_RATE):
        return f"{label(key)} {value:.4f}"
    if key == contract.ENERGY_UJ:
        return f"energy {value:.4g} µJ"
    return f"{label(key)} {value:.4g}"


def pareto_front(exp: ExperimentRuns) -> Front | None:
    """The test-set front of a Pareto sweep; None for a single-objective sweep (no `harness.objectives`),
    one whose objectives have no test-set measure, or one without retrained configurations."""
    if not exp.objectives:
        return None
    mapped = {name: measure_of(name) for name in exp.objectives}
    objectives = {key: exp.objectives[name] for name, key in mapped.items() if key is not None}
    configurations = tuple(c for method in exp.methods for c in exp.configurations(method))
    if not objectives or not configurations:
        return None
    points = tuple(_mean_point(c, objectives) for c in configurations)
    method_front: set[int] = set()
    for method in dict.fromkeys(c.method for c in configurations):
        own = [i for i, c in enumerate(configurations) if c.method == method]
        method_front |= {own[j] for j in non_dominated([points[i] for i in own], objectives)}
    complete = [p for p in points if all(key in p for key in objectives)]
    reference = reference_point(complete, objectives, MARGIN) if complete else None
    front = Front(
        searched=dict(exp.objectives),
        objectives=objectives,
        skipped=tuple(name for name, key in mapped.items() if key is None),
        configurations=configurations,
        points=points,
        method_front=frozenset(method_front),
        overall_front=frozenset(non_dominated(list(points), objectives)),
        reference=reference,
        hypervolumes=(),
    )
    if reference is None:
        return front
    return replace(front, hypervolumes=tuple(_hypervolume(front, method, reference) for method in front.methods))


def _mean_point(configuration: Configuration, objectives: Mapping[str, str]) -> dict[str, float]:
    point = {}
    for key in objectives:
        cell = stat(configuration, key)
        if cell is not None:
            point[key] = cell.mean
    return point


def _hypervolume(front: Front, method: str, reference: dict[str, float]) -> MethodHypervolume:
    own = [front.configurations[i] for i in front.of(method)]
    of_means = hypervolume([front.points[i] for i in front.of(method)], front.objectives, reference)
    values = [{key: per_seed(c, key) for key in front.objectives} for c in own]
    seeds_of = [set.intersection(*(set(v) for v in value.values())) for value in values]
    common = set.intersection(*seeds_of)
    seeds = sorted(common) if common else sorted(seeds_of[0])
    volumes = {}
    for seed in seeds:
        ran = [value for value, has in zip(values, seeds_of, strict=True) if seed in has]
        points = [{key: value[key][seed] for key in front.objectives} for value in ran]
        volumes[seed] = hypervolume(points, front.objectives, reference)
    interval = mean_interval(list(volumes.values())) if volumes else None
    return MethodHypervolume(method, len(own), of_means, volumes, interval, bool(common))


def front_words(front: Front) -> str | None:
    """Which method dominates where along the combined front of `y` (accuracy) against `x` (energy),
    from the configurations' test means; None with fewer than two objectives.

    Along `x` (cheapest first), each point of the combined front is the best `y` available from
    its own `x` up to the next point's: consecutive points of one method make one range.
    """
    x, y = front.x, front.y
    if x is None:
        return None
    pair = {y: front.objectives[y], x: front.objectives[x]}
    points = [p if x in p and y in p else {} for p in front.points]
    on_front = non_dominated(points, pair)
    if not on_front:
        return None
    sign = 1.0 if pair[x] == "min" else -1.0
    order = sorted(on_front, key=lambda i: (sign * points[i][x], -points[i][y] if pair[y] == "max" else points[i][y]))
    runs: list[list[int]] = []
    for i in order:
        if runs and front.configurations[runs[-1][-1]].method == front.configurations[i].method:
            runs[-1].append(i)
        else:
            runs.append([i])
    below, onwards = ("below", "on") if pair[x] == "min" else ("above", "down")
    best_y = "most accurate" if y == contract.TEST_ACCURACY else f"best in {label(y)}"
    parts = []
    for number, run in enumerate(runs):
        method = front.configurations[run[0]].method
        start = amount(x, points[run[0]][x])
        if number + 1 < len(runs):
            end = amount(x, points[runs[number + 1][0]][x])
            first = number == 0
            parts.append(f"{method} dominates {below} {end}" if first else f"{method} from {start} to {below} {end}")
        else:
            top = run[-1]
            is_best = f"is the {best_y} ({amount(y, points[top][y])} at {amount(x, points[top][x])})"
            parts.append(f"{method} {is_best}" if number == 0 else f"{method} from {start} {onwards} and {is_best}")
    leading = {front.configurations[i].method for i in on_front}
    dominated = [m for m in front.methods if m not in leading]
    if len(runs) == 1:
        parts[0] = f"{parts[0]}, on the whole front"
    tail = ""
    if dominated:
        verb = "is" if len(dominated) == 1 else "are"
        tail = f"; {_join(dominated)} {verb} dominated everywhere"
    axes = f"{label(y).removeprefix('test ')} × {label(x).split(' (')[0]}"
    return f"On the {axes} front (test set, means over seeds): " + "; ".join(parts) + tail + "."


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def hypervolume_words(front: Front) -> str | None:
    """The methods ranked by the hypervolume of their configuration means, with the per-seed intervals."""
    if not front.hypervolumes:
        return None
    ranked = sorted(front.hypervolumes, key=lambda h: -h.of_means)
    intervals = [h.interval for h in ranked if h.interval is not None and h.interval.low is not None]
    cells = []
    for volume in ranked:
        interval = volume.interval
        text = f"{volume.method} {volume.of_means:.4g}"
        if intervals and interval is not None:
            if interval.low is None:
                text += f" (per seed: {interval.test})"
            else:
                text += (
                    f" (per seed {interval.mean:.4g}, 95% CI [{interval.low:.4g}, {interval.high:.4g}], n={interval.n})"
                )
        cells.append(text)
    first, *rest = cells
    name, _, value = first.partition(" ")
    then = f", then {', '.join(rest)}" if rest else ""
    over = " × ".join(label(k).split(" (")[0] for k in front.objectives)
    tail = ""
    if not intervals:
        counts = {h.interval.n for h in ranked if h.interval is not None}
        tail = f" (per seed: n={counts.pop()}, no interval)" if len(counts) == 1 else " (per seed: no interval)"
    return (
        f"Hypervolume ({over}, configuration means, against the reference point {front.reference_text()}): "
        f"**{name}** {value}{then}{tail}."
    )
