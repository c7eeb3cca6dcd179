"""search_spaces/kd-family.yaml: the KD family (kd, tkd, bkd, sd) and the two baselines, each
method searching its own dims and the shared ones, with one objective."""

from __future__ import annotations

from pathlib import Path

from harness.sweep.plan import plan_sweep

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "kd-family.yaml"

SHARED = {"snn.time_steps", "train.lr"}
DIMS = {
    "kd": SHARED | {"kd.alpha", "kd.temperature"},
    "tkd": SHARED | {"tkd.alpha", "tkd.temperature", "tkd.ensemble"},
    "bkd": SHARED | {"bkd.lambda", "bkd.beta", "bkd.alpha", "bkd.temperature"},
    "direct": SHARED,
    "sd": SHARED | {"sd.alpha", "sd.temperature"},
    "conversion": {"train.lr"},  # it runs at the reference T: it does not read snn.*
}


def test_the_kd_family_space_plans_every_method_with_its_own_dims() -> None:
    plan = plan_sweep(SPACE)
    assert [p.method for p in plan.methods] == list(DIMS)
    for method_plan in plan.methods:
        assert set(method_plan.dims) == DIMS[method_plan.method], method_plan.method
        assert method_plan.config.dataset.name == "mnist-5k" and method_plan.config.train.epochs == 3
    search = plan.space.search
    assert not search.pareto and search.primary == ("val_accuracy", "max")
    assert (search.num_samples, search.final_repeats) == (4, 5)
    needs_teacher = {p.method for p in plan.methods if p.capabilities.needs_teacher}
    assert needs_teacher == {"kd", "tkd", "bkd"}
    bkd = plan.of("bkd")
    assert bkd.trial_config({"bkd.lambda": 0.8}).options.lambda_ == 0.8
