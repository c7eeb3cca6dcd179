"""Every registry by its entry-point group's last part: what `harness plugins` lists.

The registries live beside the interfaces their entries satisfy (`harness.registry` explains
why); this module gathers them, for listing and for problems reports.
"""

from __future__ import annotations

from typing import Any

from harness.attacks import ATTACKS
from harness.data import DATASETS
from harness.data.augment import AUGMENTATIONS
from harness.methods.base import METHODS
from harness.models import ENCODERS, MODELS
from harness.noise import NOISES
from harness.registry import Registry

REGISTRIES: dict[str, Registry[Any]] = {
    "methods": METHODS,
    "models": MODELS,
    "datasets": DATASETS,
    "noises": NOISES,
    "encoders": ENCODERS,
    "augmentations": AUGMENTATIONS,
    "attacks": ATTACKS,
}
"""Every registry by its group's last part (`snn_kd_harness.<part>`)."""


def plugin_rows() -> tuple[list[tuple[str, str, str, str, str]], list[str]]:
    """(kind, name, distribution, entry point, status) per registered entry, and the one-line
    problem of every broken one."""
    rows, broken = [], []
    for group, registry in REGISTRIES.items():
        problems = registry.problems()
        for name in registry.names():
            for provider in registry.providers(name):
                status = "ok" if name not in problems else "BROKEN"
                rows.append(
                    (group, name, f"{provider.distribution} {provider.version}".strip(), provider.target, status)
                )
        broken += problems.values()
    return rows, broken
