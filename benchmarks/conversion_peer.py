"""A peer check of the conversion baseline: the harness's converter against spikingjelly's
`ann2snn.Converter`, on the same trained ANN and the same test images.

For each seed a plain ReLU ANN (the conversion baseline's `conversion.variant: max` network:
spiking VGG-`--depth` of width 12 with average pooling, mnist-5k, `--epochs` epochs of Adam at
`--lr`) is trained once, exactly as a trial trains it. It is then converted seven ways:

- spikingjelly 2.0 `ann2snn.Converter(RateCodingRecipe(dataloader, mode="Max" | "99.9%"))` on a
  single-step copy of the ANN (the same layers as an `nn.Sequential`, which torch.fx can trace;
  it is given the normalised images the harness's network normalises itself), run step by step
  with `functional.reset_net` before every batch, as its MNIST example does; and `Max` with
  `neuron_factory` giving `HalfThresholdIFNode` (the membrane starting at theta/2, as ours);
- the harness's `convert` with thresholds from `activation_thresholds` (`max`, `percentile`
  99.9) and plain IF neurons (`conversion.neuron: if`), with `max` and signed IF neurons, and
  with `max`, plain IF neurons and membranes calibrated for T = 4 (`calibrate_membranes` on
  `conversion.calibration_images`' default of 256 training images).

Both converters calibrate on the same 1,024 training images and fold BatchNorm. The accuracy
after T steps is read for T in `--steps` on the mnist-5k test split. The harness's default
(QCFS) is not a threshold-balancing converter and is measured by `conversion_fidelity.py`.

    python benchmarks/conversion_peer.py --quick          # seed 1, T up to 16
    python benchmarks/conversion_peer.py                  # seeds 1-3, T in 1..64
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from benchlib import fmt, publish, set_threads, table
from conversion_fidelity import trained_ann
from spikingjelly.activation_based import ann2snn, functional, neuron
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from baselines.conversion_core import activation_thresholds, calibrate_membranes, calibration_subset, convert
from harness.models import SpikingNetwork
from harness.training import accuracy

STEPS = (1, 2, 4, 8, 16, 32, 64)
CALIBRATION = 1024  # images, as `activation_thresholds` uses (8 batches of 128)


def single_step(network: SpikingNetwork) -> nn.Sequential:
    """The ANN's layers in order as one `nn.Sequential` over normalised images `[B, ...]` (what
    torch.fx traces): stem, every stage's layers, global average pooling, classifier. Equal to
    `network(x, 1)[0]` on `network.encoder.normalize(x)`."""
    layers: list[nn.Module] = [*network.stem, network.stem_act]
    for stage in network.body.values():
        for module in stage:
            layers += list(module) if isinstance(module, SeqToANNContainer) else [module]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), network.classifier]
    return nn.Sequential(*copy.deepcopy(layers)).eval()


@torch.no_grad()
def stepwise_curve(snn: nn.Module, x: Tensor, y: Tensor, steps: tuple[int, ...], batch_size: int = 500) -> list[float]:
    """Accuracy of a single-step SNN (spikingjelly's convention) after each T of `steps`, read off
    one run of max(steps) steps per batch."""
    correct = torch.zeros(len(steps))
    for start in range(0, len(x), batch_size):
        images, labels = x[start : start + batch_size], y[start : start + batch_size]
        functional.reset_net(snn)
        total = None
        for t in range(1, max(steps) + 1):
            out = snn(images)
            total = out if total is None else total + out
            if t in steps:
                correct[steps.index(t)] += (total.argmax(1) == labels).sum()
    functional.reset_net(snn)
    return (correct / len(x)).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 1, T up to 16")
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    seeds, steps = ([1], STEPS[:5]) if args.quick else (args.seeds, STEPS)
    converters = (
        "spikingjelly Max",
        "spikingjelly 99.9%",
        "spikingjelly Max, v0 = theta/2",
        "harness max, IF",
        "harness 99.9, IF",
        "harness max, signed",
        "harness max, IF, calibrated for T = 4",
    )
    curves: dict[str, list[list[float]]] = {name: [] for name in converters}
    anns = []
    for seed in seeds:
        method, data = trained_ann(args.split, seed, args.depth, args.lr, args.epochs, variant="max")
        ann = method.ann.eval()
        x, y = data.test_x, data.test_y
        flat, normalised = single_step(ann), ann.encoder.normalize(x)
        with torch.no_grad():
            assert torch.allclose(flat(normalised[:64]), ann(x[:64], 1)[0], atol=1e-5), "single-step copy differs"
        anns.append(accuracy(ann, x, y, time_steps=1, batch_size=1000))
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[:CALIBRATION]
        calibration = [(ann.encoder.normalize(b), torch.zeros(len(b))) for b in data.train_x[order].split(128)]
        for mode, half, name in (
            ("Max", False, "spikingjelly Max"),
            ("99.9%", False, "spikingjelly 99.9%"),
            ("Max", True, "spikingjelly Max, v0 = theta/2"),
        ):
            factory = (lambda _scale: neuron.HalfThresholdIFNode()) if half else None
            recipe = ann2snn.RateCodingRecipe(dataloader=calibration, mode=mode, neuron_factory=factory)
            snn = ann2snn.Converter(recipe, device="cpu").convert(copy.deepcopy(flat)).eval()
            curves[name].append(stepwise_curve(snn, normalised, y, steps))
        for mode, signed, calibrated, name in (
            ("max", False, False, "harness max, IF"),
            ("percentile", False, False, "harness 99.9, IF"),
            ("max", True, False, "harness max, signed"),
            ("max", False, True, "harness max, IF, calibrated for T = 4"),
        ):
            snn = convert(ann, activation_thresholds(ann, data.train_x, mode=mode), signed=signed)
            snn.encoder = ann.encoder
            if calibrated:
                calibrate_membranes(snn, ann, calibration_subset(data.train_x, 256), 4)
            curves[name].append([accuracy(snn, x, y, time_steps=t, batch_size=1000) for t in steps])
    mean = {name: [sum(c[i] for c in runs) / len(runs) for i in range(len(steps))] for name, runs in curves.items()}
    rows = [[name, *(fmt(v, 3) for v in values)] for name, values in mean.items()]
    ann_mean = sum(anns) / len(anns)
    summary = table(["converter", *(f"T={t}" for t in steps)], rows)
    summary += (
        f"\n\nmean over seeds {', '.join(map(str, seeds))} (split {args.split}); the ANNs: {ann_mean:.3f} "
        f"({', '.join(f'{a:.3f}' for a in anns)})"
    )
    result = {"depth": args.depth, "lr": args.lr, "epochs": args.epochs, "seeds": seeds, "steps": list(steps)}
    result |= {"ann": anns, "curves": curves, "mean": mean}
    publish("conversion_peer", result, summary, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
