"""The search-space file (`harness.config.space`): its schema, its distributions, `load_space`."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from harness.config.resolve import resolve_trial_config
from harness.config.space import Distribution, load_space
from harness.errors import HarnessInputError

REPO = Path(__file__).resolve().parents[2]


def test_default_space_loads_and_resolves() -> None:
    space = load_space(REPO / "search_spaces" / "kd.yaml")
    config = resolve_trial_config(space, method="direct")
    assert config.method == "direct"
    assert config.dataset.name == "mnist-5k"
    assert config.snn.time_steps == 4
    assert config.eval.time_steps == (1, 2, 4, 8)
    assert dict(config.eval.noise) == {"gaussian": (0.2,), "salt_pepper": (0.05,), "gaussian_blur": (1.0,)}
    assert space.search.final_repeats >= 5  # the report's confidence intervals rest on five seeds


def test_the_default_space_searches_the_missions_dims_as_an_accuracy_energy_front() -> None:
    space = load_space(REPO / "search_spaces" / "kd.yaml")
    assert {"student.depth", "snn.time_steps", "kd.alpha", "kd.temperature", "train.lr"} <= set(space.space)
    assert space.search.objectives == {"val_accuracy": "max", "energy_uj": "min"}
    assert space.search.num_samples >= 8


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ({"categorical": [4, 8]}, optuna.distributions.CategoricalDistribution([4, 8])),
        ({"int": [1, 8], "log": True}, optuna.distributions.IntDistribution(1, 8, log=True)),
        ({"int": [2, 8], "step": 2}, optuna.distributions.IntDistribution(2, 8, step=2)),
        ({"float": [0.1, 0.9]}, optuna.distributions.FloatDistribution(0.1, 0.9)),
        ({"float": [1.0, 8.0], "log": True}, optuna.distributions.FloatDistribution(1.0, 8.0, log=True)),
        ({"float": [0.0, 1.0], "step": 0.25}, optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25)),
    ],
)
def test_each_dimension_has_one_optuna_form_and_keeps_its_written_form(written: dict, expected) -> None:
    dist = Distribution.model_validate(written)
    assert dist.to_optuna() == expected
    assert json.loads(json.dumps(dist.as_dict())) == written  # the form plan.json records


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


def test_a_plugin_key_in_a_space_file_cannot_be_non_finite(lax_plugin, tmp_path: Path) -> None:
    lax_plugin()
    path = tmp_path / "space.yaml"
    for text, expected in [
        ("name: x\nmethods: [lax]\nfixed: {lax.anything: .inf}\n", r"fixed.lax.anything: .*finite number"),
        ("name: x\nmethods: [lax]\nspace: {lax.anything: {categorical: [1, .nan]}}\n", r"categorical.1: .*finite"),
    ]:
        path.write_text(text)
        with pytest.raises(HarnessInputError, match=expected) as info:
            load_space(path)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_the_architecture_documents_example_space_file_loads(tmp_path: Path) -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    example = text.split("## The search-space file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    space = load_space(path)
    assert space.methods == ("kd", "direct", "conversion") and set(space.space) == {"train.lr", "kd.temperature"}
