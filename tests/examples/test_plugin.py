"""The example plugin (examples/plugin), installed as a user installs it, in a real local-Ray sweep.

The package is built and installed with pip into a folder that only the subprocesses see
(`PYTHONPATH`), so the harness and every Ray worker it starts find the method, dataset, noise and
model family through their entry points, exactly as after `pip install -e examples/plugin`.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.contract import Capabilities, Role, Tag

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "examples" / "plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin built and installed by pip (from a copy: the build leaves files behind)."""
    folder = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(PLUGIN, folder / "source", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    site = folder / "site-packages"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
               "--target", str(site), str(source)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def test_harness_plugins_lists_the_four_pieces_with_their_distribution(
    plugin_site: Path, run_harness, plugin_env, tmp_path: Path
) -> None:
    result = run_harness("plugins", cwd=tmp_path, env=plugin_env(plugin_site))
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:3]) for line in result.stdout.splitlines()}
    for kind, name in (("methods", "dkd"), ("datasets", "shapes"), ("noises", "row_dropout"), ("models", "mlp")):
        assert (kind, name, "harness-example-plugin") in rows


@pytest.mark.parametrize("method", ["direct", "conversion"])
def test_the_plugin_family_trains_on_non_square_images(
    plugin_site: Path, run_harness, plugin_env, tmp_path: Path, mlflow_runs, method: str
) -> None:
    sets = ["dataset.image_size=[12, 20]", "train.epochs=1", "eval.noise={}"]
    args = ["train", "--space", str(PLUGIN / "smoke.yaml"), "--method", method]
    result = run_harness(*args, *(a for s in sets for a in ("--set", s)), cwd=tmp_path, env=plugin_env(plugin_site))
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = mlflow_runs(str(tmp_path / "mlflow.db"), "plugin-smoke")
    assert run.data.params["student.arch"] == "mlp" and run.data.params["dataset.image_size"] == "[12, 20]"
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_plugin_smoke_sweep_runs_on_local_ray_with_one_run_per_trial(
    plugin_site: Path, run_harness, plugin_env, tmp_path: Path, mlflow_runs
) -> None:
    result = run_harness("sweep", "--space", str(PLUGIN / "smoke.yaml"), cwd=tmp_path, env=plugin_env(plugin_site))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(str(tmp_path / "mlflow.db"), "plugin-smoke")
    trial_ids = [run.data.tags[Tag.TRIAL_ID] for run in runs]
    assert len(trial_ids) == len(set(trial_ids))  # exactly one run per trial
    by = {(run.data.tags.get(Tag.METHOD), run.data.tags[Tag.ROLE]): [] for run in runs}
    for run in runs:
        by[(run.data.tags.get(Tag.METHOD), run.data.tags[Tag.ROLE])].append(run)
    assert {key: len(value) for key, value in by.items()} == {
        (None, Role.SWEEP): 1,
        ("kd", Role.TRIAL): 2,
        ("direct", Role.TRIAL): 1,  # it samples nothing: one trial of its fixed config
        ("dkd", Role.TRIAL): 2,
        ("kd", Role.FINAL): 1,
        ("direct", Role.FINAL): 1,
        ("dkd", Role.FINAL): 1,
    }
    assert all(run.info.status == "FINISHED" for run in runs)  # the workers found every plugin piece
    dkd = by[("dkd", Role.TRIAL)] + by[("dkd", Role.FINAL)]
    for run in dkd:
        assert run.data.params["dataset.name"] == "shapes" and run.data.params["student.arch"] == "mlp"
        assert {"dkd.beta", "dkd.temperature", "teacher.depth"} <= set(run.data.params)
        assert not any(key.startswith("kd.") for key in run.data.params)  # only the sections it reads
        assert Capabilities.from_tag(run.data.tags[Tag.CAPABILITIES]).needs_teacher
        assert run.data.tags[Tag.TEACHER] and "noise/row_dropout/0.25" in run.data.metrics
    assert len({run.data.params["dkd.beta"] for run in by[("dkd", Role.TRIAL)]}) == 2  # its key was searched

    table = tmp_path / "runs" / "plugin-smoke" / "report" / "tables" / "accuracy_vs_noise.csv"
    with table.open(newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert {"teacher (ANN)", "kd", "direct", "dkd"} <= set(rows)
    assert float(rows["dkd"]["row_dropout 0.25 mean"]) == pytest.approx(
        by[("dkd", Role.FINAL)][0].data.metrics["noise/row_dropout/0.25"]
    )
    significance = (table.parent / "significance.md").read_text()
    assert "kd vs dkd" in significance  # the sweep's first method against each other one
