"""The built-in spiking transformer family `spikformer`: shapes, arguments, the trials it serves
(KD with response and feature terms, direct training) and the conversion it is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from spikingjelly.activation_based import functional

from harness.api import validate
from harness.cli import main
from harness.config.resolve import trial_config
from harness.config.sections import TrialConfig
from harness.errors import HarnessInputError
from harness.models import create_model, make_lif, relu
from harness.models.spikformer import SpikformerArgs
from harness.trial import train
from tests.conftest import TINY

TINY_SPIKFORMER = {"embed_dim": 8, "heads": 2, "depth": 1, "patch_size": 2}
STUDENT = {"student.arch": "spikformer", **{f"student.{key}": value for key, value in TINY_SPIKFORMER.items()}}


def _config(method: str, **overrides: Any) -> TrialConfig:
    """The conftest's TINY trial (its teacher, so the session's cached one, unless `overrides` name
    another) with a tiny spikformer student."""
    replaced = ("student.", "teacher.") if "teacher.arch" in overrides else ("student.",)
    tiny = {key: value for key, value in TINY.items() if not key.startswith(replaced)}
    return trial_config({**tiny, **STUDENT, "method": method, "train.epochs": 1, **overrides})


def _spikformer(shape: tuple[int, int] = (8, 8), channels: int = 1, activation=None, **args: Any):
    return create_model(
        "spikformer",
        in_channels=channels,
        num_classes=10,
        image_shape=shape,
        activation=activation or make_lif(),
        **{**TINY_SPIKFORMER, **args},
    )


def test_a_tiny_spikformer_gives_per_step_logits_and_token_map_taps() -> None:
    net = _spikformer(depth=2)
    out, features = net(torch.rand(3, 1, 8, 8), 2, return_features=True)
    assert out.shape == (2, 3, 10)
    assert set(features) == {"patch", "block1", "block2", "pool"} == set(net.feature_channels())
    for name in ("patch", "block1", "block2"):
        assert features[name].shape == (2, 3, 8, 4, 4)  # [T, B, D, h, w]: 8x8 pixels in 2x2 patches
    assert features["pool"].shape == (2, 3, 8)
    # With ReLU it is the ANN (T = 1).
    assert _spikformer(activation=relu)(torch.rand(3, 1, 8, 8)).shape == (1, 3, 10)


@pytest.mark.parametrize(
    ("shape", "patch", "tokens"), [((12, 20), 4, (3, 5)), ((6, 10), 2, (3, 5)), ((9, 7), 3, (3, 2))]
)
def test_non_square_images_give_non_square_token_maps(shape, patch: int, tokens) -> None:
    net = _spikformer(shape, channels=3, patch_size=patch)
    out, features = net(torch.rand(2, 3, *shape), 2, return_features=True)
    assert out.shape == (2, 2, 10)
    assert features["block1"].shape == (2, 2, 8, *tokens)


def test_attention_stays_within_a_time_step() -> None:
    """The first step of a run at T = 3 is the run at T = 1: causal in time (one run gives the curve)."""
    torch.manual_seed(0)
    net = _spikformer(depth=2).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        long = net(x, 3)
        functional.reset_net(net)
        short = net(x, 1)
    torch.testing.assert_close(long[:1], short)


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        ({"embed_dim": 10, "heads": 4}, "heads", "embed_dim 10 is not divisible by heads 4"),
        ({"depth": 0}, "depth", "greater than or equal to 1"),
        ({"depth": 13}, "depth", "less than or equal to 12"),
        ({"patch_size": 0}, "patch_size", "greater than or equal to 1"),
        ({"heads": 0}, "heads", "greater than or equal to 1"),
        ({"width": 8}, "width", "unknown key"),
    ],
)
def test_bad_arguments_are_named(args: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(HarnessInputError, match=f"spikformer: {key}: .*{message}"):
        _spikformer(**args)


def test_a_patch_larger_than_the_image_is_refused_naming_the_shape() -> None:
    args = SpikformerArgs(arch="spikformer", **{**TINY_SPIKFORMER, "patch_size": 9})
    with pytest.raises(ValueError, match="patch_size 9 is larger than the 8 x 12 images"):
        args.build(in_channels=1, num_classes=10, image_shape=(8, 12), activation=relu)


@pytest.fixture
def spikformer_space(tmp_path: Path) -> Path:
    """A space file whose students are tiny spikformers on `digits`."""
    fixed = {"dataset.name": "digits", "teacher.arch": "resnet", "teacher.depth": 8, "teacher.width": 8}
    space = {
        "name": "spikformer",
        "methods": ["kd", "direct"],
        "fixed": {**fixed, **STUDENT, "snn.time_steps": 2, "train.epochs": 1},
        "eval": {"reference_time_steps": 2, "time_steps": [1, 2], "noise": {}},
    }
    path = tmp_path / "spikformer.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_the_family_arguments_validate_through_the_config_path(spikformer_space: Path) -> None:
    """`--set student.depth=2` and the others reach the family, as a sweep's values do."""
    overrides = {"student.depth": 2, "student.heads": 4, "student.embed_dim": 16, "student.patch_size": 4}
    plan = validate(spikformer_space, overrides)
    for method in ("kd", "direct"):
        student = plan.of(method).config.student
        assert isinstance(student, SpikformerArgs)
        assert (student.depth, student.heads, student.embed_dim, student.patch_size, student.mlp_ratio) == (
            2,
            4,
            16,
            4,
            2,
        )
    bad = [
        ({"student.heads": 3}, "--set student.heads: embed_dim 8 is not divisible by heads 3"),
        ({"student.depth": 0}, "--set student.depth: Input should be greater than or equal to 1"),
        ({"student.patch_size": "2x2"}, "--set student.patch_size: "),
        ({"student.width": 8}, "--set student.width: unknown key; expected one of: arch, depth, embed_dim, heads"),
    ]
    for override, message in bad:
        with pytest.raises(HarnessInputError, match=message):
            validate(spikformer_space, override)


