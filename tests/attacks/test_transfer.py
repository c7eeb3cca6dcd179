"""The transfer attack: PGD on the ANN teacher, crafted once and cached, the same images for every method."""

from __future__ import annotations

import pytest
import torch

from harness.attacks import create_attack
from harness.attacks.evaluate import attack_evaluation, attack_target
from harness.attacks.transfer import transfer_key, transfer_path
from harness.files import DamagedState
from harness.teacher import teacher_key_of

OPTIONS = {"eps": [0.2], "steps": 3}


def crafted_images(trained) -> torch.Tensor:
    target, _ = attack_target(trained.method, trained.config, trained.data)
    attack = create_attack("transfer", **OPTIONS)
    batches = list(attack.batches(target, trained.data.test_x, trained.data.test_y, 0.2))
    assert torch.equal(torch.cat([index for index, _ in batches]), torch.arange(len(trained.data.test_x)))
    return torch.cat([images for _, images in batches])


def test_transfer_images_are_crafted_once_and_the_same_for_every_method_and_seed(
    direct_student, converted, trained_with, teacher_cache
) -> None:
    other_seed = trained_with("direct", seed=1, **{"train.epochs": 1})
    assert teacher_key_of(other_seed.config) == teacher_key_of(direct_student.config)  # teacher.seed is fixed
    first = crafted_images(direct_student)  # the first test to ask for these options: crafted here
    assert any(line.startswith("crafting transfer images (eps 0.2)") for line in direct_student.log)
    target, _ = attack_target(converted.method, converted.config, converted.data)
    path = transfer_path(
        target.teacher(), "transfer", create_attack("transfer", **OPTIONS).config, 0.2, target.test_digest
    )
    assert path.exists() and path.parent.parent == teacher_cache / teacher_key_of(direct_student.config)
    written = path.stat().st_mtime_ns
    for trained in (converted, other_seed):
        assert torch.equal(crafted_images(trained), first)
        assert any(f"transfer images (eps 0.2) from cache {path}" in line for line in trained.log)
    assert path.stat().st_mtime_ns == written  # read, not crafted again
    x = direct_student.data.test_x
    assert float((first - x).abs().max()) <= 0.2 + 1e-6 and float(first.min()) >= 0 and float(first.max()) <= 1
    assert not torch.equal(first, x)
    saved = torch.load(path, weights_only=True)  # plain tensors: loading runs nothing
    assert torch.equal(saved["images"], first)


def test_transfer_accuracy_is_each_networks_own_on_the_shared_images(direct_student, converted) -> None:
    results = []
    for trained in (direct_student, converted):
        predictions: dict[str, torch.Tensor] = {}
        config = trained.with_attacks({"transfer": OPTIONS})
        metrics = attack_evaluation(trained.method, trained.data, config, predictions)
        expected = (predictions["attack/transfer/0.2"] == trained.data.test_y).float().mean().item()
        assert metrics["attack/transfer/0.2"] == expected
        results.append(metrics["attack/transfer/0.2"])
    assert all(0 <= r <= 1 for r in results)


def test_the_cache_key_follows_teacher_options_eps_and_test_split() -> None:
    pgd = create_attack("transfer", eps=[0.1], steps=3).config
    base = transfer_key("teacher-a", "transfer", pgd, 0.1, "digest")
    assert base == transfer_key(
        "teacher-a", "transfer", create_attack("transfer", eps=[0.1, 0.3], steps=3).config, 0.1, "digest"
    )
    assert base != transfer_key("teacher-b", "transfer", pgd, 0.1, "digest")
    assert base != transfer_key("teacher-a", "transfer", pgd, 0.2, "digest")
    assert base != transfer_key("teacher-a", "transfer", pgd, 0.1, "other split")
    assert base != transfer_key(
        "teacher-a", "transfer", create_attack("transfer", eps=[0.1], steps=4).config, 0.1, "digest"
    )


def test_a_damaged_cache_file_is_refused_in_one_line(direct_student) -> None:
    trained = direct_student
    target, _ = attack_target(trained.method, trained.config, trained.data)
    attack = create_attack("transfer", eps=[0.05], steps=1)
    path = transfer_path(target.teacher(), "transfer", attack.config, 0.05, target.test_digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a tensor file")
    try:
        with pytest.raises(DamagedState, match="cached transfer images are damaged") as err:
            list(attack.batches(target, trained.data.test_x, trained.data.test_y, 0.05))
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    finally:
        path.unlink()
