"""Does a trial fit the cluster (`harness.sweep.resources`), checked without starting Ray."""

from __future__ import annotations

import pytest

from harness.config.space import ResourcesConfig
from harness.errors import HarnessInputError
from harness.sweep.resources import check_resources, describe_cluster

TWO_CPUS = ([{"CPU": 2.0}], {"CPU": 2.0})
TWO_NODES = ([{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}], {"CPU": 6.0, "GPU": 1.0})


def test_the_cluster_is_described_by_its_total_and_its_largest_node() -> None:
    assert describe_cluster(*TWO_NODES) == "2 node(s), 6 CPU and 1 GPU in all; the largest has 4 CPU, 1 GPU"


@pytest.mark.parametrize(
    ("resources", "shape"),
    [
        (ResourcesConfig(cpu=1), TWO_CPUS),
        (ResourcesConfig(cpu=2), TWO_CPUS),
        (ResourcesConfig(cpu=4, gpu=1), TWO_NODES),
        (ResourcesConfig(cpu=0.5, gpu=0.5), TWO_NODES),  # fractions share a node
    ],
)
def test_a_trial_that_fits_one_node_passes(resources: ResourcesConfig, shape) -> None:
    said: list[str] = []
    check_resources(resources, growing=False, log=said.append, shape=shape)
    assert said == []


@pytest.mark.parametrize(
    ("resources", "shape", "named"),
    [
        (ResourcesConfig(cpu=8), TWO_CPUS, "resources.cpu"),
        (ResourcesConfig(cpu=1, gpu=1), TWO_CPUS, "resources.gpu"),
        # 6 CPUs in all, but no node has 5: a trial runs on one node.
        (ResourcesConfig(cpu=5), TWO_NODES, "resources.cpu"),
        # One GPU in the whole cluster: two cannot be on one node.
        (ResourcesConfig(cpu=3, gpu=2), TWO_NODES, "resources.gpu"),
    ],
)
def test_a_trial_that_fits_no_node_of_a_local_instance_is_bad_input(
    resources: ResourcesConfig, shape, named: str
) -> None:
    with pytest.raises(HarnessInputError) as info:
        check_resources(resources, growing=False, log=lambda _: None, shape=shape)
    message = str(info.value)
    assert message.startswith(f"{named}: a trial needs {resources.cpu:g} CPU and {resources.gpu:g} GPU on one node")
    assert describe_cluster(*shape) in message and "\n" not in message


def test_a_cluster_that_may_grow_is_waited_for_with_a_word() -> None:
    said: list[str] = []
    check_resources(ResourcesConfig(cpu=8), growing=True, log=said.append, shape=TWO_CPUS)
    assert said == ["waiting for the cluster to grow: a trial needs 8 CPU and 0 GPU on one node; it has "
                    "1 node(s), 2 CPU and 0 GPU in all; the largest has 2 CPU, 0 GPU"]  # fmt: skip


def test_a_sweep_waiting_for_resources_says_so_once_a_minute(monkeypatch, capsys) -> None:
    from types import SimpleNamespace

    from harness.sweep import resources as run

    clock = [100.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(run, "cluster_shape", lambda: ([{"CPU": 2.0}], {"CPU": 2.0}))
    notice = run.WaitNotice(ResourcesConfig(cpu=1, gpu=1))
    pending = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="PENDING")]
    for seconds in (0, 30, 61, 90, 125):
        clock[0] = 100.0 + seconds
        notice.on_step_begin(0, pending)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2  # at 61 s and at 125 s
    assert "waiting for resources for 61 s: 2 trial(s) need 1 CPU and 1 GPU" in lines[0]
    assert "1 node(s), 2 CPU and 0 GPU in all" in lines[0]
    notice.on_step_begin(0, [SimpleNamespace(status="RUNNING")])  # something runs: the wait is over
    assert notice.since is None
