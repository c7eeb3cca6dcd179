"""The report's tables and figures in reading order: the lists `reports.build` renders and `report.md` indexes.

Each table lives in the module of its idea (`reports.tables`: accuracy, time steps, efficiency,
search and the Pareto tables; `reports.corruption`; `reports.attacks`; `reports.significance`),
and those build on `reports.tables`' helpers; this module sits above them all, so no table
module imports another's list.
"""

from __future__ import annotations

from pathlib import Path

from reports.attacks import attack_table
from reports.corruption import corruption_table
from reports.figures import FigureFile, attack_figure, noise_figure, pareto_figure, time_step_figure
from reports.loading import ExperimentRuns
from reports.render import Table
from reports.search_figure import search_figure
from reports.significance import significance_table
from reports.tables import efficiency_table, hypervolume_table, noise_table, pareto_table, search_table, time_step_table


def all_tables(
    exp: ExperimentRuns, reference: str | None = None, corruption_baseline: str | None = None
) -> list[Table]:
    """Accuracy under noise, then (where the runs logged them) the corruption summary and the
    accuracy under attack, the time steps, efficiency, a Pareto sweep's front and hypervolume, the
    search and the significance of every pair (or of `reference` against the rest). A table with
    nothing to show (no noise, no attacks, a single objective) is left out."""
    optional = [corruption_table(exp, corruption_baseline), attack_table(exp)]
    front = [pareto_table(exp), hypervolume_table(exp)]
    return [
        noise_table(exp),
        *(table for table in optional if table is not None),
        time_step_table(exp),
        efficiency_table(exp),
        *(table for table in front if table is not None),
        search_table(exp),
        significance_table(exp, reference),
    ]


def all_figures(exp: ExperimentRuns, folder: Path) -> list[FigureFile]:
    """Draws every figure into `folder`; returns those drawn (a figure without data is skipped)."""
    drawn = [
        noise_figure(exp, folder),
        attack_figure(exp, folder),
        time_step_figure(exp, folder),
        pareto_figure(exp, folder),
        search_figure(exp, folder),
    ]
    return [figure for figure in drawn if figure is not None]
