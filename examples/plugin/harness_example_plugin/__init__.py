"""An example snn-kd-harness plugin: one method, one dataset, one noise, one model family.

Nothing here is imported by the harness directly: each piece is an entry point in this
distribution's pyproject.toml, which the harness's registries read (in every Ray worker too).
"""
