"""Dotted keys (`kd.alpha`) and the nested trees they stand for: the file's, `--set`'s and MLflow's form.

A space file's `fixed:` and `space:`, `--set KEY=VALUE` and MLflow params name values by dotted
keys; a `TrialConfig` is a tree. `flatten` and `unflatten` go between the two. A few keys hold a
mapping as their value (`eval.noise: {gaussian: [0.1]}`) and stay whole (`DICT_LEAVES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.errors import HarnessInputError

DICT_LEAVES = frozenset({"eval.noise"})
"""Keys whose value is a mapping, kept whole by `flatten` (a noise name is not a section)."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; dict-valued leaves such as `eval.noise` stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in DICT_LEAVES:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


class KeyClash(HarnessInputError):
    """A dotted key used both as a value and as a section (`unflatten`)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested dicts; a key that is both a leaf and a section is an error (`KeyClash`)."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise KeyClash(dotted, f"{'.'.join(parents)} is a value, not a section")
        if isinstance(node.get(leaf), dict) and not isinstance(value, Mapping):
            raise KeyClash(dotted, "is a section; set one of its keys instead")
        node[leaf] = value
    return tree
