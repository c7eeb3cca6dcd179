"""Fixed values, sampled values and `--set` into one trial (`harness.config.resolve`): every
defect one line naming where the offending key was given."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.resolve import check_dataset_files, resolve, resolve_trial_config
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.errors import HarnessInputError


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
        ("train.lr=.inf", r"^--set train.lr: Input should be a finite number \(got inf\)$"),
        ("kd.alpha=.nan", r"^--set kd.alpha: Input should be a finite number"),
        ("eval.noise={gaussian: [.nan]}", r"^--set eval.noise: Input should be a finite number"),
        ("eval.noise={gaussian: [0.1], gaussian: [0.2]}", r"^--set eval.noise: duplicate key 'gaussian'$"),
        ("eval.noise={gaussian: {a: 1, a: 2}}", r"^--set eval.noise: duplicate key 'a' in gaussian$"),
        # A key under one the file gives: the flag is named, not the file's `eval.noise`.
        ("eval.noise.gaussian=[-1]", r"^--set eval.noise.gaussian: .*greater than or equal to 0"),
        ("eval.noise.salt_pepper=[1.5]", r"^--set eval.noise.salt_pepper: noise level for 'salt_pepper'"),
        # A family chosen by --set that rejects the file's arguments: the flag, and where they are.
        (
            "student.arch=vgg",
            r"^--set student.arch: vgg depth 8 is not supported.*\(given at .*: fixed.student.depth\)$",
        ),
        ("teacher.arch=vgg", r"^--set teacher.arch: vgg depth 8 is not supported.*fixed.teacher.depth\)$"),
        ("train=5", r"^--set train: is a section; set one of its keys instead$"),
        ("train.epochs.x=5", r"^--set train.epochs.x: train.epochs is a value, not a section$"),
        ("train.lr.x=5", r"^--set train.lr.x: Input should be a valid number"),  # the file has no train.lr
        ("method=direct", r"^--set method: choose the method with --method"),
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


def test_resolving_leaves_the_space_file_as_it_was(tiny_space: Path) -> None:
    space = load_space(tiny_space)
    before = space.model_dump()
    resolve_trial_config(space, overrides=[parse_override("eval.noise.poisson=[10]")])
    assert space.model_dump() == before
    assert "poisson" not in resolve_trial_config(space).eval.noise  # the next trial sees the file's noise


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("lax.rate=.inf", r"^--set lax.rate: Input should be a finite number \(got inf\)$"),
        ("lax.anything=.nan", r"^--set lax.anything: Input should be a finite number"),
        ("lax.anything=[1, .inf]", r"^--set lax.anything: Input should be a finite number"),
        ("lax.table={a: {b: -.inf}}", r"^--set lax.table: Input should be a finite number \(got -inf\)$"),
        ("lax.rate=inf", r"^--set lax.rate: Input should be a finite number"),  # a string pydantic reads as inf
    ],
)
def test_a_plugin_section_cannot_let_a_non_finite_number_in(
    lax_plugin, tiny_space: Path, override: str, expected: str
) -> None:
    lax_plugin()
    space = load_space(tiny_space)
    assert resolve_trial_config(space, method="lax", overrides=[parse_override("lax.rate=3")]).lax.rate == 3
    for method in ("lax", "kd"):  # its own trial, and another method's that checks its section
        with pytest.raises(HarnessInputError, match=expected):
            resolve_trial_config(space, method=method, overrides=[parse_override(override)])


CUSTOM_ERROR_PLUGIN = """
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from harness.config import Section
from harness.methods.student import StudentMethod


class PickyConfig(Section):
    rate: float = 1.0

    @field_validator("rate")
    @classmethod
    def _round(cls, rate):
        if rate != round(rate):
            raise PydanticCustomError("not_whole", "rate {rate} must be a whole number", {"rate": rate})
        return rate


class Picky(StudentMethod):
    options = PickyConfig

    def loss(self, images, labels):
        raise NotImplementedError
"""


def test_a_plugin_sections_own_error_type_keeps_its_words_and_its_place(install_plugin, tiny_space: Path) -> None:
    install_plugin("picky", {"methods": {"picky": "picky_plugin:Picky"}}, {"picky_plugin.py": CUSTOM_ERROR_PLUGIN})
    with pytest.raises(HarnessInputError, match=r"^--set picky.rate: rate 1.5 must be a whole number"):
        resolve_trial_config(load_space(tiny_space), method="picky", overrides=[("picky.rate", 1.5)])


def test_a_missing_dataset_file_names_the_set_key_that_pointed_at_it(tiny_space: Path, tmp_path: Path) -> None:
    space = load_space(tiny_space)
    resolved = resolve(space, overrides=[("dataset.name", "cifar10"), ("dataset.root", str(tmp_path))])
    assert resolved.label("dataset.root") == "--set dataset.root"
    assert resolved.label("train.lr").endswith(": train.lr")  # a default: named in the file's words
    with pytest.raises(HarnessInputError, match=r"^--set dataset.root: dataset 'cifar10'"):
        check_dataset_files(resolved)
    check_dataset_files(resolve(space))  # digits ships with scikit-learn: nothing to miss
