"""Conversion at low T: a converted SNN against its own ANN, plain IF neurons against signed ones.

For every (split seed, seed) the conversion baseline's ANN is trained once, exactly as a trial of
`search_spaces/kd.yaml` trains it (QCFS, L = 8, spiking VGG-`--depth` of width 12 on mnist-5k,
4 epochs, Adam at `--lr`), and converted twice from the same weights: with plain IF neurons
(`conversion.neuron: if`) and with signed ones (`signed`, the default). Each SNN's test accuracy
at T in {1, 2, 4, 8} is measured on the same test images as the ANN's. With `--layers`, the
first run also prints, per layer, the ANN's mean activation against the SNN's mean output
(rate x threshold) over T = 4: where plain IF neurons over-fire.

    python benchmarks/conversion_fidelity.py --quick                 # split 0, seeds 1-2
    python benchmarks/conversion_fidelity.py                         # splits 0, 7, 13 x seeds 1-10
    python benchmarks/conversion_fidelity.py --depth 7 --lr 0.0108 --splits 0 --seeds 2 --layers
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchlib import fmt, publish, set_threads, table
from spikingjelly.activation_based import functional

from baselines.conversion_core import QCFS, ConvertedIF, convert
from harness.config.resolve import trial_config
from harness.data import load_splits
from harness.methods import TrialContext, create_method
from harness.training import accuracy

STEPS = (1, 2, 4, 8)


def trained_ann(split: int, seed: int, depth: int, lr: float, epochs: int, levels: int = 8):
    config = trial_config(
        {
            "method": "conversion",
            "dataset.name": "mnist-5k",
            "dataset.split_seed": split,
            "seed": seed,
            "student.arch": "vgg",
            "student.depth": depth,
            "student.width": 12,
            "train.epochs": epochs,
            "train.lr": lr,
            "conversion.levels": levels,
        }
    )
    torch.manual_seed(seed)
    data = load_splits(config.dataset, torch.device("cpu"), time_bins=4)
    ctx = TrialContext(config, data, torch.device("cpu"), Path("/nonexistent"), lambda _: None)
    method = create_method("conversion", ctx)
    for epoch in range(1, epochs + 1):
        method.train_one_epoch(epoch)
    return method, data


def layer_table(ann, snn, images: torch.Tensor) -> str:
    """Per layer: threshold, the ANN's mean activation, the SNN's mean output over T = 4."""
    means: dict[str, dict[str, float]] = {"ann": {}, "snn": {}}
    handles = []
    for kind, net, cls in (("ann", ann, QCFS), ("snn", snn, ConvertedIF)):
        for name, module in net.named_modules():
            if isinstance(module, cls):

                def keep(_m, _i, out, kind=kind, name=name):
                    means[kind][name] = out.float().mean().item()

                handles.append(module.register_forward_hook(keep))
    with torch.no_grad():
        ann(images, 1)
        snn(images, 4)
    functional.reset_net(snn)
    for handle in handles:
        handle.remove()
    thresholds = {name: m.threshold.item() for name, m in ann.named_modules() if isinstance(m, QCFS)}
    rows = [
        [name, fmt(thresholds[name], 3), fmt(means["ann"][name], 3), fmt(means["snn"][name], 3)] for name in thresholds
    ]
    return table(["layer", "lambda", "ANN mean", "SNN mean (rate x theta), T = 4"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="split 0, seeds 1-2")
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 7, 13])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--levels", type=int, default=8, help="QCFS levels L")
    parser.add_argument("--layers", action="store_true", help="per-layer means of the first run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    splits, seeds = ([0], [1, 2]) if args.quick else (args.splits, args.seeds)
    runs, rows = [], []
    for split in splits:
        for seed in seeds:
            method, data = trained_ann(split, seed, args.depth, args.lr, args.epochs, args.levels)
            ann = method.ann.eval()
            x, y = data.test_x, data.test_y
            run = {"split": split, "seed": seed, "ann": accuracy(ann, x, y, time_steps=1, batch_size=1000)}
            for neuron in ("if", "signed"):
                snn = convert(ann, None, signed=neuron == "signed")
                snn.encoder = ann.encoder
                for t in STEPS:
                    run[f"{neuron}/T{t}"] = accuracy(snn, x, y, time_steps=t, batch_size=1000)
                if args.layers and not runs and neuron == "if":
                    print(layer_table(ann, snn, x[:500]))
            runs.append(run)
            gaps = [run["ann"] - run[f"{n}/T4"] for n in ("if", "signed")]
            rows.append(
                [split, seed, fmt(run["ann"], 3), *(fmt(run[f"if/T{t}"], 3) for t in STEPS)]
                + [*(fmt(run[f"signed/T{t}"], 3) for t in STEPS), fmt(100 * gaps[0], 1), fmt(100 * gaps[1], 1)]
            )
    headers = ["split", "seed", "ANN", *(f"IF T={t}" for t in STEPS), *(f"signed T={t}" for t in STEPS)]
    summary = table([*headers, "IF gap (pts)", "signed gap (pts)"], rows)
    worst = {n: max(r["ann"] - r[f"{n}/T4"] for r in runs) for n in ("if", "signed")}
    summary += (
        f"\n\nlargest gap to the ANN at T = 4: IF {100 * worst['if']:.1f} points, signed {100 * worst['signed']:.1f}"
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
