"""Shared fixtures: tiny trial configs on the shipped `digits` set, a session teacher cache."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.config.resolve import trial_config
from harness.config.sections import TrialConfig

# Small enough that a whole trial (teacher included) takes a few seconds on 2 cores.
TINY: dict[str, Any] = {
    "dataset.name": "digits",
    "teacher.arch": "resnet",
    "teacher.depth": 8,
    "teacher.width": 8,
    "teacher.epochs": 4,
    "student.arch": "resnet",
    "student.depth": 8,
    "student.width": 8,
    "snn.time_steps": 2,
    "train.epochs": 2,
    "train.batch_size": 64,
    "train.threads": 2,
    "eval.time_steps": [1, 2, 4],
    "eval.noise": {"gaussian": [0.1], "salt_pepper": [0.05]},
}


def write_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
    """Installs distribution `name` into the folder `site` as pip would: its modules and a
    `<name>-0.1.dist-info` with `METADATA` and `entry_points.txt` (groups without the
    `snn_kd_harness.` prefix, e.g. `{"methods": {"nan_test": "mod:Cls"}}`). Returns `site`."""
    site.mkdir(parents=True, exist_ok=True)
    for filename, source in modules.items():
        (site / filename).write_text(source)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    groups = [
        f"[snn_kd_harness.{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
        for group, eps in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))
    return site


@pytest.fixture
def install_plugin(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`install_plugin(name, entry_points, modules)`: a real distribution on this process's path
    (subprocesses: `plugin_subprocess_env`), found by entry points;
    removed again after the test."""
    import importlib

    from harness import registry

    site = tmp_path / "site-packages"
    added: list[str] = []

    def install(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
        write_distribution(site, name, entry_points, modules)
        if str(site) not in sys.path:
            sys.path.insert(0, str(site))
            added.append(str(site))
        importlib.invalidate_caches()
        registry.refresh()
        return site

    yield install
    for path in added:
        sys.path.remove(path)
    for module in [m for m, mod in sys.modules.items() if str(site) in str(getattr(mod, "__file__", "") or "")]:
        del sys.modules[module]
    importlib.invalidate_caches()
    registry.refresh()


NAN_METHOD = '''
import torch
from harness.methods.student import StudentMethod


class NaNMethod(StudentMethod):
    """Direct training whose loss turns NaN on the third batch."""

    calls = 0

    def loss(self, images, labels):
        NaNMethod.calls += 1
        out = self.student(images, self.ctx.config.snn.time_steps).mean(0)
        loss = torch.nn.functional.cross_entropy(out, labels)
        return loss * float("nan") if NaNMethod.calls >= 3 else loss
'''


LAX_METHOD = """
from typing import Any

from pydantic import ConfigDict

from harness.config import Section
from harness.methods.student import StudentMethod


class LaxConfig(Section):
    model_config = ConfigDict(allow_inf_nan=True)  # a plugin's own choice; inf still cannot get in

    rate: float = 1.0
    anything: Any = None
    table: dict[str, Any] = {}


class Lax(StudentMethod):
    options = LaxConfig

    def loss(self, images, labels):
        raise NotImplementedError
"""


@pytest.fixture
def lax_plugin(install_plugin) -> Callable[[], Path]:
    """`lax_plugin()` installs a method `lax` whose own section lets inf/nan in by its own
    config (`allow_inf_nan=True`) and has fields typed `Any` and `dict[str, Any]`."""
    return lambda: install_plugin("lax", {"methods": {"lax": "lax_plugin:Lax"}}, {"lax_plugin.py": LAX_METHOD})


@pytest.fixture
def nan_method(install_plugin) -> str:
    """A method `nan_test`, from an installed test distribution, whose loss turns NaN on the third batch."""
    install_plugin("nan-method", {"methods": {"nan_test": "nan_method:NaNMethod"}}, {"nan_method.py": NAN_METHOD})
    return "nan_test"


def _plugin_env(site: Path) -> dict[str, str]:
    """The environment of a subprocess (and the Ray workers it starts) that sees the plugins in `site`."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def plugin_env() -> Callable[[Path], dict[str, str]]:
    """`plugin_env(site)`: the environment of a subprocess that sees the distributions installed in `site`."""
    return _plugin_env


@pytest.fixture
def plugin_subprocess_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """`plugin_subprocess_env(name, entry_points, modules)`: installs a distribution (as
    `install_plugin` does) into a folder only subprocesses see; returns their environment."""

    def make(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> dict[str, str]:
        return _plugin_env(write_distribution(tmp_path / "subprocess-site", name, entry_points, modules))

    return make


@pytest.fixture(autouse=True)
def _deterministic_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def make_config() -> Callable[..., TrialConfig]:
    """`make_config(method="kd", **{"snn.time_steps": 4})`: TINY plus dotted overrides."""

    def make(method: str = "kd", **overrides: Any) -> TrialConfig:
        return trial_config({**TINY, "method": method, **overrides})

    return make


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One teacher cache for the whole session, so the tiny teacher trains once."""
    return tmp_path_factory.mktemp("teacher_cache")


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    """A space file with the TINY values as `fixed` and an `eval` block."""
    import yaml

    fixed = {k: v for k, v in TINY.items() if not k.startswith("eval.")}
    space = {
        "name": "tiny",
        "methods": ["kd", "direct"],
        "fixed": fixed,
        "eval": {"reference_time_steps": 2, "time_steps": TINY["eval.time_steps"], "noise": TINY["eval.noise"]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mlflow_runs(tracking_uri: str, experiment: str | None = None, filter_string: str = "") -> list[Any]:
    """Every run of `experiment` (None: of every experiment) in the store at `tracking_uri`
    (`sqlite:///...` or a bare path), or [] when there is no such experiment or store yet (a
    driver may still be creating it)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri if "://" in tracking_uri else f"sqlite:///{tracking_uri}"
    client = MlflowClient(uri)
    try:
        if experiment is None:
            ids = [e.experiment_id for e in client.search_experiments()]
        else:
            found = client.get_experiment_by_name(experiment)
            ids = [] if found is None else [found.experiment_id]
        return client.search_runs(ids, filter_string, max_results=50_000) if ids else []
    except Exception:  # noqa: BLE001 - the store is being created by another process
        return []


@pytest.fixture
def free_port() -> Callable[[], int]:
    """`free_port()`: a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture
def mlflow_runs() -> Callable[..., list[Any]]:
    """`mlflow_runs(tracking_uri, experiment=None, filter_string="")`: the runs of an experiment
    (or of every one), [] while the store or experiment does not exist yet."""
    return _mlflow_runs


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_cache: Path) -> Path:
    """`tmp_path` as the working directory (where `./mlflow.db` and `./runs` go), with the
    session's teacher cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_TEACHER_CACHE", str(teacher_cache))
    return tmp_path


def _run_harness(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = env or {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=timeout)


@pytest.fixture
def run_harness() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_harness("train", ..., cwd=path)`: the real command line in a subprocess, as a user runs it."""
    return _run_harness


@pytest.fixture
def train_default_space_on_digits(tmp_path: Path, run_harness):
    """`harness train --space search_spaces/kd.yaml --method M --set dataset.name=digits --set
    train.epochs=E` in a fresh folder; returns (completed process, metrics of its one run)."""
    from mlflow.tracking import MlflowClient

    space = str(Path(__file__).resolve().parents[1] / "search_spaces" / "kd.yaml")

    def run(method: str, epochs: int, *extra_sets: str):
        values = ("dataset.name=digits", f"train.epochs={epochs}", *extra_sets)
        sets = [arg for value in values for arg in ("--set", value)]
        result = run_harness("train", "--space", space, "--method", method, *sets, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        return result, runs[0].data.metrics

    return run


@pytest.fixture(scope="session")
def ray_2_cpus():
    """One local Ray instance (2 CPUs) for the whole test session."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], tuple[str, str]]:
    """`smoke_store(folder)`: a SQLite store in `folder` holding the smoke sweep's experiment
    (`smoke-digits`) and its parent run, tagged as `harness.sweep.run` tags it; returns (its
    tracking URI, the parent's run id). Creating a store takes seconds, so the session makes one
    and each call copies its file."""
    import shutil

    from harness.contract import Role, Tag
    from harness.tracking import TrackedRun

    template = tmp_path_factory.mktemp("smoke-store") / "mlflow.db"
    name = "smoke-digits"
    tags = {Tag.ROLE: Role.SWEEP, Tag.TRIAL_ID: f"{name}/sweep", Tag.METHODS: "kd,direct,conversion"}
    parent = TrackedRun(f"sqlite:///{template}", name, f"sweep-{name}", tags).run_id

    def copy(folder: Path) -> tuple[str, str]:
        shutil.copy(template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}", parent

    return copy


@pytest.fixture(scope="session")
def smoke_sweep(ray_2_cpus, tmp_path_factory):
    """One real sweep of search_spaces/smoke.yaml for the session: (plan, options, summary)."""
    from harness.sweep.plan import plan_sweep
    from harness.sweep.run import SweepOptions, run_sweep

    folder = tmp_path_factory.mktemp("sweep")
    options = SweepOptions(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="smoke", storage=folder / "runs"
    )
    plan = plan_sweep(Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml")
    summary = run_sweep(plan, options, log=lambda _: None)
    return plan, options, summary


@dataclass(frozen=True)
class ServedUI:
    """A running `harness ui`: where it answers and what it printed before serving."""

    port: int
    stdout: str
    stderr: str

    @property
    def base(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def harness_ui(tmp_path: Path) -> Iterator[Callable[[str], ServedUI]]:
    """`harness_ui(tracking_uri)` starts `harness ui` on a free port as a user does and returns a
    `ServedUI` once MLflow's API answers on 127.0.0.1; every server started is stopped after the test."""
    servers: list[subprocess.Popen] = []

    def start(tracking_uri: str) -> ServedUI:
        port = _free_port()
        out, err = tmp_path / f"ui-{port}.out", tmp_path / f"ui-{port}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            server = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "ui", "--tracking-uri", tracking_uri, "--port", str(port)],
                cwd=tmp_path,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        servers.append(server)
        deadline = time.monotonic() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
                with urllib.request.urlopen(url, timeout=5):
                    return ServedUI(port, out.read_text(), err.read_text())
            except OSError:
                assert server.poll() is None, f"harness ui exited: {err.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "harness ui did not answer in time"
                time.sleep(1)

    yield start
    for server in servers:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
