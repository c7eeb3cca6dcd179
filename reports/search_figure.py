"""The search figure: every finished trial's validation accuracy against each searched dimension.

Dimensions with a few discrete values (student depth, T, conversion levels) are drawn at evenly
spaced categories, each method's points dodged side by side; continuous ones at their values, on
a log axis where the distribution is logarithmic (`dim_axis`). Which dims are categorical is read
from the sweep's recorded plan (the parent run's `space/plan.json`), else from the values.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from harness import contract
from harness.contract import Role, Tag, metric_column, param_column
from reports import figures
from reports.figures import (
    MARKER_SIZE,
    FigureFile,
    MethodStyle,
    figure_legend,
    method_handles,
    method_styles,
    new_figure,
    present_methods,
    report_style,
)
from reports.loading import ExperimentRuns

PLAN_ARTIFACT = "space/plan.json"  # the sweep parent's resolved plan: per method its searched dims
MAX_CATEGORIES = 8  # an unrecorded integer dim with at most this many values is drawn as categories
LOG_SPAN = 10.0  # an unrecorded positive continuous dim spanning more than this factor gets a log axis
DODGE = 0.8  # of a category's width, shared by the methods' points
JITTER = 0.3  # of a method's share, each way

AxisKind = Literal["categorical", "linear", "log"]


def recorded_dims(exp: ExperimentRuns) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method, its searched dims' distributions in the space file's form (`{"categorical":
    [5, 7]}`, `{"int": [1, 8]}`, `{"float": [1e-4, 1e-2], "log": true}`), from the plan the sweep
    logged on its parent run (`space/plan.json`); empty where no parent run has it (an older
    store, or runs written without a sweep)."""
    parents = exp.with_role(Role.SWEEP)
    if parents.empty or "run_id" not in parents.columns:
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(exp.tracking_uri)
    for run_id in parents["run_id"]:
        try:
            with tempfile.TemporaryDirectory() as folder:
                plan = json.loads(Path(client.download_artifacts(run_id, PLAN_ARTIFACT, folder)).read_text())
        except Exception:  # an optional record: without it, the values decide
            continue
        methods = plan.get("methods", {}) if isinstance(plan, dict) else {}
        return {
            method: {str(dim): dict(dist) for dim, dist in entry.get("dims", {}).items() if isinstance(dist, dict)}
            for method, entry in methods.items()
            if isinstance(entry, dict)
        }
    return {}


def _number(text: object) -> float | None:
    """A param's text as a finite number, None where it is not one."""
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def category(text: object) -> str:
    """A value's tick label: a number printed with `:g` (`5`, `0.001`), anything else as it is."""
    value = _number(text)
    return str(text) if value is None else f"{value:g}"


def _ordered(labels: list[str]) -> list[str]:
    """Category labels without repeats: numbers in increasing order, then the rest in their order."""
    unique = list(dict.fromkeys(labels))
    numbers = sorted((label for label in unique if _number(label) is not None), key=lambda t: _number(t) or 0.0)
    return numbers + [label for label in unique if _number(label) is None]


def dim_axis(values: list[object], distribution: dict[str, Any] | None = None) -> tuple[AxisKind, list[str]]:
    """How the search figure draws a searched dim: on categories (with their tick labels, in order)
    or on a continuous axis, linear or log.

    Where the sweep recorded the dim's distribution (`recorded_dims`): `categorical` -> categories
    (its choices and any other value the trials show); `int` -> categories when the range holds at
    most MAX_CATEGORIES values, else continuous; `float` -> continuous; a continuous axis is log
    where the distribution is (`log: true`). Otherwise, from the values the trials logged: any
    value not a number, or every value an integer with at most MAX_CATEGORIES distinct values
    (student depth, T, conversion levels) -> categories; else continuous, on a log axis where
    every value is positive and the largest is more than LOG_SPAN times the smallest (a learning
    rate across decades).
    """
    labels = [category(v) for v in values]
    numbers = [_number(v) for v in values]
    if distribution:
        if "categorical" in distribution:
            return "categorical", _ordered([category(c) for c in distribution["categorical"]] + labels)
        if "int" in distribution:
            low, high = (int(b) for b in distribution["int"])
            step = int(distribution.get("step") or 1)
            grid = list(range(low, high + 1, step))
            if not distribution.get("log") and len(grid) <= MAX_CATEGORIES:
                return "categorical", _ordered([category(v) for v in grid] + labels)
        if all(n is not None for n in numbers):
            return ("log" if distribution.get("log") else "linear"), []
    if any(n is None for n in numbers):
        return "categorical", _ordered(labels)
    found = [n for n in numbers if n is not None]
    if all(n.is_integer() for n in found) and len(set(found)) <= MAX_CATEGORIES:
        return "categorical", _ordered(labels)
    if found and min(found) > 0 and max(found) > LOG_SPAN * min(found):
        return "log", []
    return "linear", []


