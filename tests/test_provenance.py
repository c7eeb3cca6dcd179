"""The reproducibility record's pieces: the harness's source, the libraries, the device."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from harness import provenance
from harness.contract import Tag


@pytest.fixture
def fresh_source():
    provenance.source.cache_clear()
    yield provenance.source
    provenance.source.cache_clear()


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_in_its_own_checkout_the_source_is_the_commit_and_whether_the_tree_is_dirty(fresh_source) -> None:
    src = fresh_source()
    assert src.version == version("snn-kd-harness")
    if (provenance.ROOT / ".git").exists():
        assert src.commit == _git(provenance.ROOT, "rev-parse", "HEAD")
        # Dirty: a tracked file differs from the commit (untracked files do not count).
        assert src.dirty == bool(_git(provenance.ROOT, "status", "--porcelain", "--untracked-files=no"))
        assert src.describe() == f"{src.version} (git {src.commit[:7]}{', dirty' if src.dirty else ''})"


def test_a_checkout_is_dirty_when_a_tracked_file_changes_not_when_an_untracked_one_appears(
    fresh_source, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = tmp_path.resolve()
    _git(repo, "init", "-q")
    (repo / "tracked.py").write_text("x = 1\n")
    _git(repo, "add", "tracked.py")
    _git(repo, "commit", "-q", "-m", "first")
    monkeypatch.setattr(provenance, "ROOT", repo)  # the harness as if installed from this checkout
    states = []
    for change in (lambda: None, lambda: (repo / "untracked.py").write_text("y = 2\n"),
                   lambda: (repo / "tracked.py").write_text("x = 2\n")):  # fmt: skip
        change()
        fresh_source.cache_clear()
        src = fresh_source()
        assert src.commit == _git(repo, "rev-parse", "HEAD")
        states.append(src.dirty)
    assert states == [False, False, True]
    assert fresh_source().describe().endswith(f"(git {_git(repo, 'rev-parse', 'HEAD')[:7]}, dirty)")


def test_without_git_or_outside_a_checkout_the_version_alone(fresh_source, monkeypatch, tmp_path: Path) -> None:
    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "run", no_git)
        assert fresh_source().describe() == version("snn-kd-harness")
    fresh_source.cache_clear()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(provenance, "ROOT", tmp_path / "sub")  # inside someone else's checkout
    assert fresh_source().commit is None


def test_the_environment_tags_name_the_libraries_and_the_device() -> None:
    tags = provenance.environment_tags()
    for library in ("torch", "spikingjelly", "ray", "optuna", "mlflow"):
        assert tags[f"{Tag.LIBRARY}{library}"] == version(library)
    assert tags[Tag.VERSION].startswith(version("snn-kd-harness"))
    assert provenance.device_name("cpu") == provenance.cpu_name() and provenance.cpu_name()
