"""Conversion at low T: a converted SNN against its own ANN, four ways of converting it.

For every (split seed, seed) the conversion baseline's ANN is trained once, exactly as a trial of
`search_spaces/kd.yaml` trains it (QCFS, L = `--levels`, spiking VGG-`--depth` of width 12 on
mnist-5k, 4 epochs, Adam at `--lr`; the defaults are the configuration whose plain-IF network
collapsed, BENCHMARKS.md section 6), and converted four ways from the same weights: plain IF
neurons (`conversion.neuron: if`) and signed ones (`signed`), each without and with the bias
calibration (`conversion.calibration_images`, 256 training images, for T = 4). The shipped
default is plain IF, calibrated; the script checks that it is what the conversion baseline's
own `network()` gives. Each SNN's test accuracy at T in {1, 2, 4, 8} is measured on the same
test images as the ANN's.

    python benchmarks/conversion_fidelity.py --quick                 # split 0, seeds 1-2
    python benchmarks/conversion_fidelity.py                         # splits 0, 7, 13 x seeds 1-10
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import fmt, publish, set_threads, table

from baselines.conversion_core import calibrate_membranes, calibration_subset, convert
from harness.config.resolve import trial_config
from harness.data import load_splits
from harness.methods import TrialContext, create_method
from harness.training import accuracy

STEPS = (1, 2, 4, 8, 16)


def trained_ann(
    split: int,
    seed: int,
    depth: int,
    lr: float,
    epochs: int,
    levels: int = 8,
    variant: str = "qcfs",
    arch: str = "vgg",
    prepare: Callable[[Any], None] | None = None,
):
    """The conversion baseline's ANN of one trial, trained (`conversion.variant` `qcfs` or, for
    threshold balancing, a ReLU ANN with `max`), and the trial's data. `prepare(method)` runs
    before the first epoch (a diagnosis that trains a variant changes the ANN there)."""
    config = trial_config(
        {
            "method": "conversion",
            "dataset.name": "mnist-5k",
            "dataset.split_seed": split,
            "seed": seed,
            "student.arch": arch,
            "student.depth": depth,
            "student.width": 12,
            "train.epochs": epochs,
            "train.lr": lr,
            "conversion.levels": levels,
            "conversion.variant": variant,
        }
    )
    torch.manual_seed(seed)
    data = load_splits(config.dataset, torch.device("cpu"), time_bins=4)
    ctx = TrialContext(config, data, torch.device("cpu"), Path("/nonexistent"), lambda _: None)
    method = create_method("conversion", ctx)
    if prepare is not None:
        prepare(method)
    for epoch in range(1, epochs + 1):
        method.train_one_epoch(epoch)
    return method, data


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.pstdev(values):.3f}"


VARIANTS = {  # name -> (signed spikes, bias calibrated)
    "IF": (False, False),
    "signed": (True, False),
    "IF, calibrated": (False, True),
    "signed, calibrated": (True, True),
}
SHIPPED = "IF, calibrated"


def spiking(method: Any, data: Any, signed: bool, calibrated: bool, time_steps: int = 4) -> Any:
    """The conversion baseline's ANN converted one way (calibrated as the baseline calibrates)."""
    ann = method.ann.eval()
    snn = convert(ann, None, signed=signed)
    snn.encoder = ann.encoder
    if calibrated:
        images = calibration_subset(data.train_x, method.ctx.config.options.calibration_images)
        calibrate_membranes(snn, ann, images, time_steps)
    return snn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="split 0, seeds 1-2")
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 7, 13])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01827471394292857)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--levels", type=int, default=4, help="QCFS levels L")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    splits, seeds = ([0], [1, 2]) if args.quick else (args.splits, args.seeds)
    runs, rows = [], []
    for split in splits:
        for seed in seeds:
            method, data = trained_ann(split, seed, args.depth, args.lr, args.epochs, args.levels)
            x, y = data.test_x, data.test_y
            run = {
                "split": split,
                "seed": seed,
                "ann": accuracy(method.ann.eval(), x, y, time_steps=1, batch_size=1000),
            }
            for name, (signed, calibrated) in VARIANTS.items():
                snn = spiking(method, data, signed, calibrated)
                for t in STEPS if calibrated else (4,):
                    run[f"{name}/T{t}"] = accuracy(snn, x, y, time_steps=t, batch_size=1000)
            shipped = accuracy(method.network(), x, y, time_steps=4, batch_size=1000)
            assert abs(shipped - run[f"{SHIPPED}/T4"]) < 1e-6, "the baseline's network is not the shipped variant"
            runs.append(run)
            rows.append([split, seed, fmt(run["ann"], 3), *(fmt(run[f"{n}/T4"], 3) for n in VARIANTS)])
    headers = ["split", "seed", "ANN", *(f"{n} T=4" for n in VARIANTS)]
    summary = table(headers, rows)
    calibrated = [n for n, (_, cal) in VARIANTS.items() if cal]
    summary += "\n\nThe calibrated networks' T curves, mean ± std over the runs:\n\n" + table(
        ["network", *(f"T={t}" for t in STEPS)],
        [[n, *(_mean_std([r[f"{n}/T{t}"] for r in runs]) for t in STEPS)] for n in calibrated],
    )
    worst = {n: max(r["ann"] - r[f"{n}/T4"] for r in runs) for n in VARIANTS}
    summary += "\n\nlargest gap to the ANN at T = 4, points: " + ", ".join(
        f"{n} {100 * gap:.1f}" for n, gap in worst.items()
    )
    result = {
        "depth": args.depth,
        "lr": args.lr,
        "epochs": args.epochs,
        "levels": args.levels,
        "runs": runs,
        "worst_gap_t4": worst,
    }
    publish("conversion_fidelity", result, summary, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
