"""Cost growth: training time and peak memory per epoch as T and depth grow, with and without
`train.checkpoint_activations`, and the fitted slopes.

For each point the harness's direct-training step (ResNet, width 16, batch 128) runs
`--batches` batches, with activation checkpointing off and on, interleaved; seconds per epoch
= median seconds per batch x batches per epoch of the dataset's training split (an
extrapolation from the timed batches, stated as such). Peak memory per point and setting is
the growth of a fresh child process's resident set over one training batch after a warm-up
one (benchlib, throughput.memory_child).
Slopes are least-squares lines (`np.polyfit(x, y, 1)`) of seconds per epoch and peak MiB
against T (at the base depth) and against depth (at the base T).

    python benchmarks/cost_growth.py --quick     # digits, T in {1, 4} at depth 8, no depth series
    python benchmarks/cost_growth.py             # T in {1, 2, 4, 8} at depth 8; depth in {8, 14, 20} at T 4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import child_json, fmt, interleaved, median, publish, table
from throughput import Setup, harness_unit, make_setup

SCRIPT = Path(__file__).resolve().parent / "throughput.py"


def measure_point(setup: Setup, time_steps: int, depth: int, repeats: int) -> dict[str, Any]:
    """Seconds per batch with checkpointing off and on, interleaved."""
    plain = harness_unit(setup, depth, time_steps)[0]
    ckpt = harness_unit(setup, depth, time_steps, **{"train.checkpoint_activations": True})[0]
    plain(), ckpt()  # warm-up
    runs = interleaved({"plain": plain, "checkpoint": ckpt}, repeats)
    batches = math.ceil(setup.samples / setup.batch_size)
    per_batch = {name: median([t.wall for t in values]) / batches for name, values in runs.items()}
    epoch_batches = math.ceil(len(setup.data.train_x) / setup.batch_size)
    return {
        "T": time_steps,
        "depth": depth,
        "epoch_s": {name: seconds * epoch_batches for name, seconds in per_batch.items()},
        "time_cost": median([c.wall / p.wall for p, c in zip(runs["plain"], runs["checkpoint"], strict=True)]),
    }


def peak(args: argparse.Namespace, time_steps: int, depth: int) -> dict[str, float]:
    """Peak MiB of a training batch in fresh processes, checkpointing off and on."""
    common = ["--dataset", args.dataset, "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    out = {}
    for name, impl in (("plain", "harness"), ("checkpoint", "harness-checkpoint")):
        out[name] = child_json(SCRIPT, [*common, "--memory-child", impl, str(time_steps), str(depth)])["peak_mib"]
    return out


def slope(points: list[dict[str, Any]], axis: str, key: str, setting: str) -> dict[str, float]:
    """Least-squares line of `points[key][setting]` against `points[axis]`."""
    x = np.array([p[axis] for p in points], dtype=float)
    y = np.array([p[key][setting] for p in points], dtype=float)
    if len(x) < 2:
        return {"slope": float("nan"), "intercept": float("nan")}
    fitted = np.polyfit(x, y, 1)
    return {"slope": float(fitted[0]), "intercept": float(fitted[1])}


def fits(series: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Slopes of time and memory against T and depth, for both settings."""
    out: dict[str, Any] = {}
    for axis, points in series.items():
        for key in ("epoch_s", "peak_mib"):
            for setting in ("plain", "checkpoint"):
                out[f"{key} vs {axis} ({setting})"] = slope(points, axis, key, setting)
    return out


def report(result: dict[str, Any]) -> str:
    """The Markdown tables of a run."""
    rows = []
    for axis, points in result["series"].items():
        for p in points:
            e, m = p["epoch_s"], p["peak_mib"]
            saving = 1 - m["checkpoint"] / m["plain"] if m["plain"] > 0 else float("nan")
            cost = f"{100 * (p['time_cost'] - 1):+.0f}%"
            rows.append([axis, p["T"], p["depth"], fmt(e["plain"], 1), fmt(m["plain"], 0), fmt(e["checkpoint"], 1),
                         fmt(m["checkpoint"], 0), f"{fmt(100 * saving, 0)}%", cost])  # fmt: skip
    headers = ["series", "T", "depth", "s/epoch", "peak MiB", "s/epoch (ckpt)", "peak MiB (ckpt)",
               "memory saved", "time cost"]  # fmt: skip
    fit_rows = [[name, fmt(f["slope"], 3), fmt(f["intercept"], 2)] for name, f in result["fits"].items()]
    return table(headers, rows) + "\n\n" + table(["least-squares fit", "slope", "intercept"], fit_rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-depth", type=int, default=8)
    parser.add_argument("--base-t", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    time_axis, depth_axis = ([1, 4], []) if args.quick else ([1, 2, 4, 8], [8, 14, 20])
    if args.quick:
        args.batches, args.repeats, args.dataset = 1, 2, "digits"
    args.width, args.amp, args.device = 16, "none", "cpu"
    setup = make_setup(args)
    series: dict[str, list[dict[str, Any]]] = {"T": [], "depth": []}
    for axis, values in (("T", time_axis), ("depth", depth_axis)):
        for value in values:
            t, depth = (value, args.base_depth) if axis == "T" else (args.base_t, value)
            point = measure_point(setup, t, depth, args.repeats)
            point["peak_mib"] = peak(args, t, depth)
            series[axis].append(point)
            print(f"{axis}: T={t} depth={depth} {point['epoch_s']} {point['peak_mib']}", file=sys.stderr)
    series = {axis: points for axis, points in series.items() if points}
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "series": series, "fits": fits(series)}
    publish("cost_growth", result, report(result), quick=args.quick, out=args.out)
    return result


if __name__ == "__main__":
    main()
