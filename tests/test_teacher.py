from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.data import load_dataset
from harness.errors import HarnessInputError
from harness.methods import TrialContext
from harness.teacher import load_or_train_teacher, teacher_key


def _context(config, cache: Path) -> TrialContext:
    data = load_dataset(config.dataset.name)
    return TrialContext(config, data, torch.device("cpu"), cache, lambda _: None)


def test_second_trial_with_the_same_teacher_trains_no_teacher(make_config, tmp_path: Path) -> None:
    first = load_or_train_teacher(_context(make_config("kd", **{"teacher.epochs": 1}), tmp_path))
    assert first.trained_now
    stamp = first.path.stat().st_mtime_ns
    # Another trial: other student, KD weight and method settings, same teacher.
    second_config = make_config(
        "kd", **{"teacher.epochs": 1, "student.depth": 14, "kd.alpha": 0.9, "snn.time_steps": 3}
    )
    second = load_or_train_teacher(_context(second_config, tmp_path))
    assert not second.trained_now
    assert second.key == first.key
    assert second.path.stat().st_mtime_ns == stamp
    assert second.metrics == first.metrics
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_key_depends_on_what_determines_the_weights(make_config, tmp_path: Path) -> None:
    base = teacher_key(_context(make_config(), tmp_path))
    assert teacher_key(_context(make_config("direct", **{"kd.alpha": 0.1, "student.depth": 14}), tmp_path)) == base
    for change in ({"seed": 1}, {"teacher.depth": 14}, {"teacher.lr": 0.01}, {"dataset.split_seed": 3}):
        assert teacher_key(_context(make_config(**change), tmp_path)) != base, change


def test_a_fixed_teacher_seed_shares_one_teacher_across_trial_seeds(make_config, tmp_path: Path) -> None:
    def key(**overrides) -> str:
        return teacher_key(_context(make_config(**overrides), tmp_path))

    assert key(**{"seed": 0, "teacher.seed": 0}) == key(**{"seed": 5, "teacher.seed": 0}) == key(seed=0)
    assert key(**{"seed": 5, "teacher.seed": 1}) == key(seed=1) != key(seed=5)


def test_the_teachers_noise_accuracy_is_computed_once_per_noise_and_cached(make_config, tmp_path: Path) -> None:
    """`teacher_noise/<type>/<level>` is the teacher's accuracy (T = 1) on the corrupted test set;
    it is kept in noise_accuracy.json and read back from there, only new levels are computed."""
    import json

    from harness.noise import apply_noise
    from harness.teacher import NOISE_FILE, teacher_noise_accuracies
    from harness.training import accuracy

    config = make_config("kd", **{"teacher.epochs": 1, "eval.noise": {"gaussian": [0.1, 1.0]}})
    ctx = _context(config, tmp_path)
    record = load_or_train_teacher(ctx)
    first = teacher_noise_accuracies(record, ctx)
    data = ctx.data

    def independent(kind: str, level: float) -> float:
        corrupted = apply_noise(data.test_x, kind, level)
        return accuracy(record.model, corrupted, data.test_y, time_steps=1, batch_size=config.train.eval_batch_size)

    assert first == {
        "teacher_noise/gaussian/0.1": independent("gaussian", 0.1),
        "teacher_noise/gaussian/1": independent("gaussian", 1.0),
    }
    clean = accuracy(record.model, data.test_x, data.test_y, time_steps=1, batch_size=config.train.eval_batch_size)
    assert first["teacher_noise/gaussian/1"] < clean  # measured on corrupted images, not the clean ones
    cache = record.path.parent / NOISE_FILE
    assert json.loads(cache.read_text()) == {"gaussian/0.1": first["teacher_noise/gaussian/0.1"],
                                             "gaussian/1": first["teacher_noise/gaussian/1"]}  # fmt: skip
    cache.write_text(json.dumps({"gaussian/0.1": 0.123}))  # a marker: the next call must read it, not recompute
    more = make_config("kd", **{"teacher.epochs": 1, "eval.noise": {"gaussian": [0.1], "salt_pepper": [0.05]}})
    second = teacher_noise_accuracies(record, _context(more, tmp_path))
    assert second == {
        "teacher_noise/gaussian/0.1": 0.123,  # from the file
        "teacher_noise/salt_pepper/0.05": independent("salt_pepper", 0.05),  # the new level, computed
    }
    assert json.loads(cache.read_text()) == {
        "gaussian/0.1": 0.123,
        "salt_pepper/0.05": independent("salt_pepper", 0.05),
    }


