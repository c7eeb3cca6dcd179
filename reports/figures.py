"""The report's figures (seaborn, one colour-blind-safe style), each saved as PNG and PDF.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so building a report touches no global plotting state and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
from matplotlib.transforms import Bbox

from harness import contract
from harness.contract import Tag, metric_column, param_column, parse_noise_metric
from reports import front as pareto
from reports.loading import Configuration, ExperimentRuns
from reports.render import Stat
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


FRONT_SIZE = (5.6, 4.2)  # inches, the front panel alone


def point_label(exp: ExperimentRuns, configuration: Configuration) -> str:
    """`T=2 d=8 w=4`: a configuration's T, its student depth and (where searched) width."""
    parts = [f"T={configuration.time_steps}"]
    depth = configuration.param("student.depth")
    if depth is not None:
        parts.append(f"d={depth}")
    width = configuration.param("student.width")
    if width is not None and "student.width" in exp.searched_dims(configuration.method):
        parts.append(f"w={width}")
    return " ".join(parts)


def pareto_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Test accuracy against energy (a Pareto sweep's second objective): one front per method, its
    configurations' means joined in order of energy, error bars ±1 std over seeds in both axes,
    the method's non-dominated points filled, each annotated with its T, depth and width."""
    found = pareto.pareto_front(exp)
    if found is None or found.x is None:
        return None
    x, y = found.x, found.y
    colours = method_colours(exp.methods)
    drawn = []
    labels: list[tuple[float, float, str, object]] = []
    with report_style():
        figure = Figure(figsize=(FRONT_SIZE[0] + LEGEND_WIDTH, FRONT_SIZE[1]), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        for method in found.methods:
            indices = [i for i in found.of(method) if x in found.points[i] and y in found.points[i]]
            if not indices:
                continue
            drawn.append(method)
            indices.sort(key=lambda i: found.points[i][x])
            colour = colours[method]
            xs = [found.points[i][x] for i in indices]
            ys = [found.points[i][y] for i in indices]
            ax.plot(xs, ys, color=colour, linewidth=1.2, alpha=0.8, zorder=2)
            for i in indices:
                configuration = found.configurations[i]
                x_stat, y_stat = pareto.stat(configuration, x), pareto.stat(configuration, y)
                on_front = i in found.method_front
                ax.errorbar(
                    found.points[i][x],
                    found.points[i][y],
                    xerr=_spread(x_stat),
                    yerr=_spread(y_stat),
                    fmt="s" if configuration.reference else "o",
                    markersize=7 if on_front else 5.5,
                    color=colour,
                    markerfacecolor=colour if on_front else "white",
                    markeredgewidth=1.3,
                    elinewidth=0.9,
                    capsize=2,
                    zorder=3,
                )
                labels.append((found.points[i][x], found.points[i][y], point_label(exp, configuration), colour))
        if not drawn:
            return None
        if found.reference is not None and x in found.reference and y in found.reference:
            ax.plot(found.reference[x], found.reference[y], marker="x", color=TEACHER_COLOUR, markersize=7, zorder=3)
        ax.set(xlabel=pareto.label(x), ylabel=pareto.label(y), title=f"{pareto.label(y)} versus {pareto.label(x)}")
        handles = [Line2D([], [], color=colours[m], marker="o", label=m) for m in drawn]
        handles += [
            Line2D([], [], color="0.3", marker="s", linestyle="", markerfacecolor="0.3", label="reference config."),
            Line2D([], [], color="0.3", marker="o", linestyle="", markerfacecolor="0.3", label="on its method's front"),
            Line2D([], [], color="0.3", marker="o", linestyle="", markerfacecolor="white", label="dominated"),
        ]
        if found.reference is not None:
            handles.append(
                Line2D([], [], color=TEACHER_COLOUR, marker="x", linestyle="", label="hypervolume reference")
            )
        figure.legend(handles=handles, loc="outside right upper", frameon=False)
        _place_labels(figure, ax, labels)
        _save(figure, folder, "pareto_front")
    better = "lower" if found.objectives[x] == "min" else "higher"
    return FigureFile(
        "pareto_front",
        "The accuracy versus energy front",
        f"Test {pareto.label(y).removeprefix('test ')} against {pareto.label(x)} ({better} is better) of every "
        "configuration the Pareto search's final stage retrained: points are means over seeds, error bars ±1 "
        "standard deviation in both axes (none with one seed); each method's configurations are joined in order "
        f"of {pareto.label(x).split(' (')[0]}; filled: on the method's own front, open: dominated by another of "
        "its configurations; squares: the reference configurations; labels: T, depth (d) and width (w, where "
        "searched). The cross is the hypervolume's reference point.",
    )


LABEL_PLACES = (  # (dx, dy) in points, horizontal and vertical alignment: tried in this order
    (5, 4, "left", "bottom"),
    (5, -4, "left", "top"),
    (-5, 4, "right", "bottom"),
    (-5, -4, "right", "top"),
    (0, 9, "center", "bottom"),
    (0, -9, "center", "top"),
    (9, 0, "left", "center"),
    (-9, 0, "right", "center"),
)


def _place_labels(figure: Figure, ax: Axes, labels: list[tuple[float, float, str, object]]) -> None:
    """Annotates each point with its label at the first place (`LABEL_PLACES`) where the text stays
    inside the panel and overlaps neither a point nor an earlier label (the first place where none is free)."""
    figure.canvas.draw()  # settles the layout, so the texts' extents are where they will be drawn
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    panel = ax.get_window_extent(renderer)
    pad = 4.0 * figure.dpi / 72  # a marker's half-size, in pixels
    taken = []
    for x, y, _, _ in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - pad, py - pad, px + pad, py + pad))
    for x, y, text, colour in labels:
        for number, (dx, dy, ha, va) in enumerate(LABEL_PLACES):
            note = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=6.5,
                color=colour, zorder=4,
            )  # fmt: skip
            box = note.get_window_extent(renderer)
            inside = panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
            if number + 1 < len(LABEL_PLACES):
                note.remove()


def _spread(cell: Stat | None) -> float | None:
    """A statistic's standard deviation for an error bar (None with one seed)."""
    return None if cell is None or math.isnan(cell.std) else cell.std


def all_figures(exp: ExperimentRuns, folder: Path) -> list[FigureFile]:
    """Draws every figure into `folder`; returns those drawn (a figure without data is skipped)."""
    drawn = [
        noise_figure(exp, folder),
        time_step_figure(exp, folder),
        pareto_figure(exp, folder),
        search_figure(exp, folder),
    ]
    return [figure for figure in drawn if figure is not None]
