"""A fabricated sweep store with any number of methods, for the figures' and the attack table's tests.

Per method: six finished search trials over student depth {5, 7} x T {1, 2, 4} (one pruned) with a
learning rate across two decades, and final runs over SEEDS at the reference T only (the other T
read off their `timestep/<T>` curve), logging clean, noise and, where asked, attack metrics.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence

from harness import contract
from harness.contract import Capabilities, Role, Tag
from harness.tracking import TrackedRun

SEEDS = (1, 2, 3)
REFERENCE_T = 2
TIME_STEPS = (1, 2, 4)
NOISE = {"gaussian": [0.1]}
DEPTHS = (5, 7)
NAMES = ("kd", "tkd", "bkd", "sd", "direct", "conversion", "plugin_a", "plugin_b", "plugin_c", "plugin_d")
GRADIENTS = {"kd": "surrogate", "direct": "surrogate", "conversion": "ann"}
ATTACKS = {"fgsm": (0.01, 0.03), "pgd": (0.01, 0.03), "square": (0.03,), "transfer": (0.03,)}

AttackValue = Callable[[str, int, str, float], float | None]  # method, seed, attack, eps -> accuracy


def capabilities_tag(method: str, gradient: bool = True) -> str:
    """The `harness.capabilities` tag of a fabricated method: KD-like methods need the teacher,
    conversion trains at no T; `attack_gradient` set per `GRADIENTS` where `gradient` (as raw JSON)."""
    caps = Capabilities(
        needs_teacher=method in ("kd", "tkd", "bkd", "sd"),
        trains_at_time_steps=method != "conversion",
        curve_from_one_run=method != "conversion",
    )
    raw = json.loads(caps.to_tag())
    if gradient and method in GRADIENTS:
        raw["attack_gradient"] = GRADIENTS[method]
    return json.dumps(raw, sort_keys=True)


def default_attack(method: str, seed: int, attack: str, eps: float) -> float | None:
    """A white-box attack drops accuracy with eps; square never beats pgd; transfer is the mildest."""
    base = 0.9 - 0.02 * NAMES.index(method) + 0.005 * seed
    drop = {"fgsm": 8.0, "pgd": 12.0, "square": 6.0, "transfer": 3.0}[attack] * eps
    return round(base - drop, 6)


def _params(method: str, seed: int, steps: int, **extra: object) -> dict[str, str]:
    return {
        "method": method,
        "seed": str(seed),
        "snn.time_steps": str(steps),
        "dataset.name": "digits",
        "eval.reference_time_steps": str(REFERENCE_T),
        "eval.time_steps": json.dumps(list(TIME_STEPS)),
        "eval.noise": json.dumps(NOISE, sort_keys=True),
        **{key: str(value) for key, value in extra.items()},
    }


def write_many(
    uri: str,
    experiment: str,
    methods: Sequence[str],
    attacks: dict[str, tuple[float, ...]] | None = None,
    attack_value: AttackValue = default_attack,
    teacher_attacks: bool = False,
    plan: dict | None = None,
    gradient: bool = True,
) -> None:
    """Writes the experiment: `methods` (in that sweep order), attacked with `attacks` (name -> eps;
    None: no attack metrics) at `attack_value`'s accuracies, the teacher too where `teacher_attacks`;
    `plan`: logged as the sweep parent's `space/plan.json`."""
    parent = TrackedRun(
        uri, experiment, "sweep", {Tag.ROLE: Role.SWEEP, Tag.TRIAL_ID: "sweep", Tag.METHODS: ",".join(methods)}
    )
    if plan is not None:
        parent.log_text(json.dumps(plan), "space/plan.json")
    for number, method in enumerate(methods):
        caps = capabilities_tag(method, gradient)
        needs_teacher = Capabilities.from_tag(caps).needs_teacher
        dims = "student.depth,optim.lr" + (",snn.time_steps" if method != "conversion" else "")
        for index, (depth, steps) in enumerate(itertools.product(DEPTHS, TIME_STEPS)):
            tags = contract.run_tags(
                Role.TRIAL, method, f"{method}/trial/{index}", Capabilities(), parent_run_id=parent.run_id
            )
            tags |= {Tag.CAPABILITIES: caps, Tag.SEARCHED: dims}
            run = TrackedRun(uri, experiment, f"{method}-trial{index}", tags)
            lr = 1e-4 * 10 ** (index / 2.5)
            run.log_params(_params(method, 0, steps, **{"student.depth": depth, "optim.lr": f"{lr:.6g}"}))
            run.log_metrics({contract.VAL_ACCURACY: 0.6 + 0.02 * index - 0.01 * number})
            if index == 0:
                run.set_tags({Tag.PRUNED: contract.TRUE})
            if index == 5:
                run.set_tags({Tag.BEST: contract.TRUE})
            run.finish("FINISHED")
        for seed in SEEDS:
            tags = contract.run_tags(
                Role.FINAL, method, f"{method}/final/{seed}", Capabilities(), parent_run_id=parent.run_id
            )
            tags[Tag.CAPABILITIES] = caps
            if needs_teacher:
                tags[Tag.TEACHER] = f"teacher-of-seed-{seed}"
            run = TrackedRun(uri, experiment, f"{method}-final-s{seed}", tags)
            run.log_params(_params(method, seed, REFERENCE_T, **{"student.depth": 7, "optim.lr": "0.001"}))
            clean = round(0.9 - 0.02 * number + 0.005 * seed, 6)
            metrics = {
                contract.TEST_ACCURACY: clean,
                contract.noise_metric("gaussian", 0.1): clean - 0.1,
                **{contract.timestep_metric(t): clean - 0.01 * (REFERENCE_T - t) for t in TIME_STEPS},
            }
            if needs_teacher:
                metrics[contract.TEACHER_TEST_ACCURACY] = 0.97 + 0.001 * seed
            for name, budgets in (attacks or {}).items():
                for eps in budgets:
                    value = attack_value(method, seed, name, eps)
                    if value is not None:
                        metrics[contract.attack_metric(name, eps)] = value
                    if teacher_attacks and needs_teacher:
                        metrics[f"teacher_attack/{name}/{eps:g}"] = round(0.95 - 5 * eps + 0.001 * seed, 6)
            run.log_metrics(metrics)
            run.finish("FINISHED")
    parent.finish("FINISHED")
