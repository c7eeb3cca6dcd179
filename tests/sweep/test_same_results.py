"""The built-ins behave as before the plugin structure: the smoke sweep's trial results on fixed seeds.

`smoke_sweep_before.json` holds every run of `harness sweep --space search_spaces/smoke.yaml` as
commit 19e002a logged it (before methods, models, datasets and noises came from entry points).
On the machine that recorded it the session's smoke sweep reproduces it bit for bit; the
tolerances below only absorb float kernels that differ between processors, far below what a
changed initialisation, data order, normalisation or loss would move.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.contract import Tag

BEFORE = json.loads((Path(__file__).with_name("smoke_sweep_before.json")).read_text())["runs"]


def _identity(role: str, params: dict[str, str]) -> tuple:
    return role, tuple(sorted(params.items()))


@pytest.mark.slow
def test_the_smoke_sweep_gives_the_results_it_gave_before(smoke_sweep) -> None:
    _, options, _ = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name(options.experiment)
    now = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        role = run.data.tags[Tag.ROLE]
        if role == "sweep":
            continue
        keys = next(r["params"] for r in BEFORE if r["params"]["method"] == run.data.params["method"]).keys()
        now[_identity(role, {key: run.data.params[key] for key in keys})] = run
    assert len(now) == len(BEFORE)
    for before in BEFORE:
        run = now[_identity(before["role"], before["params"])]  # the same configurations were searched and retrained
        assert run.info.status == before["status"]
        for metric in ("val_accuracy", "train_loss"):
            history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
            values = [m.value for m in history]
            assert len(values) == len(before[metric])  # pruned at the same epoch
            assert values == pytest.approx(before[metric], rel=1e-2, abs=2e-2), (before["params"], metric)
        for metric, value in before["final"].items():
            assert run.data.metrics[metric] == pytest.approx(value, rel=1e-2, abs=2e-2), (before["params"], metric)
