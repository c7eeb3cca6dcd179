from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.dotted import flatten
from harness.config.resolve import resolve_trial_config, trial_config
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.errors import HarnessInputError

REPO = Path(__file__).resolve().parents[1]


def test_default_space_loads_and_resolves() -> None:
    space = load_space(REPO / "search_spaces" / "kd.yaml")
    config = resolve_trial_config(space, method="direct")
    assert config.method == "direct"
    assert config.dataset.name == "mnist-5k"
    assert config.snn.time_steps == 4
    assert config.eval.time_steps == (1, 2, 4, 8)
    assert dict(config.eval.noise) == {"gaussian": (0.2,), "salt_pepper": (0.05,), "gaussian_blur": (1.0,)}
    assert space.search.final_repeats >= 5  # the report's confidence intervals rest on five seeds


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
        # A key given twice, at any depth: refused with its line, never the last value kept.
        (
            "name: x\nmethods: [kd]\nfixed:\n  train.epochs: 3\n  seed: 1\n  train.epochs: 4\n",
            r": line 6: duplicate key 'train.epochs' in fixed \(first at line 4\)$",
        ),
        ("name: x\nname: y\n", r": line 2: duplicate key 'name' \(first at line 1\)$"),
        (
            "name: x\nsearch: {scheduler: {name: asha, name: none}}\n",
            r"line 2: duplicate key 'name' in search.scheduler",
        ),
        (
            "name: x\neval:\n  noise: {gaussian: [0.1], gaussian: [0.2]}\n",
            r"line 3: duplicate key 'gaussian' in eval.noise",
        ),
        ("name: x\nfixed: {1: a, 1.0: b}\n", r"duplicate key '1.0' in fixed"),  # the same key once read
        ("name: x\nmethods: [kd, direct, kd]\n", r"methods.2: 'kd' is listed twice"),
        ("name: x\nfixed: {method: direct}\n", r"fixed.method: the methods to run are listed under `methods`"),
        ("name: x\nspace: {method: {categorical: [kd]}}\n", r"space.method: the methods to run are listed"),
        # Non-finite numbers, wherever a float can enter.
        ("name: x\nfixed: {train.lr: .inf}\n", r"fixed.train.lr: Input should be a finite number \(got inf\)"),
        ("name: x\nfixed: {train: {lr: .nan}}\n", r"fixed.train.lr: Input should be a finite number \(got nan\)"),
        ("name: x\neval: {noise: {gaussian: [.nan]}}\n", r"eval.noise.gaussian.0: Input should be a finite number"),
        ("name: x\nspace: {kd.alpha: {float: [0.1, .inf]}}\n", r"space.kd.alpha.float.1: .*finite number"),
        ("name: x\nspace: {train.lr: {categorical: [0.1, .inf]}}\n", r"space.train.lr.categorical.1: .*finite"),
        ("name: x\nspace: {kd.student_layer: {categorical: [pool, -.inf]}}\n", r"categorical.1: .*\(got -inf\)"),
        ("name: x\nsearch: {scheduler: {reduction_factor: .inf}}\n", r"search.scheduler.reduction_factor: .*finite"),
        ("name: x\nresources: {cpu: .inf}\n", r"resources.cpu: Input should be a finite number"),
        ("name: x\nresources: {gpu: .nan}\n", r"resources.gpu: Input should be a finite number"),
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


def test_strict_loader_is_a_safe_loader_that_keeps_yaml_semantics() -> None:
    import yaml

    from harness.config.yaml import DuplicateKeyError, StrictSafeLoader, read_yaml

    assert issubclass(StrictSafeLoader, yaml.SafeLoader)
    assert read_yaml("a: 1\nb: [1, 2.5, true, null]\n") == {"a": 1, "b": [1, 2.5, True, None]}
    # A merge brings keys in; an explicit key may override them (YAML's own rule, not a repeat).
    text = "base: &b {lr: 0.1, epochs: 3}\ntrain:\n  <<: *b\n  lr: 0.2\nagain: *b\n"
    assert read_yaml(text)["train"] == {"lr": 0.2, "epochs": 3}
    assert read_yaml("a: {'1': x, 1: y}") == {"a": {"1": "x", 1: "y"}}  # a string and a number differ
    with pytest.raises(DuplicateKeyError) as info:
        read_yaml("space:\n  - {a: 1}\n  - {b: 2, b: 3}\n")  # inside a list too
    assert (info.value.line, info.value.parents, info.value.key) == (3, "space.1", "b")
    with pytest.raises(yaml.YAMLError):  # still safe: no Python objects
        read_yaml("x: !!python/object/apply:os.system ['true']")


