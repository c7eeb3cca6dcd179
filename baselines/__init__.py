"""The two standard baselines KD is compared with, behind the same `Method` interface.

`direct` (`baselines.direct`) and `conversion` (`baselines.conversion`) register through the
entry-point group `snn_kd_harness.methods` (pyproject.toml), exactly as a plugin's method does;
this package builds on `harness` and nothing in `harness` imports it.
"""
