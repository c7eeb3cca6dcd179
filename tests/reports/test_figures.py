"""The figures with many methods: fixed styles, legends inside the figure and off the panels,
categorical search axes, and tables that still fit a LaTeX page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
import seaborn as sns
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from reports import figures
from reports.build import build_report
from reports.contents import all_figures
from reports.figures import PALETTE, TEACHER_COLOUR, method_colours, method_styles
from reports.loading import load_experiment
from reports.render import TEXT_WIDTH, Column, Stat, Table, latex_blocks, to_latex
from reports.search_figure import MAX_CATEGORIES, dim_axis

from .many_methods import ATTACKS, NAMES, write_many

PLAN = {  # what a sweep logs as its parent's space/plan.json: depth recorded with a choice no trial drew
    "methods": {
        "kd": {"dims": {"student.depth": {"categorical": [5, 7, 9]}, "optim.lr": {"float": [1e-4, 1e-2], "log": True}}},
        "direct": {"dims": {"student.depth": {"categorical": [5, 7, 9]}}},
    }
}


@pytest.fixture(scope="module")
def many_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`two` and `eight` methods (every figure, attacks included), and `planned` (two methods, with
    the sweep's recorded distributions)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('many_store') / 'mlflow.db'}"
    write_many(uri, "two", NAMES[:2], attacks=ATTACKS)
    write_many(uri, "eight", NAMES[:8], attacks=ATTACKS, teacher_attacks=True)
    write_many(uri, "planned", ("kd", "direct"), plan=PLAN)
    return uri


def _drawn(exp, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Every figure of `exp`, by key, as `all_figures` saved it."""
    saved: dict[str, Figure] = {}
    original = figures.save_figure

    def keep(figure: Figure, where: Path, key: str) -> None:
        original(figure, where, key)
        saved[key] = figure

    monkeypatch.setattr(figures, "save_figure", keep)
    all_figures(exp, folder)
    return saved


def test_each_method_has_a_fixed_colour_marker_and_line_style() -> None:
    styles = method_styles(list(NAMES))
    palette = sns.color_palette(PALETTE, n_colors=10)
    assert [to_rgb(styles[m].colour) for m in NAMES] == [to_rgb(c) for c in palette]  # ten distinct colours
    assert len({(s.marker, s.dashes) for s in styles.values()}) == len(NAMES)
    assert len({s.marker for s in styles.values()}) == len(NAMES)  # a second cue, for greyscale print
    assert to_rgb(TEACHER_COLOUR) not in {to_rgb(s.colour) for s in styles.values()}
    # the style depends on the place in the sweep's order only: the same in every figure of a report
    assert method_styles(list(NAMES[:6])) == {m: styles[m] for m in NAMES[:6]}
    assert method_colours(list(NAMES[:3]))["kd"] == styles["kd"].colour
    twelve = method_styles([f"m{i}" for i in range(12)])
    assert len({to_rgb(s.colour) for s in twelve.values()}) == 12


@pytest.mark.parametrize("experiment", ["two", "eight"])
def test_legends_lie_inside_the_figure_and_off_the_panels(
    many_store: str, experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = load_experiment(many_store, experiment)
    drawn = _drawn(exp, tmp_path, monkeypatch)
    assert set(drawn) == {"accuracy_vs_noise", "accuracy_vs_eps", "accuracy_vs_time_steps", "search"}
    for key, figure in drawn.items():
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        (legend,) = figure.legends
        box = legend.get_window_extent(renderer)
        frame = figure.bbox
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, key
        for ax in figure.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_tightbbox(renderer)), (key, ax.get_title() or ax.get_xlabel())
        labels = [text.get_text() for text in legend.get_texts()]
        assert labels[: len(exp.methods)] == exp.methods, key  # the sweep's order, in every figure
        width, height = figure.get_size_inches()
        pixels = matplotlib.image.imread(tmp_path / f"{key}.png")
        saved = pixels.shape[:2]  # saved as drawn, nothing cut off (to the pixel: Agg truncates)
        assert abs(saved[0] - height * 150) < 1.01 and abs(saved[1] - width * 150) < 1.01, key


def test_lines_are_drawn_in_the_methods_styles(many_store: str, tmp_path: Path, monkeypatch) -> None:
    exp = load_experiment(many_store, "eight")
    styles = method_styles(exp.methods)
    ax = _drawn(exp, tmp_path, monkeypatch)["accuracy_vs_eps"].axes[0]
    looks = {(ax_line.get_marker(), to_rgb(ax_line.get_color())) for ax_line in ax.get_lines()}
    assert {(styles[m].marker, to_rgb(styles[m].colour)) for m in exp.methods} <= looks


def _search_axes(figure: Figure) -> dict[str, object]:
    return {ax.get_xlabel(): ax for ax in figure.axes if ax.get_visible()}


