"""Optuna's side of the search: each method's define-by-run space, and the mirror of its study.

`DefineByRun` is the space each method's `OptunaSearch` samples: exactly the method's dims, as
the Optuna distributions the space file's `Distribution.to_optuna` makes (the one conversion),
with no computation inside.

Each method's study is mirrored, trial by trial as they end, into a SQLite Optuna study named
after the method (`<storage>/<sweep>/optuna.db`), which optuna-dashboard and
`optuna.visualization` read. The search itself runs on the in-memory study that Tune saves with
the experiment; the mirror holds each ended search trial once (keyed by its identity), so it
stays whole and without duplicates across `--resume`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from harness.sweep.protocol import EPOCH_KEY, FAILURE_KEY

STUDY_FILE = "optuna.db"  # the mirrored Optuna studies, in the sweep's folder
RUN_ATTR = "harness_run"  # the mirrored trial's identity (its search index)


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Samples `name` from `distribution` through the trial's public `suggest_*` API."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


class DefineByRun:
    """An Optuna define-by-run space sampling exactly `dims` (no computation inside).

    A class rather than a closure: Tune pickles the searcher with the experiment state.
    """

    def __init__(self, dims: Mapping[str, BaseDistribution]) -> None:
        self.dims = dict(dims)

    def __call__(self, trial: optuna.Trial) -> None:
        for key, distribution in self.dims.items():
            suggest(trial, key, distribution)


class StudyMirror:
    """Per method, an Optuna study in SQLite holding each ended search trial once.

    Args:
        storage: `sqlite:///<path>` of the studies.
        dims: per method, its dims as Optuna distributions.
        mode: "max" or "min" (the study's direction), or one per objective of a Pareto search
            (a multi-objective study).
    """

    def __init__(
        self, storage: str, dims: Mapping[str, Mapping[str, BaseDistribution]], mode: str | Sequence[str]
    ) -> None:
        self.storage, self.mode = storage, mode
        self.dims = {method: dict(d) for method, d in dims.items()}

    def record(
        self, method: str, run: str, values: Mapping[str, Any], result: Mapping | None, metric: str | Sequence[str]
    ) -> None:
        """Adds search trial `run` of `method` (COMPLETE, PRUNED or FAIL) unless it is there
        already; `metric` is the result key of the objective, or of each objective."""
        modes = [self.mode] if isinstance(self.mode, str) else list(self.mode)
        keys = [metric] if isinstance(metric, str) else list(metric)
        study = optuna.create_study(
            storage=self.storage,
            study_name=method,
            directions=["maximize" if mode == "max" else "minimize" for mode in modes],
            load_if_exists=True,
        )
        if any(trial.user_attrs.get(RUN_ATTR) == run for trial in study.get_trials(deepcopy=False)):
            return
        result = result or {}
        measured = [result.get(key) for key in keys]
        failed = FAILURE_KEY in result or (measured[0] is None if len(keys) == 1 else not result)
        finite = all(_finite(v) for v in measured)
        if len(keys) == 1 and measured[0] is not None and not _finite(measured[0]):
            failed = True
        state = (
            optuna.trial.TrialState.FAIL
            if failed
            else optuna.trial.TrialState.COMPLETE
            if "test_accuracy" in result and finite
            else optuna.trial.TrialState.PRUNED
        )
        complete = state == optuna.trial.TrialState.COMPLETE
        single = len(keys) == 1 and not failed  # a pruned single-objective trial keeps its last value
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=float(measured[0]) if single else None,
                values=[float(v) for v in measured] if len(keys) > 1 and complete else None,
                params=dict(values),
                distributions=self.dims[method],
                user_attrs={RUN_ATTR: run, "epochs": int(result.get(EPOCH_KEY, 0))},
            )
        )


def _finite(value: Any) -> bool:
    try:
        return float(value) not in (float("inf"), float("-inf")) and float(value) == float(value)
    except (TypeError, ValueError):
        return False
