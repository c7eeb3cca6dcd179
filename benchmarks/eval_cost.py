"""Evaluation cost: the time-step curve from one run against one run per T, and a trial's
full final evaluation (clean test set, op counting, every noise level).

The student, data and `eval` block are the default space's (`search_spaces/kd.yaml`'s
`fixed` values), as a direct-training trial (no teacher needed), straight from
initialisation: evaluation does the same dense work whatever the weights, so timings do not
depend on training (accuracies here are meaningless and not reported). Each figure is the
median of interleaved repeats.

* `timestep_curve_speedup` = (sum over T of `eval.time_steps` of one `predict_steps` run at T
  + its accuracy) / (one `predict_steps` run at T_max + `cumulative_accuracy`); the two
  curves are also compared (they must be identical).
* `final_evaluation` (harness.trial) with the space's `eval` block, timed whole, with the
  clean run at T_max and one noise level timed on their own for a breakdown, and set against
  the time of one training epoch.

    python benchmarks/eval_cost.py --quick     # digits, eval.time_steps [1, 2, 4, 8], two noise levels
    python benchmarks/eval_cost.py             # kd.yaml's data, student and eval block
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import yaml
from benchlib import REPO, fmt, interleaved, median, paired_ratio, publish, set_threads, table, timed

from harness.config.resolve import trial_config
from harness.config.sections import TrialConfig
from harness.data import DataSplits
from harness.methods import TrialContext, create_method
from harness.noise import apply_noise
from harness.training import accuracy, cumulative_accuracy, predict_steps
from harness.trial import eval_batch, final_evaluation, load_trial_data

SPACE = REPO / "search_spaces" / "kd.yaml"


def space_config(quick: bool, threads: int) -> TrialConfig:
    """kd.yaml's fixed values and eval block as a direct-training trial (no teacher needed)."""
    space = yaml.safe_load(SPACE.read_text())
    flat = {**space["fixed"], "method": "direct", "train.threads": threads, "train.device": "cpu"}
    evaluation = space["eval"]
    if quick:
        evaluation = {**evaluation, "time_steps": [1, 2, 4, 8], "noise": {"gaussian": [0.1], "salt_pepper": [0.05]}}
        flat["dataset.name"] = "digits"
    flat |= {f"eval.{key}": value for key, value in evaluation.items()}
    return trial_config(flat)


def curve_contenders(net: torch.nn.Module, data: DataSplits, config: TrialConfig) -> dict[str, Any]:
    """The two ways of getting `timestep/<T>`: one run at T_max, one run per T."""
    steps = config.eval.time_steps
    t_max = max(steps)
    curves: dict[str, list[float]] = {}

    def one_run() -> None:
        logits = predict_steps(net, data.test_x, time_steps=t_max,
                               batch_size=eval_batch(config, t_max))  # fmt: skip
        curve = cumulative_accuracy(logits, data.test_y)
        curves["one_run"] = [curve[t - 1].item() for t in steps]

    def per_t() -> None:
        curves["per_t"] = [
            accuracy(net, data.test_x, data.test_y, time_steps=t, batch_size=eval_batch(config, t))  # fmt: skip
            for t in steps
        ]

    return {"contenders": {"one_run": lambda: timed(one_run), "per_t": lambda: timed(per_t)}, "curves": curves}


def measure(quick: bool, threads: int, repeats: int) -> dict[str, Any]:
    """Every figure of this benchmark."""
    config = space_config(quick, threads)
    device = torch.device("cpu")
    data = load_trial_data(config, device)
    method = create_method("direct", TrialContext(config, data, device, Path("unused"), lambda _: None))
    net = method.network()
    curve = curve_contenders(net, data, config)
    timings = interleaved(curve["contenders"], repeats)
    walls = {name: [t.wall for t in values] for name, values in timings.items()}
    noise, level = next(iter(config.eval.noise.items()))
    t_eval, t_max = config.snn.time_steps, max(config.snn.time_steps, *config.eval.time_steps)
    parts = interleaved({
        "final_evaluation": lambda: timed(lambda: final_evaluation(method, data, config)),
        "clean_run_at_t_max": lambda: timed(lambda: predict_steps(
            net, data.test_x, time_steps=t_max, batch_size=eval_batch(config, t_max))),
        "one_noise_level": lambda: timed(lambda: accuracy(
            net, apply_noise(data.test_x, noise, level[0]), data.test_y, time_steps=t_eval,
            batch_size=eval_batch(config, t_eval))),
    }, max(1, repeats - 1))  # fmt: skip
    epoch = timed(lambda: method.train_one_epoch(1)).wall
    return {
        "time_steps": list(config.eval.time_steps),
        "test_images": len(data.test_x),
        "noise_levels": sum(len(levels) for levels in config.eval.noise.values()),
        "curve_seconds": {name: median(values) for name, values in walls.items()},
        "timestep_curve_speedup": paired_ratio(walls["per_t"], walls["one_run"]),
        "curves_identical": curve["curves"]["one_run"] == curve["curves"]["per_t"],
        "eval_seconds": {name: median([t.wall for t in values]) for name, values in parts.items()},
        "train_epoch_seconds": epoch,
    }


def report(result: dict[str, Any]) -> str:
    """The Markdown tables of a run."""
    curve, parts = result["curve_seconds"], result["eval_seconds"]
    rows = [
        [f"time-step curve at T = {result['time_steps']}, {result['test_images']} test images",
         fmt(curve["per_t"]), fmt(curve["one_run"]), fmt(result["timestep_curve_speedup"]),
         "yes" if result["curves_identical"] else "NO"],
    ]  # fmt: skip
    first = table(["what", "one run per T (s)", "one run at T_max (s)", "speedup", "same curve"], rows)
    part_rows = [[name.replace("_", " "), fmt(seconds)] for name, seconds in parts.items()]
    part_rows.append(["one training epoch (for scale)", fmt(result["train_epoch_seconds"])])
    return first + "\n\n" + table([f"final evaluation ({result['noise_levels']} noise levels)", "seconds"], part_rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick) or 5")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    result = measure(args.quick, args.threads, args.repeats or (3 if args.quick else 5))
    publish("eval_cost", result, report(result), quick=args.quick, out=args.out, headline="timestep_curve_speedup")
    return result


if __name__ == "__main__":
    main()
