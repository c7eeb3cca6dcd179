from __future__ import annotations

from pathlib import Path

import torch

from harness.data import load_dataset
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
