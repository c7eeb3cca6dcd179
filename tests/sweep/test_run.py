"""`harness sweep` on real Ray and a real SQLite MLflow store, with the smoke space."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.errors import HarnessInputError
from harness.sweep.final import final_time_steps
from harness.sweep.plan import plan_sweep
from harness.sweep.run import SweepOptions, run_sweep

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "search_spaces" / "smoke.yaml"


@pytest.mark.parametrize("form", [[str(SMOKE)], ["--space", str(SMOKE)]])
def test_validate_prints_the_plan(capsys, form: list[str]) -> None:
    assert main(["validate", *form]) == 0
    out = capsys.readouterr().out
    assert "kd: 3 trials, searching student.width, snn.time_steps, kd.alpha" in out
    assert "conversion: 3 trials, searching student.width, conversion.levels" in out


@pytest.mark.parametrize("form", [[], [str(SMOKE), "--space", str(SMOKE)]])
def test_validate_takes_the_space_file_exactly_once(capsys, form: list[str]) -> None:
    assert main(["validate", *form]) == 2
    err = capsys.readouterr().err
    assert "give the space file once" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["dataset.name=cifar10"], "--set dataset.name: dataset 'cifar10' reads files from disk"),
        (["dataset.name=cifar10", "dataset.root=/nonexistent"], "--set dataset.root: dataset 'cifar10': files not"),
        (["student.arch=vgg"], "--set student.arch: vgg depth 8 is not supported"),
        (["student.arch=vgg", "student.depth=8"], "--set student.depth: vgg depth 8 is not supported"),
        (["eval.noise={salt_pepper: [2.0]}"], "--set eval.noise: noise level for 'salt_pepper' must be in [0, 1]"),
        (["eval.noise.salt_pepper=[2.0]"], "--set eval.noise.salt_pepper: noise level for 'salt_pepper'"),
        (["conversion.levels=.inf"], "--set conversion.levels: "),
        (["train.lr=.nan"], "--set train.lr: Input should be a finite number (got nan)"),
        (["method=direct"], "--set method: choose the method with --method"),
    ],
)
def test_validate_names_the_set_flag_of_a_bad_value(capsys, sets: list[str], expected: str) -> None:
    assert main(["validate", str(SMOKE), *(arg for text in sets for arg in ("--set", text))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: {expected}") and err.count("\n") == 1, err


def test_validate_rejects_a_repeated_key(tmp_path: Path, capsys) -> None:
    text = SMOKE.read_text().replace("  train.epochs: 4\n", "  train.epochs: 4\n  train.epochs: 40\n")
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    line = text.splitlines().index("  train.epochs: 40") + 1
    assert f"{path}: line {line}: duplicate key 'train.epochs' in fixed (first at line {line - 1})" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"space": {"kd.alpha": {"normal": [0, 1]}}}, "space.kd.alpha.normal: unknown key"),
        ({"space": {"kd.alpha": {"float": [0.9, 0.1]}}}, "space.kd.alpha: expected low < high"),
        ({"space": {"kd.alpha": {"float": [0.5, 1.5]}}}, "space.kd.alpha: value 1.5 is invalid"),
        ({"space": {"kd.alpah": {"float": [0.1, 0.5]}}}, "space.kd.alpah: value 0.1 is invalid"),
        ({"search": {"num_samples": 0}}, "search.num_samples"),
        ({"search": {"metric": "test_accuracy"}}, "search.metric"),
        ({"resources": {"cpu": 0}}, "resources.cpu"),
        ({"eval": {"noise": {"gaussian": [-1]}}}, "eval.noise"),
        ({"methods": ["kd", "direct", "kd"]}, "methods.2: 'kd' is listed twice"),
        ({"fixed": {"method": "direct"}}, "fixed.method: the methods to run are listed under `methods`"),
        ({"fixed": {"train.lr": float("inf")}}, "fixed.train.lr: Input should be a finite number (got inf)"),
        ({"eval": {"noise": {"gaussian": [float("nan")]}}}, "eval.noise.gaussian.0: Input should be a finite number"),
        ({"space": {"kd.alpha": {"float": [0.1, float("inf")]}}}, "space.kd.alpha.float.1: Input should be a finite"),
        ({"space": {"train.lr": {"categorical": [0.1, float("inf")]}}}, "space.train.lr.categorical.1: Input should"),
        ({"search": {"scheduler": {"name": "asha", "reduction_factor": float("inf")}}}, "reduction_factor: Input"),
        ({"resources": {"cpu": float("inf")}}, "resources.cpu: Input should be a finite number"),
        ({"resources": {"gpu": float("nan")}}, "resources.gpu: Input should be a finite number"),
    ],
)
def test_validate_rejects_bad_spaces(tmp_path: Path, capsys, edit: dict, expected: str) -> None:
    space = yaml.safe_load(SMOKE.read_text())
    for section, value in edit.items():
        merge = isinstance(value, dict) and section != "space"
        space[section] = {**space.get(section, {}), **value} if merge else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err and err.count("\n") == 1


def test_each_method_samples_only_its_dims() -> None:
    plan = plan_sweep(SMOKE)
    dims = {p.method: set(p.dims) for p in plan.methods}
    assert dims == {
        "kd": {"student.width", "snn.time_steps", "kd.alpha"},
        "direct": {"student.width", "snn.time_steps"},
        "conversion": {"student.width", "conversion.levels"},
    }
    by_method = {p.method: p for p in plan.methods}
    assert final_time_steps(by_method["kd"], plan.space) == (1, 2)
    assert final_time_steps(by_method["conversion"], plan.space) == (2,)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_sweep_logs_each_trial_once(smoke_sweep, mlflow_runs) -> None:
    plan, options, summary = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    roles = [r.data.tags["harness.role"] for r in runs]
    assert roles.count("sweep") == 1
    parent = next(r for r in runs if r.data.tags["harness.role"] == "sweep")
    trial_ids = [r.data.tags["harness.trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids))  # exactly one run per trial
    for method in ("kd", "direct", "conversion"):
        trials = [
            r for r in runs if r.data.tags.get("harness.method") == method and r.data.tags["harness.role"] == "trial"
        ]
        finals = [
            r for r in runs if r.data.tags.get("harness.method") == method and r.data.tags["harness.role"] == "final"
        ]
        assert len(trials) == plan.space.search.num_samples
        by_method = {p.method: p for p in plan.methods}
        best = summary.methods[method].best
        steps = final_time_steps(by_method[method], plan.space, best)
        assert len(finals) == len(steps) * plan.space.search.final_repeats
        (chosen,) = [r for r in trials if r.data.tags.get("harness.best") == "true"]  # tagged for the report
        assert all(chosen.data.params[key] == str(value) for key, value in best.items())
        if "snn.time_steps" in best:  # the configuration the search chose is itself retrained
            assert str(best["snn.time_steps"]) in {r.data.params["snn.time_steps"] for r in finals}
        for run in trials + finals:
            assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert run.info.status == "FINISHED"
            assert run.data.params["method"] == method
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert history and history[0].step == 1
        for run in finals:
            assert {"test_accuracy", "timestep/2", "noise/gaussian/0.1"} <= set(run.data.metrics)
        complete = [r for r in trials if "test_accuracy" in r.data.metrics]
        pruned = [r for r in trials if r.data.tags.get("harness.pruned") == "true"]
        assert len(complete) + len(pruned) == len(trials)
    assert summary.teachers_trained == 2  # the search seed and the one final seed


@pytest.mark.slow
def test_resume_runs_nothing_twice(smoke_sweep, mlflow_runs) -> None:
    plan, options, _ = smoke_sweep
    before = mlflow_runs(options.tracking_uri, options.experiment)
    assert before  # the session's sweep, to resume
    run_sweep(plan, SweepOptions(**{**options.__dict__, "resume": True}), log=lambda _: None)
    after = mlflow_runs(options.tracking_uri, options.experiment)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
    ends = {r.info.run_id: r.info.end_time for r in before if r.data.tags["harness.role"] != "sweep"}
    assert all(r.info.end_time == ends[r.info.run_id] for r in after if r.info.run_id in ends)


@pytest.mark.slow
def test_a_nan_trial_fails_with_its_reason_and_the_others_finish(ray_2_cpus, tmp_path: Path, mlflow_runs) -> None:
    space = yaml.safe_load(SMOKE.read_text())
    space["methods"] = ["direct"]
    space["fixed"].update({"train.optimizer": "sgd", "train.epochs": 1})
    # Random sampling with this seed draws both learning rates; 1e12 overflows to NaN.
    space["space"] = {"train.lr": {"categorical": [0.05, 1.0e12]}}
    space["search"].update({"sampler": "random", "num_samples": 4, "final_repeats": 0})
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(space))
    options = SweepOptions(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="nan", storage=tmp_path / "runs"
    )
    run_sweep(plan_sweep(path), options, log=lambda _: None)
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    trials = [r for r in runs if r.data.tags["harness.role"] == "trial"]
    failed = [r for r in trials if r.info.status == "FAILED"]
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert len(trials) == 4 and failed and finished
    assert all(r.data.params["train.lr"] == "1000000000000.0" for r in failed)
    assert all("loss became NaN" in r.data.tags["harness.failure_reason"] for r in failed)
    assert all("test_accuracy" in r.data.metrics for r in finished)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_interrupted_sweep_resumes_without_duplicates(tmp_path: Path, run_harness, mlflow_runs) -> None:
    """Ctrl-C after the first finished trial, then --resume: every trial ends once, none reruns."""
    import os
    import signal
    import subprocess
    import sys
    import time

    space = yaml.safe_load(SMOKE.read_text())
    space["methods"] = ["direct"]
    space["fixed"]["train.epochs"] = 2
    space["space"] = {"student.width": {"categorical": [4, 8]}}  # T fixed: two final runs (T = 1, 2)
    space["search"].update({"num_samples": 3, "final_repeats": 1})
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(space))
    options = SweepOptions(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment=space["name"], storage=tmp_path
    )
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", "--space", str(path)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def finished_trials() -> list:
        runs = mlflow_runs(options.tracking_uri, options.experiment)  # [] while the driver creates the store
        return [r for r in runs if r.data.tags.get("harness.role") == "trial" and r.info.status == "FINISHED"]

    deadline = time.monotonic() + 400
    while not finished_trials():
        assert driver.poll() is None, "the sweep ended before a trial finished"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGINT)  # what one Ctrl-C in a terminal does
    interrupted = time.monotonic()
    try:
        code = driver.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        code = driver.wait()
    stopped_after = time.monotonic() - interrupted
    log.close()
    said = (tmp_path / "driver.log").read_text()
    assert code == 130 and "harness: interrupted" in said, said[-3000:]  # one Ctrl-C stops it, state saved
    assert stopped_after < 60, stopped_after
    before = {r.info.run_id: r.info.end_time for r in finished_trials()}

    result = run_harness("sweep", "--space", str(path), "--resume", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    trial_ids = [r.data.tags["harness.trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids))
    trials = [r for r in runs if r.data.tags["harness.role"] == "trial"]
    finals = [r for r in runs if r.data.tags["harness.role"] == "final"]
    assert len(trials) == 3 and len(finals) == 2
    assert all(r.info.status == "FINISHED" for r in trials + finals)
    assert {r.info.run_id: r.info.end_time for r in runs if r.info.run_id in before} == before  # not rerun


@pytest.mark.parametrize(
    "name",
    ["kd.yaml", "smoke.yaml", "smoke-pareto.yaml", "cifar10-paper.yaml", "events-cpu.yaml", "cifar10-dvs-paper.yaml"],
)
def test_every_shipped_space_validates(name: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "cifar-10-batches-py"  # the files the CIFAR-10 preset needs, present but empty
    folder.mkdir()
    for part in ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))]:
        (folder / part).touch()
    (tmp_path / "CIFAR10DVS" / "airplane").mkdir(parents=True)  # and the CIFAR10-DVS preset's
    (tmp_path / "CIFAR10DVS" / "airplane" / "0.aedat4").touch()
    args = ["validate", str(REPO / "search_spaces" / name)]
    if name.startswith("cifar10"):
        args += ["--set", f"dataset.root={tmp_path}"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert all(f"{method}:" in out for method in ("kd", "direct", "conversion"))


def test_final_time_steps_narrow_what_the_final_stage_trains(tmp_path: Path) -> None:
    space = yaml.safe_load(SMOKE.read_text())
    space["eval"]["time_steps"] = [1, 2, 4, 8]
    space["search"]["final_time_steps"] = [1]
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(space))
    plan = plan_sweep(path)
    by_method = {p.method: p for p in plan.methods}
    assert final_time_steps(by_method["kd"], plan.space) == (1, 2)  # the reference T (2) always
    assert final_time_steps(by_method["kd"], plan.space, {"snn.time_steps": 3}) == (1, 2, 3)  # and the best T
    assert final_time_steps(by_method["conversion"], plan.space, {"conversion.levels": 4}) == (2,)


def test_resuming_with_another_plan_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    from harness.sweep.plan import check_same_plan, record_plan

    plan = plan_sweep(SMOKE)
    folder = tmp_path / "runs" / plan.space.name
    folder.mkdir(parents=True)
    record_plan(plan, folder)  # what the sweep writes when it starts
    check_same_plan(plan_sweep(SMOKE), folder)  # the same plan: fine
    with pytest.raises(HarnessInputError, match=r"methods\.\w+\.config\.train\.epochs is 9, but .* started with 4"):
        check_same_plan(plan_sweep(SMOKE, [("train.epochs", 9)]), folder)

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["sweep", "--space", str(SMOKE), "--storage", str(tmp_path / "runs"), "--tracking-uri", tracking]
    assert main([*argv, "--resume", "--set", "train.epochs=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.epochs is 9" in err
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was touched


@pytest.mark.slow
def test_every_sweep_run_records_how_to_reproduce_it(smoke_sweep, mlflow_runs) -> None:
    _, options, _ = smoke_sweep
    client = MlflowClient(options.tracking_uri)
    runs = mlflow_runs(options.tracking_uri, options.experiment)
    (parent,) = [r for r in runs if r.data.tags["harness.role"] == "sweep"]
    assert {"space.name", "space.methods", "search.num_samples", "search.seed", "resources.cpu"} <= set(
        parent.data.params
    )
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "space")} == {
        "space/plan.json",
        "space/smoke.yaml",
    }
    digests = set()
    for run in runs:
        assert "harness.lib.torch" in run.data.tags and "harness.version" in run.data.tags
        if run.data.tags["harness.role"] == "sweep":
            continue
        assert run.data.tags["harness.device"]
        # A trial trained to the end logs its network and its test predictions.
        pruned = run.data.tags.get("harness.pruned") == "true"
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"] + (
            [] if pruned else ["model", "predictions"]
        )
        digests.add(tuple(sorted((d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs)))
        method = run.data.params["method"]
        own = {"kd": "kd.", "direct": "direct.", "conversion": "conversion."}[method]
        assert any(k.startswith(own) for k in run.data.params)
        assert not any(k.startswith(p) for p in ("kd.", "direct.", "conversion.") if p != own for k in run.data.params)
    assert len(digests) == 1 and len(next(iter(digests))) == 3  # every run provably on the same three splits


def test_a_trial_that_fits_no_node_exits_2_naming_the_resource(tmp_path: Path, run_harness) -> None:
    """End to end, once: the real local Ray instance refuses a trial that needs more GPUs than any
    node has, with exit 2, and writes nothing (`tests/sweep/test_resources.py` checks every case
    as a unit)."""
    named = "resources.gpu"
    space = yaml.safe_load(SMOKE.read_text())
    space["resources"] = {"cpu": 1, "gpu": 64}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(space))
    result = run_harness("sweep", "--space", str(path), cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("harness: error:")]
    assert named in line and "CPU" in line and "GPU in all" in line and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.yaml"]  # nothing written: no store, no runs/


@pytest.mark.slow
def test_a_sweep_over_spikformers_arguments_from_a_checkpoint_teacher_trains_no_teacher(
    ray_2_cpus, tmp_path: Path, mlflow_runs
) -> None:
    """KD into tiny spikformers, searching the family's own arguments, distilled from a teacher the
    user brings (`teacher.checkpoint`, `teacher.epochs: 0`): the cached teacher holds the file's
    very weights, and every run's teacher figures are that file's."""
    import torch

    from harness.models import create_model, relu

    torch.manual_seed(3)
    teacher = create_model("resnet", in_channels=1, num_classes=10, image_shape=8, activation=relu, depth=8, width=8)
    checkpoint = tmp_path / "my_teacher.pt"
    torch.save(teacher.state_dict(), checkpoint)
    space = yaml.safe_load(SMOKE.read_text())
    space["methods"] = ["kd"]
    student = {"student.arch": "spikformer", "student.heads": 2, "student.patch_size": 2, "student.depth": 1}
    fixed = {k: v for k, v in space["fixed"].items() if not k.startswith("student.")}
    space["fixed"] = fixed | student | {"teacher.checkpoint": str(checkpoint), "teacher.epochs": 0, "train.epochs": 1}
    space["space"] = {"student.embed_dim": {"categorical": [4, 8]}, "student.depth": {"categorical": [1, 2]}}
    space["search"].update({"num_samples": 2, "final_repeats": 1, "final_time_steps": []})
    path = tmp_path / "spikformer.yaml"
    path.write_text(yaml.safe_dump(space))
    options = SweepOptions(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="spikformer", storage=tmp_path / "runs"
    )
    run_sweep(plan_sweep(path), options, log=lambda _: None)
    runs = [r for r in mlflow_runs(options.tracking_uri, options.experiment) if r.data.tags["harness.role"] != "sweep"]
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.params["student.arch"] == "spikformer" and r.data.metrics["synops"] > 0 for r in runs)
    cached = list((tmp_path / "runs" / "teacher_cache").glob("*/teacher.pt"))
    assert len(cached) == 2  # one per student seed (0: the search, 1: the final run), both from the file
    for path in cached:
        saved = torch.load(path, weights_only=True)["state_dict"]
        for key, tensor in teacher.state_dict().items():
            assert torch.equal(saved[key], tensor), key  # measured as it is: not one step of training
    assert len({r.data.metrics["teacher_test_accuracy"] for r in runs}) == 1
