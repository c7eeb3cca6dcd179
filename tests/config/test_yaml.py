"""Strict YAML and `--set KEY=VALUE` parsing (`harness.config.yaml`)."""

from __future__ import annotations

import pytest
import yaml

from harness.config.yaml import DuplicateKeyError, StrictSafeLoader, parse_override, read_yaml
from harness.errors import HarnessInputError


def test_set_values_are_read_as_yaml_and_a_bad_value_stays_a_string() -> None:
    assert parse_override("snn.time_steps=4") == ("snn.time_steps", 4)
    assert parse_override("eval.time_steps=[8, 2]") == ("eval.time_steps", [8, 2])
    assert parse_override("eval.noise={gaussian: [0.1]}") == ("eval.noise", {"gaussian": [0.1]})
    assert parse_override("dataset.root=") == ("dataset.root", "")
    assert parse_override("student.arch=[oops") == ("student.arch", "[oops")
    with pytest.raises(HarnessInputError, match=r"^--set eval.noise: duplicate key 'gaussian'$"):
        parse_override("eval.noise={gaussian: [0.1], gaussian: [0.2]}")


def test_override_without_equals_sign() -> None:
    with pytest.raises(HarnessInputError, match="expected key=value"):
        parse_override("snn.time_steps")


def test_strict_loader_is_a_safe_loader_that_keeps_yaml_semantics() -> None:

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