# --- pre-trained teachers (teacher.checkpoint) -------------------------------------------------


def _trained_teacher_file(make_config, folder: Path) -> tuple[Path, dict[str, float]]:
    """A tiny teacher trained by the harness, saved as a plain state dict (what a user brings)."""
    record = load_or_train_teacher(_context(make_config("kd", **{"teacher.epochs": 2}), folder / "cache"))
    path = folder / "my_teacher.pt"
    torch.save(record.model.state_dict(), path)
    return path, record.metrics


def test_a_checkpoint_teacher_with_zero_epochs_is_used_as_it_is_and_cached_by_its_hash(make_config, tmp_path) -> None:
    path, trained = _trained_teacher_file(make_config, tmp_path)
    config = make_config("kd", **{"teacher.checkpoint": str(path), "teacher.epochs": 0})
    lines: list[str] = []
    ctx = TrialContext(config, load_dataset("digits"), torch.device("cpu"), tmp_path / "other", lines.append)
    record = load_or_train_teacher(ctx)
    assert record.metrics["teacher_test_accuracy"] == trained["teacher_test_accuracy"]  # the same weights
    assert not any(line.startswith("teacher epoch") for line in lines)  # nothing trained
    assert any(f"teacher weights from {path}" in line for line in lines)
    again = load_or_train_teacher(ctx)
    assert not again.trained_now  # measured once, then cached
    with path.open("ab") as file:  # another file content: another teacher
        file.write(b"\0")
    assert teacher_key(ctx) != record.key


class _SideEffect:
    """Unpickling this would create a file: `torch.load(weights_only=True)` must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_that_needs_unpickling_is_refused_and_runs_nothing(make_config, tmp_path, capsys) -> None:
    from harness.cli import main

    marker = tmp_path / "side_effect_happened"
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "payload": _SideEffect(str(marker))}, path)
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    code = main(["validate", str(space), "--set", f"teacher.checkpoint={path}"])
    err = capsys.readouterr().err
    assert code == 2 and "--set teacher.checkpoint: teacher.checkpoint" in err and "not a plain state dict" in err
    assert len(err.strip().splitlines()) == 1 and not marker.exists()


def test_checkpoint_refusals_name_the_key_and_the_first_difference(make_config, tmp_path, capsys) -> None:
    from harness.cli import main

    space = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    path, _ = _trained_teacher_file(make_config, tmp_path)
    state = torch.load(path, weights_only=True)

    def refusal(*sets: str) -> str:
        assert main(["validate", str(space), *(a for s in sets for a in ("--set", s))]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if k != "classifier.weight"}, missing)
    assert "lacks 'classifier.weight' (resnet depth=8 width=8)" in refusal(f"teacher.checkpoint={missing}")
    tensors = tmp_path / "tensors.pt"
    torch.save([torch.zeros(2)], tensors)
    assert "not a state dict" in refusal(f"teacher.checkpoint={tensors}")
    assert "teacher.checkpoint: no such file" in refusal(f"teacher.checkpoint={tmp_path / 'nowhere.pt'}")
    assert "set teacher.checkpoint" in refusal("teacher.epochs=0")
    # Keys agree but a shape does not: named when the trial builds the network on the data.
    wide = tmp_path / "wide.pt"
    torch.save({k: torch.cat([v, v]) if k == "classifier.weight" else v for k, v in state.items()}, wide)
    config = make_config("kd", **{"teacher.checkpoint": str(wide), "teacher.epochs": 0})
    ctx = TrialContext(config, load_dataset("digits"), torch.device("cpu"), tmp_path / "cache2", lambda _: None)
    with pytest.raises(HarnessInputError, match=r"has 'classifier.weight' of shape \[20, 32\], the network \[10, 32\]"):
        load_or_train_teacher(ctx)
