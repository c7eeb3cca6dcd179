"""`build_report`: an experiment's MLflow runs -> tables (md/tex/csv), figures (png/pdf) and `report.md`.

Nothing is half-written: the report is built in a temporary folder beside the target and
renamed into place at the end, replacing an earlier report of the same folder.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from harness.errors import HarnessInputError
from reports.contents import all_figures, all_tables
from reports.corruption import check_corruption_baseline
from reports.index import index_markdown
from reports.loading import load_experiment
from reports.render import to_csv, to_latex, to_markdown

REPORT_FILE = "report.md"


def default_report_dir(experiment: str, storage: Path = Path("runs")) -> Path:
    """`<storage>/<experiment>/report`: where `harness report` and `harness sweep` put a report."""
    return storage / experiment / "report"


def build_report(
    tracking_uri: str | None,
    experiment: str,
    out_dir: Path,
    reference: str | None = None,
    *,
    corruption_baseline: str | None = None,
) -> Path:
    """Builds the report of `experiment` into `out_dir`.

    Args:
        tracking_uri: the MLflow store (None: `sqlite:///<cwd>/mlflow.db`).
        experiment: the MLflow experiment name.
        out_dir: the report folder; replaced as a whole when it exists.
        reference: the method the significance table compares with every other (default: every
            pair of methods).
        corruption_baseline: the method the corruption summary's mCE is relative to (default: the
            sweep's first method that needs no teacher and trains at a T; `reports.corruption`).

    Returns:
        The path of `report.md` inside `out_dir`.

    Raises:
        HarnessInputError: the store, the experiment or its final-stage runs are missing
            (checked before anything is written).
    """
    exp = load_experiment(tracking_uri, experiment)
    if reference is not None and reference not in exp.methods:
        raise HarnessInputError(
            f"--reference: no method {reference!r} in experiment {experiment!r} (it has: {', '.join(exp.methods)})"
        )
    check_corruption_baseline(exp, corruption_baseline)
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        tables = all_tables(exp, reference, corruption_baseline)
        (staging / "tables").mkdir()
        for table in tables:
            for suffix, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
                (staging / "tables" / f"{table.key}.{suffix}").write_text(render(table), encoding="utf-8")
        figures = all_figures(exp, staging / "figures")
        (staging / REPORT_FILE).write_text(index_markdown(exp, tables, figures, reference), encoding="utf-8")
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / REPORT_FILE


def _replace(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`, moving an existing `target` aside first and removing it after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    staging.chmod(0o755)  # mkdtemp makes it private; a report folder is read like any other
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
