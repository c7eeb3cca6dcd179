"""A trial's own checkpoints: written whole, the newest that loads and belongs to the trial's
config is the one it resumes from."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.sweep.workers import TrialCheckpoints

CONFIG = {"student": {"width": 8}, "train": {"epochs": 3}}


def test_the_newest_checkpoint_resumes_and_only_two_are_kept_until_done(tmp_path: Path) -> None:
    saved = TrialCheckpoints(tmp_path)
    for epoch in (1, 2, 3):
        saved.save({"config": CONFIG, "epoch": epoch, "weight": torch.full((2,), float(epoch))}, epoch, done=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-2.pt", "epoch-3.pt"]
    assert saved.latest(CONFIG)["epoch"] == 3
    saved.save({"config": CONFIG, "epoch": 4}, 4, done=True)
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-4.pt"]


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    saved = TrialCheckpoints(tmp_path)
    saved.save({"config": CONFIG, "epoch": 1}, 1, done=False)
    (tmp_path / "epoch-2.pt").write_bytes(b"cut off mid-write")
    assert saved.latest(CONFIG)["epoch"] == 1


def test_a_checkpoint_of_another_config_is_not_the_trials(tmp_path: Path) -> None:
    """The folder is named by the trial's identity; a checkpoint there written for other values
    (a resumed sweep that retrains another configuration) is never loaded into this one."""
    saved = TrialCheckpoints(tmp_path)
    saved.save({"config": CONFIG, "epoch": 1}, 1, done=False)
    saved.save({"config": {**CONFIG, "student": {"width": 4}}, "epoch": 2}, 2, done=False)
    assert saved.latest(CONFIG)["epoch"] == 1
    assert saved.latest({**CONFIG, "train": {"epochs": 5}}) is None