FEATURE_KD = {"kd.beta": 1.0, "kd.student_layer": "block1", "kd.teacher_layer": "stage2"}
# An ANN spikformer as the teacher (ReLU: its attention products are MACs), feature KD block to block.
SPIKFORMER_TEACHER = {
    "teacher.arch": "spikformer",
    **{f"teacher.{key}": value for key, value in {**TINY_SPIKFORMER, "embed_dim": 16}.items()},
    "teacher.epochs": 1,
    **{**FEATURE_KD, "kd.teacher_layer": "block1"},
}


@pytest.mark.parametrize(
    ("method", "extra"),
    [("kd", {}), ("kd", FEATURE_KD), ("kd", SPIKFORMER_TEACHER), ("direct", {})],
    ids=["kd", "feature-kd", "spikformer-teacher", "direct"],
)
def test_a_tiny_spikformer_student_trains_end_to_end(teacher_cache: Path, method: str, extra: dict[str, Any]) -> None:
    config = _config(method, **extra)
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and {"timestep/1", "timestep/4"} <= set(metrics)
    assert metrics["acs"] > 0 and metrics["macs"] > 0  # the attention products among them
    assert any(key.startswith("firing_rate/body.block1.attention.") for key in metrics)
    if method == "kd":
        assert "teacher_test_accuracy" in metrics and metrics["teacher_macs"] > 0


def _train_steps(checkpoint: bool, steps: int = 2) -> dict[str, Any]:
    torch.manual_seed(0)
    net = _spikformer(depth=2)
    net.checkpoint_activations = checkpoint
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.rand(8, 1, 8, 8, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        logits, features = net(x, 3, return_features=True)
        loss = torch.nn.functional.cross_entropy(logits.mean(0), y) + features["block1"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
        losses.append(loss.detach())
    return {"losses": losses, "state": {k: v.clone() for k, v in net.state_dict().items()}}


def test_recomputing_the_blocks_changes_nothing_but_memory() -> None:
    """`train.checkpoint_activations` recomputes each stage (a block) in the backward pass."""
    plain, recomputed = _train_steps(checkpoint=False), _train_steps(checkpoint=True)
    torch.testing.assert_close(plain["losses"], recomputed["losses"])
    torch.testing.assert_close(plain["state"], recomputed["state"])


def test_conversion_refuses_the_attention_product_naming_the_layer(teacher_cache: Path) -> None:
    with pytest.raises(HarnessInputError, match=r"'body\.block1\.attention\.qk' \(ActivationProduct\) multiplies two"):
        train(_config("conversion"), teacher_cache=teacher_cache, log=lambda _: None)


def test_harness_train_refuses_conversion_in_one_line_with_exit_2(
    spikformer_space: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--space", str(spikformer_space), "--method", "conversion"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'body.block1.attention.qk' (ActivationProduct)" in err
    assert "not linear in their firing rates" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_patch_larger_than_the_dataset_images_is_bad_input(teacher_cache: Path) -> None:
    config = _config("direct", **{"student.patch_size": 9})
    with pytest.raises(HarnessInputError, match="'spikformer'.*cannot take 1 x 8 x 8 .*patch_size 9 is larger"):
        train(config, teacher_cache=teacher_cache, log=lambda _: None)
