"""Name-keyed registries, filled on import (as timm does for models).

Every pluggable piece of the harness (datasets, noise types, models, methods) lives in a
`Registry` keyed by the exact name used in the YAML search space. Adding an entry is the
only step needed to make a new piece selectable; the trial loop never branches on names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.errors import HarnessInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from YAML names to entries (classes, builders or functions).

    Args:
        kind: What the entries are, used in error messages ("dataset", "noise type", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an entry under `name`; a name may be used once."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        """Returns the entry for `name`, or raises a one-line HarnessInputError listing the choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise HarnessInputError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
