"""Methods keyed by the name used in YAML (`method`, `methods: [...]`).

`kd` lives here; the baselines (`direct`, ...) live in the top-level `baselines` package,
which builds on this interface. This module is the one place that imports it, so the
dependency stays one-way: `baselines` -> `harness`.
"""

from __future__ import annotations

from harness.methods.base import Method, TrialContext
from harness.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str):
    """Class decorator: registers a `Method` subclass under `name` and sets its `name`."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return add


def create_method(name: str, ctx: TrialContext) -> Method:
    """Builds the method registered as `name` for one trial."""
    return METHODS.get(name)(ctx)


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return METHODS.names()


def _fill_registry() -> None:
    import baselines  # noqa: F401  (registers the baselines)
    import harness.methods.kd  # noqa: F401


_fill_registry()

__all__ = ["METHODS", "Method", "TrialContext", "create_method", "list_methods", "register_method"]