def test_categorical_dims_are_drawn_at_their_values(many_store: str, tmp_path: Path, monkeypatch) -> None:
    """Depth in {5, 7} and T in {1, 2, 4}: evenly spaced ticks at exactly those values; the
    learning rate, across two decades, on a log axis."""
    exp = load_experiment(many_store, "eight")
    panels = _search_axes(_drawn(exp, tmp_path, monkeypatch)["search"])
    for dim, values in (("student.depth", ["5", "7"]), ("snn.time_steps", ["1", "2", "4"])):
        ax = panels[dim]
        assert [t.get_text() for t in ax.get_xticklabels()] == values, dim
        assert list(ax.get_xticks()) == list(range(len(values)))
        for collection in ax.collections:  # every point within its category's width
            for x, _ in collection.get_offsets():
                assert min(abs(x - i) for i in range(len(values))) < 0.5
    assert panels["optim.lr"].get_xscale() == "log"


def test_methods_are_dodged_apart_within_a_category(many_store: str, tmp_path: Path, monkeypatch) -> None:
    exp = load_experiment(many_store, "two")
    ax = _search_axes(_drawn(exp, tmp_path, monkeypatch)["search"])["student.depth"]
    centres = []
    for collection in ax.collections:
        xs = [x for x, _ in collection.get_offsets() if x < 0.5]  # depth 5
        if xs:
            centres.append(sum(xs) / len(xs))
    kd, direct = centres[0], centres[-1]  # the filled points of each method come first, in order
    assert kd < 0 < direct


def test_the_sweeps_recorded_distribution_decides(many_store: str, tmp_path: Path, monkeypatch) -> None:
    exp = load_experiment(many_store, "planned")
    panels = _search_axes(_drawn(exp, tmp_path, monkeypatch)["search"])
    assert [t.get_text() for t in panels["student.depth"].get_xticklabels()] == ["5", "7", "9"]
    assert panels["optim.lr"].get_xscale() == "log"


def test_the_rule_for_categorical_dims() -> None:
    assert dim_axis(["5", "7", "5"]) == ("categorical", ["5", "7"])
    assert dim_axis(["4", "1", "2"]) == ("categorical", ["1", "2", "4"])
    assert dim_axis(["adam", "sgd"]) == ("categorical", ["adam", "sgd"])
    assert dim_axis(["0.2", "0.5", "0.8"]) == ("linear", [])
    assert dim_axis(["0.0001", "0.001", "0.01"]) == ("log", [])
    assert dim_axis([str(v) for v in range(MAX_CATEGORIES + 1)]) == ("linear", [])
    assert dim_axis(["18"], {"categorical": [18, 34]}) == ("categorical", ["18", "34"])
    assert dim_axis(["2"], {"int": [1, 4]}) == ("categorical", ["1", "2", "3", "4"])
    assert dim_axis(["2", "40"], {"int": [1, 64], "log": True}) == ("log", [])
    assert dim_axis(["0.05", "0.9"], {"float": [0.0, 1.0]}) == ("linear", [])
    assert dim_axis(["0.001"], {"float": [1e-4, 1e-2], "log": True}) == ("log", [])


def _wide_table(columns: int) -> Table:
    return Table(
        key="wide",
        title="Wide",
        description="",
        row_header="model",
        columns=tuple(Column(f"pgd 0.0{i}", "higher") for i in range(columns)),
        rows=tuple((m, tuple(Stat(0.9 - 0.01 * i, 0.005, 3) for i in range(columns))) for m in NAMES[:6]),
    )


def test_a_table_too_wide_for_the_page_is_split_into_blocks_of_columns() -> None:
    blocks = latex_blocks(_wide_table(12))
    assert [i for block in blocks for i in block] == list(range(12)) and len(blocks) > 1
    latex = to_latex(_wide_table(12))
    assert latex.count(r"\begin{tabular}") == len(blocks)
    assert sum(line.startswith("kd & 3 & ") for line in latex.splitlines()) == len(blocks)  # labels in each
    assert latex.count(r"\caption{") == 1 and latex.count(r"\par\medskip") == len(blocks) - 1
    narrow = to_latex(_wide_table(2))
    assert narrow.count(r"\begin{tabular}") == 1 and r"\footnotesize" not in narrow
    assert TEXT_WIDTH == 345.0


needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None and not os.environ.get("CI"),
    reason="pdflatex is missing (CI installs Debian's texlive-latex-base and texlive-latex-recommended)",
)
DOCUMENT = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{%s}\n\\end{document}\n"


@needs_pdflatex
def test_tables_of_eight_methods_fit_the_page(many_store: str, tmp_path: Path) -> None:
    """The noise, significance and attack tables of eight methods compile and overflow no line."""
    report = build_report(many_store, "eight", tmp_path / "report")
    markdown = (report.parent / "tables" / "accuracy_vs_noise.md").read_text()
    assert all(f"| {m} | 3 |" in markdown for m in NAMES[:8])
    for key in ("accuracy_vs_noise", "significance", "accuracy_vs_eps"):
        document = tmp_path / f"doc_{key}.tex"
        document.write_text(DOCUMENT % (report.parent / "tables" / f"{key}.tex").resolve().as_posix())
        result = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{key}:\n{result.stdout[-3000:]}"
        log = (tmp_path / f"doc_{key}.log").read_text(errors="replace")
        assert "Overfull \\hbox" not in log, key
