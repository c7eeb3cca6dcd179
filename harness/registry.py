"""Name-keyed registries filled from installed entry points: the one way anything is plugged in.

Every pluggable kind has a `Registry` bound to an entry-point group. The built-ins register
through the same groups as a user's package (`pyproject.toml`, `[project.entry-points.*]`), so a
plugin needs no edit of this repository:

| registry   | defined in                 | entry-point group          | an entry is                                  |
|------------|----------------------------|----------------------------|----------------------------------------------|
| `METHODS`  | `harness.methods.base`     | `snn_kd_harness.methods`   | a `harness.methods.Method` subclass          |
| `MODELS`   | `harness.models.args`      | `snn_kd_harness.models`    | a `harness.models.ModelArgs` subclass        |
| `DATASETS` | `harness.data.entry`       | `snn_kd_harness.datasets`  | a `harness.data.DatasetEntry`                |
| `NOISES`   | `harness.noise`            | `snn_kd_harness.noises`    | a function `(image, level, generator)`       |
| `ENCODERS` | `harness.models.encoders`  | `snn_kd_harness.encoders`  | a `harness.models.Encoder` subclass          |
| `AUGMENTATIONS` | `harness.data.augment` | `snn_kd_harness.augmentations` | a function `(images, generator)`     |
| `ATTACKS`  | `harness.attacks`          | `snn_kd_harness.attacks`   | a `harness.attacks.Attack` subclass          |

The entry point's name is the name used in YAML (`methods: [kd]`, `student.arch: resnet`).
`harness.plugins.REGISTRIES` lists all seven (what `harness plugins` prints).

This module is a leaf: it imports nothing of the harness but its errors. Each registry is
made beside the interface its entries satisfy, with that interface's check as a plain function
(`Registry(group, kind, check=check_method)`), so every edge of the import graph is an import
statement. Entries load lazily, one at a time, on first lookup, from the installed
distributions' metadata, so a fresh Ray worker sees every installed plugin.

A broken entry (it does not import, is of the wrong type, or its name is registered by two
distributions) raises `PluginError`, one line naming the entry point and its distribution, when
that name is looked up; every other entry keeps working.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar

from harness.errors import HarnessInputError, PluginError

T = TypeVar("T")

GROUP_PREFIX = "snn_kd_harness."
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Provider:
    """Where one registered name comes from."""

    name: str
    distribution: str
    version: str
    target: str  # `module:attribute`, as the entry point names it

    def describe(self) -> str:
        """`entry point 'kd' (harness.methods.kd:KDMethod) of snn-kd-harness 0.1.0`."""
        return f"entry point {self.name!r} ({self.target}) of {self.distribution} {self.version}".rstrip()


def _provider(entry: EntryPoint) -> Provider:
    dist = entry.dist
    return Provider(
        name=entry.name,
        distribution=dist.name if dist is not None else "an unknown distribution",
        version=dist.version if dist is not None else "",
        target=entry.value,
    )


class Registry(Generic[T]):
    """Entries of one entry-point group, keyed by entry-point name and loaded on first lookup.

    Args:
        group: The entry-point group (`snn_kd_harness.methods`, ...).
        kind: What an entry is, for messages ("method", "model family", ...).
        check: `check(name, entry) -> None`, which raises TypeError or ValueError (one
            sentence) when `entry` does not fit this registry.
    """

    _every: ClassVar[weakref.WeakSet[Registry[Any]]] = weakref.WeakSet()

    def __init__(self, group: str, kind: str, check: Callable[[str, Any], None]) -> None:
        self.group = group
        self.kind = kind
        self._check = check
        self._providers: dict[str, list[EntryPoint]] | None = None
        self._loaded: dict[str, T] = {}
        Registry._every.add(self)

    # -- discovery (metadata only, nothing imported) -------------------------------------------

    def _entry_points(self) -> dict[str, list[EntryPoint]]:
        if self._providers is None:
            found: dict[str, list[EntryPoint]] = {}
            seen: set[tuple[str, str, str]] = set()
            for entry in entry_points(group=self.group):
                # The same distribution can be visible twice on sys.path (an editable install
                # and a build folder, say): one provider, not a conflict.
                dist = entry.dist.name if entry.dist is not None else ""
                if (entry.name, entry.value, dist) in seen:
                    continue
                seen.add((entry.name, entry.value, dist))
                found.setdefault(entry.name, []).append(entry)
            self._providers = found
        return self._providers

    def names(self) -> list[str]:
        """Every registered name, sorted (from metadata: nothing is imported)."""
        return sorted(self._entry_points())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def providers(self, name: str) -> list[Provider]:
        """Who registers `name` (more than one is a conflict that `get` reports)."""
        return [_provider(entry) for entry in self._entry_points().get(name, [])]

    # -- loading -------------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The entry registered as `name`, imported and checked on first use.

        Raises:
            HarnessInputError: no such name (the message lists the registered ones).
            PluginError: the entry does not load, does not fit this registry, or two
                distributions register the name; one line naming them.
        """
        if name in self._loaded:
            return self._loaded[name]
        candidates = self._entry_points().get(name) if isinstance(name, str) else None
        if not candidates:
            raise HarnessInputError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        if len(candidates) > 1:
            first, second = (_provider(entry) for entry in candidates[:2])
            raise PluginError(
                f"{self.kind} {name!r} is registered twice in {self.group}: by {first.describe()} and by "
                f"{second.describe()}; uninstall one of them"
            )
        entry = candidates[0]
        provider = _provider(entry)
        if not NAME_PATTERN.match(name):
            raise PluginError(f"{provider.describe()} in {self.group}: the name must match {NAME_PATTERN.pattern}")
        try:
            value = entry.load()
        except Exception as exc:  # any failure of a third party's import is that plugin's defect
            raise PluginError(
                f"{provider.describe()} in {self.group} does not load: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        try:
            self._check(name, value)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{provider.describe()} in {self.group} is not a valid {self.kind}: {exc}") from None
        self._loaded[name] = value
        return value

    def refresh(self) -> None:
        """Forgets what was discovered and loaded, so that distributions installed (or removed)
        since are seen on the next lookup; a running process otherwise reads the metadata once."""
        self._providers = None
        self._loaded.clear()

    def problems(self) -> dict[str, str]:
        """Every name whose entry fails to load or check, with the one-line reason."""
        broken = {}
        for name in self.names():
            try:
                self.get(name)
            except PluginError as exc:
                broken[name] = str(exc)
        return broken


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def refresh() -> None:
    """`Registry.refresh` of every registry made so far."""
    for registry in list(Registry._every):
        registry.refresh()
