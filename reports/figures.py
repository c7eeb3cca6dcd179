"""The report's figures (seaborn, one colour-blind-safe style), each saved as PNG and PDF.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so building a report touches no global plotting state and needs no display.

Every figure draws a method the same way (`method_styles`): its colour from the colour-blind
palette (ten colours; further methods continue with evenly spaced hues) and a marker and line
style of its own, so lines stay apart in greyscale print and where two colours are close. Styles
follow the sweep's method order (`ExperimentRuns.methods`), and so does every legend. The legend
is one per figure, below the panels in as many columns as fit the figure's width, the figure made
taller by its height so that it covers no data however many methods there are (`figure_legend`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
from matplotlib.transforms import Bbox

from harness import contract
from harness.contract import metric_column, parse_noise_metric
from reports import front as pareto
from reports.attacks import KEY as ATTACK_KEY
from reports.attacks import attack_frame
from reports.loading import Configuration, ExperimentRuns
from reports.render import Stat
from reports.tables import SEED, TEACHER, noise_metrics, teacher_runs

PALETTE = "colorblind"
PALETTE_SIZE = 10  # distinct colours of PALETTE; more methods continue with evenly spaced hues
TEACHER_COLOUR = "0.35"
TEACHER_LINE = "--"
TEACHER_MARKER = "x"  # no method has it
PANEL_SIZE = (3.4, 2.8)  # inches per panel
MAX_COLUMNS = 4  # panels per row; more wrap to the next row
LINE_WIDTH = 1.3
MARKER_SIZE = 5.5
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", "p", ">", "h", "*")
DASHES: tuple[tuple[float, ...], ...] = (  # in line widths; () is solid. None is like the teacher's "--"
    (),
    (1.0, 1.3),  # dotted
    (4.0, 1.3, 1.0, 1.3),  # dash-dot
    (7.0, 2.0),  # long dash
    (4.0, 1.3, 1.0, 1.3, 1.0, 1.3),  # dash-dot-dot
)
LEGEND_PAD = 0.1  # inches left free beside and below the legend


@dataclass(frozen=True)
class FigureFile:
    """A saved figure: `<key>.png` and `<key>.pdf` under the report's `figures/`."""

    key: str
    title: str
    caption: str


@dataclass(frozen=True)
class MethodStyle:
    """How every figure draws one method: colour, marker, and line dashes (`()`: solid)."""

    colour: Any
    marker: str
    dashes: tuple[float, ...]

    @property
    def linestyle(self) -> Any:
        """The dashes as a matplotlib line style."""
        return "-" if not self.dashes else (0, self.dashes)

    def handle(self, label: str, line: bool = True) -> Line2D:
        """Its legend entry: marker and (unless `line` is False) its line."""
        return Line2D(
            [], [], color=self.colour, marker=self.marker, markersize=MARKER_SIZE, linewidth=LINE_WIDTH,
            linestyle=self.linestyle if line else "", label=label,
        )  # fmt: skip


