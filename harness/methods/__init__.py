"""Methods keyed by the name used in YAML (`method`, `methods: [...]`).

Every method, built-in or a plugin's, registers under the entry-point group
`snn_kd_harness.methods` (`harness.methods.base.METHODS`): `kd` is `harness.methods.kd`, the
baselines (`direct`, `conversion`) live in the top-level `baselines` package. Nothing here
imports them: the dependency is one-way, methods -> `harness.methods.base`.
"""

from __future__ import annotations

from harness.context import TrialContext, network_for
from harness.methods.base import METHODS, Method, create_method, list_methods, logged_params, read_sections

__all__ = [
    "METHODS",
    "Method",
    "TrialContext",
    "create_method",
    "list_methods",
    "logged_params",
    "network_for",
    "read_sections",
]
