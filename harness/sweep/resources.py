"""Whether a trial fits the Ray cluster, checked before anything runs, and a notice while it waits.

A trial that fits no node of a local Ray instance (`resources: {cpu: 8}` on a 2-CPU machine,
or `gpu: 1` without a GPU) is bad input (exit 2, naming `resources.cpu` / `resources.gpu`). On
a cluster (`--address`), which may grow, the sweep starts and says once a minute what it waits
for while trials are pending and none runs (`WaitNotice`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray import tune

from harness.config.space import ResourcesConfig
from harness.errors import HarnessInputError
from harness.progress import write

WAIT_NOTICE_S = 60.0  # how often a sweep that waits for resources says so

Shape = tuple[list[dict[str, float]], dict[str, float]]
"""The alive nodes' resources and the cluster's total."""


def cluster_shape() -> Shape:
    """The alive nodes' resources and the cluster's total (Ray must be initialised)."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    return nodes, ray.cluster_resources()


def describe_cluster(nodes: list[dict[str, float]], total: dict[str, float]) -> str:
    """`2 node(s), 4 CPU and 0 GPU in all; the largest has 2 CPU, 0 GPU`."""
    largest_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    largest_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    return (
        f"{len(nodes)} node(s), {total.get('CPU', 0.0):g} CPU and {total.get('GPU', 0.0):g} GPU in all; "
        f"the largest has {largest_cpu:g} CPU, {largest_gpu:g} GPU"
    )


def check_resources(
    resources: ResourcesConfig, growing: bool, log: Callable[[str], None], shape: Shape | None = None
) -> None:
    """Checks that one trial (`resources.cpu` CPUs and `resources.gpu` GPUs on one node) fits a node
    of the cluster (`shape`, default: the running Ray instance's `cluster_shape()`).

    Raises:
        HarnessInputError: it fits no node and the cluster cannot grow (a local Ray instance).
    """
    nodes, total = cluster_shape() if shape is None else shape
    if any(n.get("CPU", 0.0) >= resources.cpu and n.get("GPU", 0.0) >= resources.gpu for n in nodes):
        return
    short = "gpu" if not any(n.get("GPU", 0.0) >= resources.gpu for n in nodes) else "cpu"
    need = f"a trial needs {resources.cpu:g} CPU and {resources.gpu:g} GPU on one node"
    if not growing:
        raise HarnessInputError(
            f"resources.{short}: {need}, but this machine's Ray has {describe_cluster(nodes, total)}; "
            f"lower resources.{short} in the space file, or run on a cluster with --address"
        )
    log(f"waiting for the cluster to grow: {need}; it has {describe_cluster(nodes, total)}")


class WaitNotice(tune.Callback):
    """Says on stderr, at most once a minute, what the sweep waits for while trials are pending
    and none runs (an autoscaling cluster that has not grown yet), instead of silence."""

    def __init__(self, resources: ResourcesConfig, every: float = WAIT_NOTICE_S) -> None:
        self.resources, self.every = resources, every
        self.since: float | None = None
        self.said = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "since": None, "said": 0.0}  # clocks of another process mean nothing

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        waiting = any(t.status == "PENDING" for t in trials) and not any(t.status == "RUNNING" for t in trials)
        now = time.monotonic()
        if not waiting:
            self.since = None
            return
        self.since = self.since or now
        if now - self.since >= self.every and now - self.said >= self.every:
            nodes, total = cluster_shape()
            pending = sum(t.status == "PENDING" for t in trials)
            write(
                f"waiting for resources for {now - self.since:.0f} s: {pending} trial(s) need "
                f"{self.resources.cpu:g} CPU and {self.resources.gpu:g} GPU each on one node; the cluster has "
                f"{describe_cluster(nodes, total)}"
            )
            self.said = now