def search_frame(exp: ExperimentRuns) -> pd.DataFrame:
    """Long form over finished trial runs: method, searched dim, its value (the param's text),
    final val accuracy, pruned."""
    rows = []
    for method in exp.methods:
        trials = exp.trials_of(method)
        trials = trials[(trials["status"] == "FINISHED")]
        accuracy = metric_column(contract.VAL_ACCURACY)
        if accuracy not in trials.columns:
            continue
        pruned = exp.tag(Tag.PRUNED, trials) == contract.TRUE
        for dim in exp.searched_dims(method):
            for index, run in trials.iterrows():
                value = run.get(param_column(dim))
                state = "pruned" if pruned[index] else "complete"
                rows.append((method, dim, None if pd.isna(value) else str(value), run[accuracy], state))
    frame = pd.DataFrame(rows, columns=["method", "dim", "value", "val_accuracy", "trial"])
    return frame.dropna(subset=["value", "val_accuracy"])


def _trial_points(ax: Axes, x: np.ndarray, rows: pd.DataFrame, style: MethodStyle) -> None:
    """A method's trials at `x`: its marker, filled where the trial ran every epoch, open where pruned."""
    accuracy = rows["val_accuracy"].to_numpy(dtype=float)
    complete = (rows["trial"] == "complete").to_numpy()
    ax.scatter(x[complete], accuracy[complete], marker=style.marker, s=34, color=style.colour,
               edgecolors="white", linewidths=0.5, alpha=0.9, zorder=3)  # fmt: skip
    ax.scatter(x[~complete], accuracy[~complete], marker=style.marker, s=34, facecolors="none",
               edgecolors=[style.colour], linewidths=1.1, alpha=0.9, zorder=3)  # fmt: skip


def _search_panel(
    ax: Axes, exp: ExperimentRuns, panel: pd.DataFrame, dim: str, kind: AxisKind, ticks: list[str]
) -> None:
    """One searched dim: on categories, each method's points dodged into its own share of a
    category's width and jittered within it (fixed seed); else at their values."""
    styles = method_styles(exp.methods)
    methods = present_methods(exp, panel)
    rng = np.random.default_rng(0)
    share = DODGE / len(methods)
    for number, method in enumerate(methods):
        rows = panel[panel["method"] == method]
        if kind == "categorical":
            base = np.array([ticks.index(category(v)) for v in rows["value"]], dtype=float)
            offset = (number - (len(methods) - 1) / 2) * share
            x = base + offset + rng.uniform(-JITTER, JITTER, len(rows)) * share
        else:
            x = np.array([_number(v) for v in rows["value"]], dtype=float)
        _trial_points(ax, x, rows, styles[method])
    if kind == "categorical":
        ax.set_xticks(range(len(ticks)), labels=ticks)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(False, axis="x")
    elif kind == "log":
        ax.set_xscale("log")
        # Plain numbers at the major and minor ticks (a range within a decade has no major tick
        # but gets labelled minor ones, as `2x10^0` by default).
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    ax.set(xlabel=dim, ylabel="validation accuracy")


def _minor_log_label(value: float, _: int) -> str:
    """A minor tick of a log axis labelled where it is 2, 3 or 5 times a power of ten (so that
    neighbouring labels do not collide), else unlabelled."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (2, 3, 5)) else ""


def search_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Final validation accuracy of every finished trial against each searched dimension: categorical
    dims on categories, continuous ones on a linear or log axis (`dim_axis`)."""
    frame = search_frame(exp)
    if frame.empty:
        return None
    dims = list(dict.fromkeys(frame["dim"]))
    recorded = recorded_dims(exp)
    with report_style():
        figure, axes = new_figure(len(dims))
        for ax, dim in zip(axes, dims, strict=True):
            panel = frame[frame["dim"] == dim]
            distribution = next((recorded[m][dim] for m in exp.methods if dim in recorded.get(m, {})), None)
            kind, ticks = dim_axis(list(panel["value"]), distribution)
            _search_panel(ax, exp, panel, dim, kind, ticks)
        grey = "0.3"
        states = [] if (frame["trial"] == "complete").all() else [
            Line2D([], [], color=grey, marker="o", markersize=MARKER_SIZE, linestyle="", label="complete"),
            Line2D(
                [],
                [],
                color=grey,
                marker="o",
                markersize=MARKER_SIZE,
                linestyle="",
                markerfacecolor="none",
                label="pruned",
            ),  # fmt: skip
        ]  # the filled/open key only where some trial was pruned
        figure_legend(figure, method_handles(exp, present_methods(exp, frame), line=False) + states)
        figures.save_figure(figure, folder, "search")  # through the module: one place saves
    return FigureFile(
        "search",
        "The search",
        "Final validation accuracy of every finished trial against each searched dimension, per method "
        "(filled: ran every epoch; open: pruned, stopped early by ASHA, so its accuracy is from fewer epochs). "
        "Dimensions with a few discrete values are drawn at evenly spaced categories, each method's points "
        "side by side and jittered within its share; continuous ones at their values.",
    )
