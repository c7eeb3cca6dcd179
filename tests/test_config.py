from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import flatten, load_space, parse_override, resolve_trial_config, trial_config
from harness.errors import HarnessInputError

REPO = Path(__file__).resolve().parents[1]


def test_default_space_loads_and_resolves() -> None:
    space = load_space(REPO / "search_spaces" / "kd.yaml")
    config = resolve_trial_config(space, method="direct")
    assert config.method == "direct"
    assert config.dataset.name == "mnist-5k"
    assert config.snn.time_steps == 4
    assert config.eval.time_steps == (1, 2, 4, 8)
    assert config.eval.noise["gaussian"] == (0.1, 0.2)


def test_overrides_win_and_values_are_read_as_yaml(tiny_space: Path) -> None:
    space = load_space(tiny_space)
    overrides = [
        parse_override("snn.time_steps=6"),
        parse_override("eval.time_steps=[8, 2]"),
        parse_override("kd.alpha=0.25"),
    ]
    config = resolve_trial_config(space, method="kd", overrides=overrides)
    assert config.snn.time_steps == 6
    assert config.eval.time_steps == (2, 8)
    assert config.kd.alpha == 0.25


def test_config_is_frozen(make_config) -> None:
    config = make_config()
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3  # type: ignore[misc]


def test_flat_round_trip(make_config) -> None:
    config = make_config()
    flat = config.flat()
    assert flat["kd.temperature"] == 4.0
    assert flat["eval.noise"] == {"gaussian": [0.1], "salt_pepper": [0.05]}
    assert trial_config(flat) == config
    assert flatten({"a": {"b": 1}}) == {"a.b": 1}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("snn.time_step=4", r"--set snn.time_step: unknown key"),
        ("bogus=1", r"--set bogus: unknown key"),
        ("snn.time_steps=four", r"--set snn.time_steps: .*integer"),
        ("snn.time_steps=0", r"--set snn.time_steps: .*greater than or equal to 1"),
        ("kd.alpha=1.5", r"--set kd.alpha: .*less than or equal to 1"),
        ("dataset.name=imagenet", r"--set dataset.name: unknown dataset 'imagenet'; expected one of: .*digits"),
        ("student.depth=9", r"--set student.depth: resnet depth 9 is not supported"),
        ("eval.noise={fog: [0.1]}", r"--set eval.noise: unknown noise type 'fog'"),
        ("eval.noise={salt_pepper: [1.5]}", r"--set eval.noise: .*salt_pepper"),
        ("snn.reset=sometimes", r"--set snn.reset: .*'hard' or 'soft'"),
    ],
)
def test_bad_overrides_name_the_key(tiny_space: Path, override: str, expected: str) -> None:
    space = load_space(tiny_space)
    with pytest.raises(HarnessInputError, match=expected) as info:
        resolve_trial_config(space, overrides=[parse_override(override)], source=str(tiny_space))
    assert "\n" not in str(info.value)


def test_unknown_method_names_the_flag(tiny_space: Path) -> None:
    with pytest.raises(HarnessInputError, match=r"--method: unknown method 'distill'; expected one of: .*direct.*kd"):
        resolve_trial_config(load_space(tiny_space), method="distill")


def test_override_without_equals_sign() -> None:
    with pytest.raises(HarnessInputError, match="expected key=value"):
        parse_override("snn.time_steps")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nmethods: [kd]\nfixed: {train.epochs: [oops}\n", r"not valid YAML at line 3"),
        ("- a\n- b\n", r"expected a mapping"),
        ("name: x\nmethods: [kd]\nextra: 1\n", r"extra: unknown key"),
        ("methods: [kd]\n", r"name: Field required"),
        ("name: x\nmethods: [kd, magic]\n", r"methods.*unknown method 'magic'"),
        ("name: x\nmethods: [kd]\nfixed: {train.epochs: -1}\n", r"fixed.train.epochs: .*greater than or equal to 1"),
        (
            "name: x\nmethods: [kd]\nfixed: {teacher.arch: transformer}\n",
            r"fixed.teacher.arch: unknown model family 'transformer'",
        ),
    ],
)
def test_bad_space_files_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(HarnessInputError, match=expected) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_space_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessInputError, match="cannot read the space file"):
        load_space(tmp_path / "missing.yaml")
