"""The teacher stage: every teacher the sweep's runs need, trained once, beside the trials that need none.

Teachers are trained once (a Ray task per distinct teacher) into the teacher cache under the
sweep's storage path, which every node must reach. The searcher hands out a method's trials
only once its teachers are cached (`TeacherGate`), so the methods that need none (direct,
conversion) run meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config.sections import TrialConfig
from harness.config.space import ResourcesConfig
from harness.methods.base import uses_teacher
from harness.sweep.final import final_seeds
from harness.sweep.plan import SweepPlan
from harness.sweep.search import TeacherGate
from harness.sweep.workers import train_teacher_task
from harness.teacher import TEACHER_FAILED, TEACHER_FILE, teacher_key_of


def teachers_needed(plan: SweepPlan) -> dict[str, dict[str, TrialConfig]]:
    """Per method whose runs use a teacher (`uses_teacher`: it distils, or an attack of its
    `eval.attacks` is crafted on the teacher), the distinct teachers its search and final runs
    use (by key)."""
    needed: dict[str, dict[str, TrialConfig]] = {}
    for method_plan in plan.methods:
        base_seed = method_plan.config.seed
        for seed in sorted({base_seed, *final_seeds(plan.space, base_seed)}):
            config = method_plan.trial_config({"seed": seed})
            if uses_teacher(config):
                needed.setdefault(method_plan.method, {}).setdefault(teacher_key_of(config), config)
    return needed


def start_teachers(plan: SweepPlan, teacher_cache: Path, resources: ResourcesConfig) -> tuple[list[Any], TeacherGate]:
    """Starts a Ray task for every teacher not in the cache yet, without waiting for them.

    They train beside the trials of the methods that need none (direct, conversion): the
    searcher hands out a method's trials only once its teachers are cached (the returned gate).
    When every method needs a teacher, nothing else can run meanwhile, so the teachers share
    the cluster's CPUs.

    Returns:
        The tasks' object refs and the gate.
    """
    import ray

    needed = teachers_needed(plan)
    configs = {key: config for by_key in needed.values() for key, config in by_key.items()}
    missing = {key: c for key, c in configs.items() if not (teacher_cache / key / TEACHER_FILE).exists()}
    for key in missing:
        (teacher_cache / key / TEACHER_FAILED).unlink(missing_ok=True)  # a failure before a resume: try again
    alone = all(p.method in needed for p in plan.methods)
    cpus = _teacher_cpus(resources, len(missing)) if alone else resources.cpu
    task = ray.remote(num_cpus=cpus, num_gpus=resources.gpu)(train_teacher_task)
    refs = [task.remote(config.model_dump(mode="json"), str(teacher_cache)) for config in missing.values()]
    gate = TeacherGate(
        {m: tuple(str(teacher_cache / key / TEACHER_FILE) for key in by_key) for m, by_key in needed.items()}
    )
    return refs, gate


def _teacher_cpus(resources: ResourcesConfig, teachers: int) -> float:
    """CPUs per teacher task when nothing else can run: the teachers share the cluster's CPUs
    (at most one node's worth each, at least a trial's)."""
    import ray

    if teachers == 0:
        return resources.cpu
    largest_node = max(node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"])
    share = ray.cluster_resources().get("CPU", 0.0) // teachers
    return max(resources.cpu, min(largest_node, share))


def teacher_outcomes(refs: list[Any], log: Callable[[str], None]) -> list[tuple[float, float]]:
    """Waits for the teacher tasks (done by now: their methods' trials ran), says which failed,
    and returns when each that succeeded started and ended."""
    import ray

    spans = []
    for ref in refs:
        try:
            _, started, ended = ray.get(ref)
            spans.append((started, ended))
        except Exception as exc:  # noqa: BLE001 - the trials that needed it recorded their own failure
            log(f"a teacher failed to train: {str(exc).strip().splitlines()[-1][:300]}")
    return spans