def test_resolving_leaves_the_space_file_as_it_was(tiny_space: Path) -> None:
    space = load_space(tiny_space)
    before = space.model_dump()
    resolve_trial_config(space, overrides=[parse_override("eval.noise.poisson=[10]")])
    assert space.model_dump() == before
    assert "poisson" not in resolve_trial_config(space).eval.noise  # the next trial sees the file's noise


INF_PLUGIN = """
from typing import Any

from pydantic import ConfigDict

from harness.config import Section
from harness.methods.student import StudentMethod


class LaxConfig(Section):
    model_config = ConfigDict(allow_inf_nan=True)  # a plugin's own choice; inf still cannot get in

    rate: float = 1.0
    anything: Any = None
    table: dict[str, Any] = {}


class Lax(StudentMethod):
    options = LaxConfig

    def loss(self, images, labels):
        raise NotImplementedError
"""


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
    install_plugin, tiny_space: Path, override: str, expected: str
) -> None:
    install_plugin("lax", {"methods": {"lax": "lax_plugin:Lax"}}, {"lax_plugin.py": INF_PLUGIN})
    space = load_space(tiny_space)
    assert resolve_trial_config(space, method="lax", overrides=[parse_override("lax.rate=3")]).lax.rate == 3
    for method in ("lax", "kd"):  # its own trial, and another method's that checks its section
        with pytest.raises(HarnessInputError, match=expected):
            resolve_trial_config(space, method=method, overrides=[parse_override(override)])


def test_a_plugin_key_in_a_space_file_cannot_be_non_finite(install_plugin, tmp_path: Path) -> None:
    install_plugin("lax", {"methods": {"lax": "lax_plugin:Lax"}}, {"lax_plugin.py": INF_PLUGIN})
    path = tmp_path / "space.yaml"
    for text, expected in [
        ("name: x\nmethods: [lax]\nfixed: {lax.anything: .inf}\n", r"fixed.lax.anything: .*finite number"),
        ("name: x\nmethods: [lax]\nspace: {lax.anything: {categorical: [1, .nan]}}\n", r"categorical.1: .*finite"),
    ]:
        path.write_text(text)
        with pytest.raises(HarnessInputError, match=expected) as info:
            load_space(path)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_key_table_lists_core_family_method_and_space_file_keys(install_plugin) -> None:
    from harness.key_table import key_table

    install_plugin("lax", {"methods": {"lax": "lax_plugin:Lax"}}, {"lax_plugin.py": INF_PLUGIN})
    rows, broken = key_table()
    assert not broken
    table = {(key, owner): (kind, default) for key, kind, default, owner in rows}
    assert table["train.lr", "harness"] == ("float > 0", "0.01")
    assert table["snn.time_steps", "harness"] == ("int [1, 1024]", "4")
    assert table["snn.reset", "harness"] == ("hard|soft", "hard")
    assert table["eval.time_steps", "harness"] == ("list[int [1, 1024]]", "[1, 2, 4, 8]")
    assert table["teacher.epochs", "harness"] == ("int >= 1", "8")
    assert "resnet" in table["student.arch", "harness"][0].split("|")
    # A family's arguments once per family, with that family's (or the role's) defaults.
    assert table["student.depth", "model resnet: snn-kd-harness"] == ("int", "8")
    assert table["teacher.depth", "model resnet: snn-kd-harness"] == ("int", "18")  # the teacher's ResNet-18
    assert table["student.depth", "model vgg: snn-kd-harness"] == ("int", "11")
    assert table["kd.alpha", "method kd: snn-kd-harness"] == ("float [0, 1]", "0.5")
    assert table["conversion.levels", "method conversion: snn-kd-harness"][1] == "8"
    assert table["lax.rate", "method lax: lax"] == ("float", "1.0")  # a plugin's keys, marked as its own
    assert table["search.scheduler.reduction_factor", "space file"] == ("float > 1", "2.0")
    assert table["resources.gpu", "space file"] == ("float >= 0", "0.0")
    assert table["name", "space file"][1] == "(required)"
    keys = [key for key, *_ in rows]
    assert not any(key.startswith(("fixed", "space.", "student.arch.")) for key in keys)
