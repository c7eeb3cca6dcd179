"""Table cells and their Markdown, LaTeX and CSV renderings."""

from __future__ import annotations

import math

import pytest

from reports.render import Column, Stat, Table, latex_escape, significant, to_csv, to_latex, to_markdown


def _table(**overrides: object) -> Table:
    fields: dict = {
        "key": "demo",
        "title": "Demo table",
        "description": "",
        "row_header": "model",
        "columns": (Column("clean", "higher"), Column("energy (µJ)", "lower", significant), Column("note")),
        "rows": (
            ("kd", (Stat(0.95, 0.01, 3), Stat(3.1, 0.2, 3), "ok")),
            ("direct", (Stat(0.93, 0.02, 3), Stat(2.7, 0.1, 2), None)),
        ),
    }
    return Table(**(fields | overrides))


def test_stat_is_mean_and_sample_std() -> None:
    stat = Stat.of([0.9, 0.92, 0.97, float("nan")])
    assert stat is not None and stat.n == 3
    assert stat.mean == pytest.approx(0.93) and stat.std == pytest.approx(0.036055512754639855)
    single = Stat.of([0.5])
    assert single is not None and single.n == 1 and math.isnan(single.std)
    assert Stat.of([]) is None


def test_markdown_bolds_the_best_per_column_and_states_n() -> None:
    lines = to_markdown(_table()).splitlines()
    assert lines[0] == "| model | n | clean | energy (µJ) | note |"
    assert lines[2] == "| kd | 3 | **0.9500 ± 0.0100** | 3.1 ± 0.2 | ok |"
    assert lines[3] == "| direct | 3 | 0.9300 ± 0.0200 | **2.7 ± 0.1 (n=2)** | – |"


def test_single_values_print_without_a_deviation() -> None:
    table = _table(rows=(("kd", (Stat(0.5, math.nan, 1), None, None)),))
    assert "| kd | 1 | **0.5000** | – | – |" in to_markdown(table)


def test_latex_is_booktabs_with_escaped_text() -> None:
    latex = to_latex(_table(title="A_b & c"))
    assert r"\caption{A\_b \& c}" in latex and r"\label{tab:demo}" in latex
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert r"kd & 3 & \textbf{0.9500 $\pm$ 0.0100} & 3.1 $\pm$ 0.2 & ok \\" in latex
    assert r"energy ($\mu$J)" in latex and "direct & 3 & 0.9300" in latex and "& -- \\\\" in latex
    assert latex_escape("50% of #1_{x}") == r"50\% of \#1\_\{x\}"


def test_csv_has_mean_std_and_n_per_statistics_column() -> None:
    lines = to_csv(_table()).splitlines()
    assert lines[0] == "model,clean mean,clean std,clean n,energy (µJ) mean,energy (µJ) std,energy (µJ) n,note"
    assert lines[1] == "kd,0.95,0.01,3,3.1,0.2,3,ok"
    assert lines[2] == "direct,0.93,0.02,3,2.7,0.1,2,"


def test_significant_uses_si_suffixes() -> None:
    assert [significant(v) for v in (0.0353, 193_000.0, 2.5e6, 12.0)] == ["0.0353", "193k", "2.5M", "12"]
