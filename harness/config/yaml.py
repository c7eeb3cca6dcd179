"""Strict YAML: a safe loader that refuses a key given twice, and `--set KEY=VALUE` parsing.

Every YAML the harness reads (space files, `--set` values) goes through `StrictSafeLoader`: the
safe tags and types of `yaml.SafeLoader`, no Python objects, and a key repeated in one mapping is
an error naming its line, never the last value kept silently.
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.errors import HarnessInputError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping key given twice in one mapping (`StrictSafeLoader`).

    Attributes:
        key: The key, as written.
        parents: The dotted path of the mapping that holds it ("" at the top).
        line: The 1-based line of the second occurrence; `first_line` that of the first.
    """

    def __init__(self, key: Any, parents: str, key_node: yaml.Node, first: yaml.Node) -> None:
        self.key, self.parents = key, parents
        self.line, self.first_line = key_node.start_mark.line + 1, first.start_mark.line + 1
        super().__init__(None, None, self.describe(), key_node.start_mark)

    def describe(self, lines: bool = True) -> str:
        """`duplicate key 'train.epochs' in fixed (first at line 5)`."""
        where = f" in {self.parents}" if self.parents else ""
        first = f" (first at line {self.first_line})" if lines and self.first_line != self.line else ""
        return f"duplicate key {str(self.key)!r}{where}{first}"


class StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (the same safe tags and types) that refuses a key given twice in one
    mapping, at any depth, instead of keeping the last value silently (`DuplicateKeyError`).
    A key that overrides one brought in by a merge (`<<: *defaults`) is fine, as YAML intends."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique_keys(node, (), set())
        return super().construct_document(node)

    def _check_unique_keys(self, node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias: checked where its anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique_keys(item, (*path, str(index)), seen)
        elif isinstance(node, yaml.MappingNode):
            keys: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_unique_keys(value_node, path, seen)
                    continue
                label = "?"  # a sequence or mapping as a key: the constructor refuses it (unhashable)
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node, deep=True)  # typed: `1` and `'1'` differ
                    try:
                        if key in keys:
                            raise DuplicateKeyError(key, ".".join(path), key_node, keys[key])
                        keys[key] = key_node
                    except TypeError:  # unhashable: the constructor says so in its own words
                        pass
                    label = str(key)
                self._check_unique_keys(value_node, (*path, label), seen)


def read_yaml(text: str) -> Any:
    """`text` as YAML, read with `StrictSafeLoader`.

    Raises:
        DuplicateKeyError: a mapping repeats a key.
        yaml.YAMLError: anything else that is not valid YAML.
    """
    return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[str, Any]:
    """Parses one `--set key=value`; the value is read as YAML (`4`, `0.5`, `[1, 2]`, `true`),
    strictly (`StrictSafeLoader`): a mapping that repeats a key is an error naming `--set KEY`.
    A value that is not valid YAML is kept as the string given."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise HarnessInputError(f"--set {text!r}: expected key=value, e.g. --set kd.alpha=0.5")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise HarnessInputError(f"--set {key}: {exc.describe(lines=False)}") from None
    except yaml.YAMLError:
        value = raw
    return key, value
