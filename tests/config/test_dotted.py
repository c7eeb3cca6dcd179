"""Dotted keys and nested trees (`harness.config.dotted`)."""

from __future__ import annotations

import pytest

from harness.config.dotted import KeyClash, flatten, unflatten


def test_flatten_and_unflatten_are_inverse_and_keep_dict_leaves_whole() -> None:
    tree = {"a": {"b": 1, "c": {"d": [2]}}, "eval": {"noise": {"gaussian": [0.1]}, "time_steps": [1]}}
    flat = flatten(tree)
    assert flat == {"a.b": 1, "a.c.d": [2], "eval.noise": {"gaussian": [0.1]}, "eval.time_steps": [1]}
    assert unflatten(flat) == tree


@pytest.mark.parametrize(
    ("flat", "key", "problem"),
    [
        ({"train.epochs": 3, "train.epochs.x": 1}, "train.epochs.x", "train.epochs is a value, not a section"),
        ({"train.epochs": 3, "train": 5}, "train", "is a section; set one of its keys instead"),
    ],
)
def test_a_key_used_as_a_value_and_as_a_section_is_named(flat: dict, key: str, problem: str) -> None:
    with pytest.raises(KeyClash) as info:
        unflatten(flat)
    assert (info.value.key, info.value.problem) == (key, problem)
