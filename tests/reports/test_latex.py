"""Every LaTeX table compiles with pdflatex in a minimal booktabs document."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.build import build_report

DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\begin{document}
\input{%s}
\end{document}
"""

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None and not os.environ.get("CI"),
    reason="pdflatex is missing (CI installs Debian's texlive-latex-base and texlive-latex-recommended)",
)


def _compile_all(tables: Path, workdir: Path) -> None:
    sources = sorted(tables.glob("*.tex"))
    assert len(sources) == 6  # the five, and the corruption summary (both stores log noise)
    for source in sources:
        document = workdir / f"doc_{source.stem}.tex"
        document.write_text(DOCUMENT % source.resolve().as_posix())
        result = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{source.name}:\n{result.stdout[-3000:]}"
        assert (workdir / f"doc_{source.stem}.pdf").stat().st_size > 1000


@needs_pdflatex
def test_tables_of_a_three_seed_experiment_compile(written_store: str, tmp_path: Path) -> None:
    report = build_report(written_store, "complete", tmp_path / "report")
    _compile_all(report.parent / "tables", tmp_path)


@needs_pdflatex
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tables_of_the_smoke_sweep_compile(smoke_report: Path, tmp_path: Path) -> None:
    _compile_all(smoke_report.parent / "tables", tmp_path)
