"""The report's figures (seaborn, one colour-blind-safe style), each saved as PNG and PDF.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so building a report touches no global plotting state and needs no display.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from harness import contract
from harness.contract import Tag, metric_column, param_column, parse_noise_metric
from reports.loading import ExperimentRuns
from reports.tables import SEED, TEACHER, noise_metrics, teacher_runs

PALETTE = "colorblind"
TEACHER_COLOUR = "0.35"
PANEL_SIZE = (3.4, 2.8)  # inches per panel
MAX_COLUMNS = 4  # panels per row; more wrap to the next row
LEGEND_WIDTH = 1.8  # inches beside the panels for the figure's legend


@dataclass(frozen=True)
class FigureFile:
    """A saved figure: `<key>.png` and `<key>.pdf` under the report's `figures/`."""

    key: str
    title: str
    caption: str


@contextmanager
def report_style() -> Iterator[None]:
    """The one style of every report figure: white grid, paper context, colour-blind palette."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), sns.color_palette(PALETTE):
        yield


def method_colours(methods: list[str]) -> dict[str, object]:
    """A fixed colour per method (the same in every figure) and grey for the teacher."""
    colours = sns.color_palette(PALETTE, n_colors=max(len(methods), 1))
    return {**dict(zip(methods, colours, strict=False)), TEACHER: TEACHER_COLOUR}


def _new_figure(panels: int) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` panels sharing the y axis, at most MAX_COLUMNS to a row."""
    columns = min(panels, MAX_COLUMNS)
    rows = -(-panels // columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns + LEGEND_WIDTH, PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for unused in grid[panels:]:
        unused.set_visible(False)
    return figure, list(grid[:panels])


def _save(figure: Figure, folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        figure.savefig(folder / f"{key}.{suffix}", dpi=150, metadata={"CreationDate": None} if suffix == "pdf" else {})


def _figure_legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend for the whole figure, outside the panels on the right: the panel legend with most entries."""
    entries = [ax.get_legend_handles_labels() for ax in axes if ax.get_legend() is not None]
    if not entries:
        return
    handles, labels = max(entries, key=lambda entry: len(entry[1]))
    for ax in axes:
        if (legend := ax.get_legend()) is not None:
            legend.remove()
    figure.legend(handles, labels, loc="outside right upper", frameon=False)


def _present(exp: ExperimentRuns, frame: pd.DataFrame) -> list[str]:
    """The methods with data in `frame`, in the report's order (the legend lists only these)."""
    return [method for method in exp.methods if method in set(frame["method"])]


def _teacher_line(ax: Axes, exp: ExperimentRuns) -> None:
    """The teacher's clean accuracy as a dashed reference line (its noise accuracy is not logged)."""
    teacher = teacher_runs(exp)
    if not teacher.empty:
        accuracy = teacher[metric_column(contract.TEACHER_TEST_ACCURACY)].mean()
        ax.axhline(accuracy, color=TEACHER_COLOUR, linestyle="--", linewidth=1, label=f"{TEACHER}, clean")


def noise_frame(exp: ExperimentRuns) -> pd.DataFrame:
    """Long form: method, seed, noise type, level, accuracy (level 0: the clean test set)."""
    reference = exp.settings.reference_time_steps
    rows = []
    for method in exp.methods:
        for _, run in exp.finals_at(method, reference).iterrows():
            for metric in noise_metrics(exp):
                kind, level = parse_noise_metric(metric)
                rows.append((method, run[SEED], kind, 0.0, run.get(metric_column(contract.TEST_ACCURACY))))
                rows.append((method, run[SEED], kind, level, run.get(metric_column(metric))))
    frame = pd.DataFrame(rows, columns=["method", "seed", "noise", "level", "accuracy"])
    return frame.dropna(subset=["accuracy"]).drop_duplicates()


def _method_lines(ax: Axes, exp: ExperimentRuns, frame: pd.DataFrame, data: pd.DataFrame, x: str) -> None:
    """Accuracy against `x`, one line per method (mean, band ±1 std over seeds), and the teacher's line."""
    sns.lineplot(
        data=data,
        x=x,
        y="accuracy",
        hue="method",
        hue_order=_present(exp, frame),
        palette=method_colours(exp.methods),
        errorbar="sd",
        marker="o",
        ax=ax,
    )
    _teacher_line(ax, exp)


def noise_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Accuracy against noise level, one panel per noise type, bands of ±1 std across seeds."""
    frame = noise_frame(exp)
    if frame.empty:
        return None
    kinds = list(dict.fromkeys(frame["noise"]))
    with report_style():
        figure, axes = _new_figure(len(kinds))
        for ax, kind in zip(axes, kinds, strict=True):
            _method_lines(ax, exp, frame, frame[frame["noise"] == kind], "level")
            ax.set(title=kind.replace("_", " "), xlabel="noise level", ylabel="test accuracy")
            ax.legend()
        _figure_legend(figure, axes)
        _save(figure, folder, "accuracy_vs_noise")
    return FigureFile(
        "accuracy_vs_noise",
        "Accuracy versus noise level",
        f"Test accuracy against the noise level (0: clean) at T = {exp.settings.reference_time_steps}; "
        "lines are means over seeds, bands ±1 standard deviation; dashed: the ANN teacher on clean images.",
    )


def time_step_frame(exp: ExperimentRuns) -> pd.DataFrame:
    """Long form: method, seed, T, accuracy (trained at T, or read off the reference-T runs)."""
    rows = []
    for method in exp.methods:
        for steps in exp.settings.time_steps:
            runs, metric = exp.at_time_steps(method, steps)
            rows += [(method, run[SEED], steps, run.get(metric_column(metric))) for _, run in runs.iterrows()]
    frame = pd.DataFrame(rows, columns=["method", "seed", "T", "accuracy"])
    return frame.dropna(subset=["accuracy"])


def time_step_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Accuracy against T on a log2 axis, bands of ±1 std across seeds."""
    frame = time_step_frame(exp)
    if frame.empty:
        return None
    with report_style():
        figure, (ax,) = _new_figure(1)
        _method_lines(ax, exp, frame, frame, "T")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(list(exp.settings.time_steps)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="time steps T", ylabel="test accuracy", title="accuracy versus T")
        ax.legend()
        _figure_legend(figure, [ax])
        _save(figure, folder, "accuracy_vs_time_steps")
    return FigureFile(
        "accuracy_vs_time_steps",
        "Accuracy versus time steps",
        "Clean test accuracy against T (log2 axis), from the same runs as the table above; "
        "lines are means over seeds, bands ±1 standard deviation; dashed: the ANN teacher.",
    )


def search_frame(exp: ExperimentRuns) -> pd.DataFrame:
    """Long form over finished trial runs: method, searched dim, its value, final val accuracy, pruned."""
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
                value = pd.to_numeric(run.get(param_column(dim)), errors="coerce")
                state = "pruned" if pruned[index] else "complete"
                rows.append((method, dim, value, run[accuracy], state))
    frame = pd.DataFrame(rows, columns=["method", "dim", "value", "val_accuracy", "trial"])
    return frame.dropna(subset=["value", "val_accuracy"])


def search_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Final validation accuracy of every finished trial against each searched dimension."""
    frame = search_frame(exp)
    if frame.empty:
        return None
    dims = list(dict.fromkeys(frame["dim"]))
    with report_style():
        figure, axes = _new_figure(len(dims))
        for ax, dim in zip(axes, dims, strict=True):
            sns.scatterplot(
                data=frame[frame["dim"] == dim],
                x="value",
                y="val_accuracy",
                hue="method",
                hue_order=_present(exp, frame),
                style="trial",
                style_order=["complete", "pruned"],
                palette=method_colours(exp.methods),
                s=40,
                alpha=0.85,
                ax=ax,
            )
            ax.set(xlabel=dim, ylabel="validation accuracy")
        _figure_legend(figure, axes)
        _save(figure, folder, "search")
    return FigureFile(
        "search",
        "The search",
        "Final validation accuracy of every finished trial against each searched dimension, per method "
        "(pruned: stopped early by ASHA, so its accuracy is from fewer epochs).",
    )


def all_figures(exp: ExperimentRuns, folder: Path) -> list[FigureFile]:
    """Draws every figure into `folder`; returns those drawn (a figure without data is skipped)."""
    drawn = [noise_figure(exp, folder), time_step_figure(exp, folder), search_figure(exp, folder)]
    return [figure for figure in drawn if figure is not None]
