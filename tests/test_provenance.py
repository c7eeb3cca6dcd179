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


def test_in_its_own_checkout_the_source_is_the_commit_and_whether_the_tree_is_dirty(fresh_source) -> None:
    src = fresh_source()
    assert src.version == version("snn-kd-harness")
    if (provenance.ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(provenance.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert src.commit == head.stdout.strip() and src.dirty in (True, False)
        assert src.describe().startswith(f"{src.version} (git {src.commit[:7]}")


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
