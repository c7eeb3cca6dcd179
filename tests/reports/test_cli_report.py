"""`harness report` through the real entry point: its output folder, bad input (exit 2), whole-or-nothing writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import TrackedRun


def test_report_goes_to_runs_experiment_report_by_default(written_store: str, workdir: Path, capsys) -> None:
    assert main(["report", "--experiment", "complete", "--tracking-uri", written_store]) == 0
    report = workdir / "runs" / "complete" / "report" / "report.md"
    assert report.exists()
    assert str(report) in capsys.readouterr().out
    assert "## Missing" not in report.read_text()


def _single_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_an_unknown_experiment_is_bad_input(written_store: str, workdir: Path, capsys) -> None:
    code = main(["report", "--experiment", "nope", "--tracking-uri", written_store, "--out", "out"])
    assert code == 2
    err = _single_error_line(capsys)
    assert "no experiment 'nope'" in err and "partial" in err and "harness sweep --space FILE" in err
    assert list(workdir.iterdir()) == []  # nothing written


def test_a_missing_store_is_bad_input_and_is_not_created(workdir: Path, capsys) -> None:
    assert main(["report", "--experiment", "x", "--tracking-uri", str(workdir / "none.db")]) == 2
    assert "no MLflow store" in _single_error_line(capsys)
    assert list(workdir.iterdir()) == []


def test_an_experiment_without_final_runs_is_bad_input(workdir: Path, capsys) -> None:
    uri = f"sqlite:///{workdir / 'train.db'}"
    run = TrackedRun(uri, "trained", "kd-digits", {"harness.role": "trial", "harness.method": "kd"})
    run.log_metrics({"test_accuracy": 0.9})
    run.finish("FINISHED")
    capsys.readouterr()  # MLflow's own log lines from creating the store
    assert main(["report", "--experiment", "trained", "--tracking-uri", uri, "--out", "out"]) == 2
    err = _single_error_line(capsys)
    assert "no finished final-stage runs (tag harness.role=final" in err and "harness sweep --space FILE" in err
    assert not (workdir / "out").exists()


def test_an_experiment_without_finished_runs_is_bad_input(workdir: Path, capsys) -> None:
    uri = f"sqlite:///{workdir / 'failed.db'}"
    TrackedRun(uri, "broken", "kd-1", {"harness.role": "final", "harness.method": "kd"}).finish("FAILED", "NaN")
    capsys.readouterr()
    assert main(["report", "--experiment", "broken", "--tracking-uri", uri, "--out", "out"]) == 2
    err = _single_error_line(capsys)
    assert "no finished runs (1 runs: 1 FAILED)" in err and "--resume" in err
    assert not (workdir / "out").exists()


def test_a_failed_build_leaves_the_previous_report_whole(
    written_store: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reports.build

    assert main(["report", "--experiment", "partial", "--tracking-uri", written_store, "--out", "report"]) == 0
    before = {p.relative_to(workdir): p.read_bytes() for p in (workdir / "report").rglob("*") if p.is_file()}

    def broken(*_: object) -> list:
        raise RuntimeError("figure failed")

    monkeypatch.setattr(reports.build, "all_figures", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["report", "--experiment", "complete", "--tracking-uri", written_store, "--out", "report"])
    after = {p.relative_to(workdir): p.read_bytes() for p in (workdir / "report").rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in workdir.iterdir()] == ["report"]  # no temporary folder left beside it


def test_a_rebuild_replaces_the_report(written_store: str, workdir: Path) -> None:
    assert main(["report", "--experiment", "partial", "--tracking-uri", written_store, "--out", "report"]) == 0
    (workdir / "report" / "stale.txt").write_text("from before")
    assert main(["report", "--experiment", "complete", "--tracking-uri", written_store, "--out", "report"]) == 0
    assert not (workdir / "report" / "stale.txt").exists()
    assert "# Report: complete" in (workdir / "report" / "report.md").read_text()
    assert [p.name for p in workdir.iterdir()] == ["report"]


NEVER_IMPORTED = ("ray", "torch", "spikingjelly", "optuna", "harness.trial", "harness.methods", "harness.config")

WITHOUT_TRAINING_STACK = """
import sys
from harness.cli import main

code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if any(m == name or m.startswith(name + ".") for name in {names!r}))
print("LOADED", ",".join(loaded))
sys.exit(code)
"""


def test_report_runs_in_a_process_that_never_imports_ray_or_the_training_stack(
    written_store: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    script = WITHOUT_TRAINING_STACK.format(names=NEVER_IMPORTED)
    command = [sys.executable, "-c", script, "report", "--experiment", "complete", "--tracking-uri", written_store]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "runs" / "complete" / "report" / "report.md").exists()
    (loaded,) = [line for line in result.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded == "LOADED ", f"harness report imported: {loaded}"
