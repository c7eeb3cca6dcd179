"""State files written whole or not at all, and refused when they do not read back whole (`harness.files`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.files import DamagedState, read_json, write_json_atomically, write_text_atomically


def test_a_write_that_fails_leaves_the_file_as_it_was_and_no_scratch(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state" / "choices.json"
    write_json_atomically(path, {"kd": {"run": "0", "values": {}}})
    before = path.read_text()

    def killed(scratch: str, target: str) -> None:  # the process dies between the write and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, "{half")
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["choices.json"]  # the scratch file went too


def test_every_state_writer_goes_through_the_atomic_write() -> None:
    """plan.json, choices.json, checkpoints, the cached teacher and its noise accuracies."""
    repo = Path(__file__).resolve().parents[1]
    for module in (
        "harness/sweep/plan.py",
        "harness/sweep/search.py",
        "harness/sweep/workers.py",
        "harness/teacher.py",
    ):
        text = (repo / module).read_text()
        assert "write_atomically" in text or "write_json_atomically" in text, module
        assert ".write_text(" not in text and "os.replace(" not in text, module


@pytest.mark.parametrize("content", [b"", b'{"kd": ', b"\xff\xfe\x00", b"[1, 2"])
def test_a_file_that_is_not_whole_json_is_refused_naming_it_and_the_way_out(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(DamagedState) as info:
        read_json(path, "the plan")
    message = str(info.value)
    assert message.startswith(f"{path}: the plan is damaged (") and "--storage" in message and "\n" not in message


def test_whole_json_reads_back(tmp_path: Path) -> None:
    write_json_atomically(tmp_path / "x.json", {"b": [1, 2.5], "a": None})
    assert read_json(tmp_path / "x.json", "x") == {"a": None, "b": [1, 2.5]}
