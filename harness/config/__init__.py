"""The configuration, one module per concept (the data flow: YAML -> validated space -> trial config).

- `base`: `Section`, the frozen, strict base of every section (core, a method's, a family's),
  and the helpers validators share.
- `yaml`: strict YAML (a key given twice is an error) and `--set KEY=VALUE` parsing.
- `dotted`: dotted keys (`kd.alpha`) to nested trees and back.
- `sections`: the core sections and `TrialConfig`, the frozen config of one trial.
- `resolve`: fixed + sampled + `--set` into one validated `TrialConfig`, with where each key
  came from (for one-line errors naming `--set KEY` or `<file>: fixed.KEY`).
- `space`: the search-space file's schema, its distributions (and their Optuna form), and
  `load_space`.

This package re-exports `Section` alone, the base a plugin's own section subclasses
(`from harness.config import Section`): everything else comes from its module, so that a model
family or a dataset can build on `base` without loading the sections that build on them.
"""

from __future__ import annotations

from harness.config.base import Section

__all__ = ["Section"]
