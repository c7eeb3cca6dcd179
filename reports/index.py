"""`report.md`: every table and figure of a report in reading order, each with what it measured."""

from __future__ import annotations

from datetime import UTC, datetime

from reports import front as pareto
from reports.figures import FigureFile
from reports.loading import ExperimentRuns
from reports.render import Table, to_markdown
from reports.summary import summary_lines

# Reading order: each figure follows the table it draws.
FIGURE_AFTER_TABLE = {
    "accuracy_vs_noise": "accuracy_vs_noise",
    "accuracy_vs_eps": "accuracy_vs_eps",  # reports.attacks
    "accuracy_vs_time_steps": "accuracy_vs_time_steps",
    "pareto_front": "pareto",
    "search": "search_summary",
}


def _header(exp: ExperimentRuns) -> list[str]:
    settings = exp.settings
    noise = "; ".join(
        f"{kind} {', '.join(f'{level:g}' for level in levels)}" for kind, levels in settings.noise.items()
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Report: {exp.name}",
        "",
        f"Dataset `{settings.dataset}`; reference T = {settings.reference_time_steps}; "
        f"T values {', '.join(map(str, settings.time_steps))}; final-stage seeds {', '.join(map(str, exp.seeds()))}; "
        f"noise {noise or 'none'}. Methods: {', '.join(exp.methods)}. Accuracies are fractions in [0, 1]; "
        "cells are mean ± standard deviation over the seeds (n per row; a single value where n = 1).",
        "",
        f"Source: MLflow experiment `{exp.name}` at `{exp.tracking_uri}` "
        f"({len(exp.finals)} finished final runs, {len(exp.trials)} search trials); generated {generated} "
        "by `harness report`.",
        "",
    ]


def _missing(gaps: list[str]) -> list[str]:
    if not gaps:
        return []
    return (
        ["## Missing", "", "This experiment is partial; the tables show what exists.", ""]
        + [f"- {gap}" for gap in gaps]
        + [""]
    )


def _table_section(number: int, table: Table, intro: str | None = None) -> list[str]:
    files = " · ".join(f"[{label}](tables/{table.key}.{suffix})" for label, suffix in _TABLE_FILES)
    return [
        f"## {number}. {table.title}",
        "",
        *([intro, ""] if intro else []),
        table.description,
        "",
        to_markdown(table),
        f"Files: {files}",
        "",
    ]


def pareto_intro(exp: ExperimentRuns) -> str | None:
    """The paragraph that opens a Pareto sweep's front section: what the search measured, what this
    report measures, the hypervolume's reference point; None for a single-objective sweep."""
    found = pareto.pareto_front(exp)
    if found is None:
        return None
    searched = ", ".join(f"`{name}` ({direction})" for name, direction in found.searched.items())
    measured = ", ".join(pareto.label(key) for key in found.objectives)
    return (
        f"**The Pareto search.** This sweep searched several objectives at once ({searched}; the first is the "
        "primary) and kept each method's non-dominated trials. The search measured them on the validation split "
        "(accuracy, and efficiency figures counted on it after the last epoch), so no test data steered it; the "
        "final stage retrained each method's reference configuration over every final seed and up to "
        "`search.final_front - 1` other front points over the first `search.front_repeats` seeds. The table, "
        f"the figure and the hypervolumes below measure every retrained configuration on the test set instead "
        f"({measured}), so a point the search found non-dominated may be dominated here. Hypervolumes are against "
        f"one reference point for all methods: {found.reference_text()}."
    )


_TABLE_FILES = (("Markdown", "md"), ("LaTeX", "tex"), ("CSV", "csv"))


def _figure_section(figure: FigureFile) -> list[str]:
    return [
        f"![{figure.title}](figures/{figure.key}.png)",
        "",
        f"*{figure.title}.* {figure.caption} [PDF](figures/{figure.key}.pdf)",
        "",
    ]


def _summary(exp: ExperimentRuns, reference: str | None) -> list[str]:
    front = (
        "the front lines compare every method's retrained configurations by their test-set means (table "
        "`pareto`): a method dominates a range of the second objective where its configuration is the most "
        "accurate one within that budget; the hypervolume is over the test-set objectives (table `hypervolume`); "
        if exp.objectives
        else ""
    )
    return [
        "## Summary",
        "",
        *(f"- {line}" for line in summary_lines(exp, reference)),
        "",
        f"*Rules: {front}accuracy is clean test accuracy at the reference T; robustness is the mean accuracy over "
        "every noise column; a difference is significant when its Holm-corrected p-value over the significance "
        "table is below 0.05, never with one seed or zero spread across seeds (table `significance`: intervals "
        "over seeds and test images). ± is the interval's half-width, in accuracy points.*",
        "",
    ]


def index_markdown(
    exp: ExperimentRuns, tables: list[Table], figures: list[FigureFile], reference: str | None = None
) -> str:
    """The text of `report.md`: the title, the three-line summary, what is missing, the settings,
    then tables with their figures in reading order."""
    by_table = {FIGURE_AFTER_TABLE[f.key]: f for f in figures}
    header = _header(exp)
    lines = header[:2] + _summary(exp, reference) + header[2:] + _missing(exp.gaps())
    for number, table in enumerate(tables, start=1):
        lines += _table_section(number, table, pareto_intro(exp) if table.key == "pareto" else None)
        if table.key in by_table:
            lines += _figure_section(by_table[table.key])
    return "\n".join(lines).rstrip() + "\n"