@contextmanager
def report_style() -> Iterator[None]:
    """The one style of every report figure: white grid, paper context, colour-blind palette."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), sns.color_palette(PALETTE):
        yield


def method_styles(methods: list[str]) -> dict[str, MethodStyle]:
    """A fixed style per method, by its place in `methods` (the sweep's order): the palette's
    colours in order (after the tenth, evenly spaced hues), and a marker and dashes of its own
    (the pair differs between any two of the first 60 methods)."""
    colours = list(sns.color_palette(PALETTE, n_colors=PALETTE_SIZE))
    if len(methods) > PALETTE_SIZE:
        colours += list(sns.color_palette("husl", n_colors=len(methods) - PALETTE_SIZE))
    return {
        method: MethodStyle(colours[i], MARKERS[i % len(MARKERS)], DASHES[i % len(DASHES)])
        for i, method in enumerate(methods)
    }


def method_colours(methods: list[str]) -> dict[str, object]:
    """A fixed colour per method (the same in every figure) and grey for the teacher."""
    return {**{m: style.colour for m, style in method_styles(methods).items()}, TEACHER: TEACHER_COLOUR}


def teacher_handle(label: str, marker: str = "") -> Line2D:
    """The teacher's legend entry: a grey dashed line (with `marker` where its points are drawn)."""
    return Line2D([], [], color=TEACHER_COLOUR, linestyle=TEACHER_LINE, linewidth=1, marker=marker or None, label=label)


def new_figure(panels: int) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` panels sharing the y axis, at most MAX_COLUMNS to a row (the legend
    goes below them: `figure_legend`)."""
    columns = min(panels, MAX_COLUMNS)
    rows = -(-panels // columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for unused in grid[panels:]:
        unused.set_visible(False)
    return figure, list(grid[:panels])


def save_figure(figure: Figure, folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        figure.savefig(folder / f"{key}.{suffix}", dpi=150, metadata={"CreationDate": None} if suffix == "pdf" else {})


def figure_legend(figure: Figure, handles: list[Any]) -> Legend | None:
    """One legend for the whole figure, below its panels: in as many columns as fit the figure's
    width (rows balanced), the figure widened where one entry alone is wider, and made taller by
    the legend's height so that the panels keep their size and the legend covers none of them."""
    if not handles:
        return None
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    dpi = figure.dpi
    available = figure.get_figwidth() * dpi - 2 * LEGEND_PAD * dpi

    def place(columns: int) -> tuple[Legend, Bbox]:
        legend = figure.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False)
        return legend, legend.get_window_extent(renderer)

    columns = len(handles)
    legend, box = place(columns)
    while box.width > available and columns > 1:
        legend.remove()
        columns -= 1
        legend, box = place(columns)
    rows = -(-len(handles) // columns)
    balanced = -(-len(handles) // rows)  # the same rows, their lengths as even as can be
    if balanced != columns:
        legend.remove()
        legend, box = place(balanced)
    width, height = figure.get_size_inches()
    width = max(width, box.width / dpi + 2 * LEGEND_PAD)
    figure.set_size_inches(width, height + box.height / dpi + LEGEND_PAD)
    return legend


def present_methods(exp: ExperimentRuns, frame: pd.DataFrame) -> list[str]:
    """The methods with data in `frame`, in the report's order (the legend lists only these)."""
    return [method for method in exp.methods if method in set(frame["method"])]


def method_handles(exp: ExperimentRuns, methods: list[str], line: bool = True) -> list[Any]:
    """The legend entries of `methods`, in the report's order, each in its fixed style."""
    styles = method_styles(exp.methods)
    return [styles[m].handle(m, line) for m in exp.methods if m in methods]


def _teacher_line(ax: Axes, exp: ExperimentRuns) -> bool:
    """The teacher's clean accuracy as a dashed reference line (its noise accuracy is not logged);
    whether there was one to draw."""
    teacher = teacher_runs(exp)
    if teacher.empty:
        return False
    accuracy = teacher[metric_column(contract.TEACHER_TEST_ACCURACY)].mean()
    ax.axhline(accuracy, color=TEACHER_COLOUR, linestyle=TEACHER_LINE, linewidth=1)
    return True


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


def _method_lines(ax: Axes, exp: ExperimentRuns, data: pd.DataFrame, x: str) -> list[str]:
    """Accuracy against `x`, one line per method in its fixed style (mean, band ±1 std over seeds);
    the methods drawn."""
    present = present_methods(exp, data)
    if not present:
        return []
    styles = method_styles(exp.methods)
    sns.lineplot(
        data=data,
        x=x,
        y="accuracy",
        hue="method",
        hue_order=present,
        style="method",
        style_order=present,
        palette={m: styles[m].colour for m in present},
        markers={m: styles[m].marker for m in present},
        dashes={m: styles[m].dashes for m in present},
        errorbar="sd",
        linewidth=LINE_WIDTH,
        markersize=MARKER_SIZE,
        legend=False,
        ax=ax,
    )
    return present


def noise_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Accuracy against noise level, one panel per noise type, bands of ±1 std across seeds."""
    frame = noise_frame(exp)
    if frame.empty:
        return None
    kinds = list(dict.fromkeys(frame["noise"]))
    with report_style():
        figure, axes = new_figure(len(kinds))
        drawn: set[str] = set()
        teacher = False
        for ax, kind in zip(axes, kinds, strict=True):
            drawn.update(_method_lines(ax, exp, frame[frame["noise"] == kind], "level"))
            teacher = _teacher_line(ax, exp) or teacher
            ax.set(title=kind.replace("_", " "), xlabel="noise level", ylabel="test accuracy")
        handles = method_handles(exp, list(drawn)) + ([teacher_handle(f"{TEACHER}, clean")] if teacher else [])
        figure_legend(figure, handles)
        save_figure(figure, folder, "accuracy_vs_noise")
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
        figure, (ax,) = new_figure(1)
        drawn = _method_lines(ax, exp, frame, "T")
        teacher = _teacher_line(ax, exp)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(list(exp.settings.time_steps)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="time steps T", ylabel="test accuracy", title="accuracy versus T")
        handles = method_handles(exp, drawn) + ([teacher_handle(f"{TEACHER}, clean")] if teacher else [])
        figure_legend(figure, handles)
        save_figure(figure, folder, "accuracy_vs_time_steps")
    return FigureFile(
        "accuracy_vs_time_steps",
        "Accuracy versus time steps",
        "Clean test accuracy against T (log2 axis), from the same runs as the table above; "
        "lines are means over seeds, bands ±1 standard deviation; dashed: the ANN teacher.",
    )


def attack_figure(exp: ExperimentRuns, folder: Path) -> FigureFile | None:
    """Accuracy against the attack budget eps, one panel per attack, a line per method (and the
    teacher where its attacks are logged), error bars ±1 std across seeds."""
    frame = attack_frame(exp)
    if frame.empty:
        return None
    styles = method_styles(exp.methods)
    attacks = sorted(set(frame["attack"]))
    with report_style():
        figure, axes = new_figure(len(attacks))
        drawn: set[str] = set()
        teacher = False
        for ax, attack in zip(axes, attacks, strict=True):
            data = frame[frame["attack"] == attack]
            models = present_methods(exp, data) + ([TEACHER] if TEACHER in set(data["method"]) else [])
            eps_values = sorted(set(data["eps"]))
            width = (max(eps_values) - min(eps_values)) or 1.0
            for number, model in enumerate(models):
                stats = data[data["method"] == model].groupby("eps")["accuracy"].agg(["mean", "std"])
                x = stats.index.to_numpy(dtype=float) + (number - (len(models) - 1) / 2) * width * 0.012
                if model == TEACHER:
                    look = {"color": TEACHER_COLOUR, "marker": TEACHER_MARKER, "linestyle": TEACHER_LINE,
                            "markeredgecolor": TEACHER_COLOUR}  # fmt: skip
                    teacher = True
                else:
                    style = styles[model]
                    look = {"color": style.colour, "marker": style.marker, "linestyle": style.linestyle,
                            "markeredgecolor": "white"}  # fmt: skip
                    drawn.add(model)
                ax.errorbar(
                    x, stats["mean"], yerr=stats["std"].fillna(0.0).to_numpy(), **look, linewidth=LINE_WIDTH,
                    markersize=MARKER_SIZE, markeredgewidth=0.6, elinewidth=0.8, capsize=2,
                )  # fmt: skip
            if len(eps_values) <= 6:
                ax.set_xticks(eps_values, labels=[f"{eps:.3g}" for eps in eps_values])
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set(title=attack, xlabel="eps (L-infinity, [0, 1] pixels)", ylabel="test accuracy")
        handles = method_handles(exp, list(drawn))
        if teacher:
            handles.append(teacher_handle(TEACHER, TEACHER_MARKER))
        figure_legend(figure, handles)
        save_figure(figure, folder, ATTACK_KEY)
    return FigureFile(
        ATTACK_KEY,
        "Accuracy versus attack budget",
        f"Test accuracy against the L-infinity budget eps ([0, 1] pixel space; 0: the clean test set) at "
        f"T = {exp.settings.reference_time_steps}, one panel per attack: points are means over seeds, error bars "
        "±1 standard deviation, each method's points shifted slightly along eps so that the bars stay apart; "
        "transfer images come from the ANN teacher.",
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
    styles = method_styles(exp.methods)
    drawn = []
    labels: list[tuple[float, float, str, object]] = []
    with report_style():
        figure = Figure(figsize=FRONT_SIZE, layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        for method in found.methods:
            indices = [i for i in found.of(method) if x in found.points[i] and y in found.points[i]]
            if not indices:
                continue
            drawn.append(method)
            indices.sort(key=lambda i: found.points[i][x])
            colour = styles[method].colour
            xs = [found.points[i][x] for i in indices]
            ys = [found.points[i][y] for i in indices]
            ax.plot(xs, ys, color=colour, linestyle=styles[method].linestyle, linewidth=1.2, alpha=0.8, zorder=2)
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
        handles = [  # the method's colour and line style (the markers say what a point is)
            Line2D([], [], color=styles[m].colour, linestyle=styles[m].linestyle, linewidth=1.2, label=m)
            for m in exp.methods
            if m in drawn
        ]
        handles += [
            Line2D([], [], color="0.3", marker="s", linestyle="", markerfacecolor="0.3", label="reference config."),
            Line2D([], [], color="0.3", marker="o", linestyle="", markerfacecolor="0.3", label="on its method's front"),
            Line2D([], [], color="0.3", marker="o", linestyle="", markerfacecolor="white", label="dominated"),
        ]
        if found.reference is not None:
            handles.append(
                Line2D([], [], color=TEACHER_COLOUR, marker="x", linestyle="", label="hypervolume reference")
            )
        figure_legend(figure, handles)
        _place_labels(figure, ax, labels)
        save_figure(figure, folder, "pareto_front")
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
