"""Why converted networks collapsed at low T: each suspect of the conversion baseline, measured.

The configuration is the documented collapse (BENCHMARKS.md, section 6): the conversion
baseline's QCFS ANN of `search_spaces/kd.yaml` before the fix (spiking VGG-5 of width 12,
L = 4, Adam at 0.0183, 4 epochs, mnist-5k split 0), where seed 2's plain-IF network fell to
0.381 at T = 4 against its ANN's 0.958. For each seed the ANN is trained once per training-time
variant, and converted several ways from the same weights:

- **neuron, initial membrane and calibration** (conversion time): plain IF starting at theta/2
  (QCFS's pairing, the baseline before the fix), plain IF starting at 0 (spikingjelly's
  default), signed IF (`conversion.neuron: signed`), and plain or signed IF with membranes
  calibrated on 256 training images for T = L (`conversion.calibration_images`,
  `calibrate_membranes`), against the same calibration as an input offset at every step;
- **BN folding** (conversion time): BatchNorm folded into the convolution before it, against
  kept as a layer of its own in the spiking network (folding is exact algebra: any difference is
  rounding);
- **per layer** (the worst seed): the ANN's mean activation against the SNN's mean output (rate x
  threshold) at T = L, and the mean absolute error between them per neuron, which shows where
  the error enters: the first layer gets the same analog input at every step, so its IF count
  is exactly the QCFS level at T = L, and the error starts one layer later;
- **the learned thresholds lambda** per layer over the seeds;
- **the shift term** (training time): QCFS's phi = 1/2 against phi = 0 (with the membrane
  starting at 0, the pairing that makes phi = 0 exact);
- **pooling** (training time): the ANN trained with max pooling, converted with average
  pooling in its place (a max of spike trains is not the spike train of the max);
- **the residual path** (training time): a spiking ResNet-8 instead of the VGG-5;
- **L against T** (training time): L in {2, 4, 8, 16}, read at every T of `--steps`.

    python benchmarks/conversion_diagnosis.py --quick    # seeds 1-2, fewer variants
    python benchmarks/conversion_diagnosis.py            # seeds 1-5
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import fmt, publish, set_threads, table
from conversion_fidelity import trained_ann
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from baselines.conversion_core import (
    QCFS,
    ConvertedIF,
    SignedIF,
    _channel_means,
    _converted_names,
    calibrate_membranes,
    calibration_subset,
    fold_batchnorm,
)
from harness.models import SpikingNetwork
from harness.training import accuracy

STEPS = (1, 2, 4, 8, 16)
LEVELS = 4
NEURONS = {  # name -> (start of the membrane as a fraction of theta, signed spikes, calibration)
    "IF, v0 = theta/2": (0.5, False, None),
    "IF, v0 = 0": (0.0, False, None),
    "signed IF": (0.5, True, None),
    "IF, calibrated membranes": (0.5, False, "charge"),
    "signed IF, calibrated membranes": (0.5, True, "charge"),
    "IF, calibrated input offsets": (0.5, False, "offset"),
}
CALIBRATION_IMAGES = 256
LAYER_NETWORKS = ("IF, v0 = theta/2", "signed IF", "IF, calibrated membranes")
LEVEL_NETWORKS = (("IF", False, None), ("signed", True, None), ("IF, calibrated", False, "charge"))


class DiagnosticIF(ConvertedIF):
    """An IF neuron of a converted network whose membrane starts at `start * theta`, optionally
    signed, with an optional per-channel input `offset` at every step: `ConvertedIF` with start
    1/2, `SignedIF` with start 1/2 and `signed` (checked); `charge` as `ConvertedIF`'s."""

    def __init__(self, threshold: float, start: float, signed: bool) -> None:
        super().__init__(threshold)
        self.start, self.signed = start, signed
        self.offset: Tensor | None = None

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:  # type: ignore[override]
        theta = float(self.v_threshold)
        v = self.initial_membrane(x_seq[0]) + (self.start - 0.5) * theta
        count = torch.zeros_like(x_seq[0])
        spikes = []
        for x in x_seq:
            v = v + (x if self.offset is None else x + self.offset)
            spike = (v >= theta).to(x.dtype)
            if self.signed:
                spike = spike - ((v < 0) & (count > 0)).to(x.dtype)
            v = v - spike * theta
            count = count + spike
            spikes.append(spike)
        return torch.stack(spikes)


def calibrate_offsets(snn: SpikingNetwork, ann: SpikingNetwork, images: Tensor, time_steps: int) -> None:
    """The alternative to `calibrate_membranes` that was measured and not shipped: the same
    per-channel mean difference, added to the input at every step (bias correction) instead of
    once to the membrane."""
    names = _converted_names(ann)
    targets = _channel_means(ann.eval(), names, images, 1, 256)
    for name in names:
        got = _channel_means(snn, [name], images, time_steps, 256, stop=True)[name]
        snn.get_submodule(name).offset = targets[name] - got


def converted(
    ann: SpikingNetwork,
    start: float,
    signed: bool,
    fold: bool = True,
    calibration: str | None = None,
    images: Tensor | None = None,
) -> SpikingNetwork:
    """`baselines.conversion_core.convert` with a `DiagnosticIF` per QCFS, folding optional, and
    calibrated on `images` for T = L (`charge`: the shipped membrane calibration; `offset`)."""
    snn = fold_batchnorm(ann) if fold else copy.deepcopy(ann).eval()
    for name, module in list(snn.named_modules()):
        if isinstance(module, QCFS):
            snn.set_submodule(name, DiagnosticIF(module.threshold.item(), start, signed))
    snn.encoder = ann.encoder
    if calibration == "charge":
        calibrate_membranes(snn, ann, images, LEVELS)
    elif calibration == "offset":
        calibrate_offsets(snn, ann, images, LEVELS)
    return snn.eval()


def curve(snn: SpikingNetwork, x: Tensor, y: Tensor, steps: tuple[int, ...]) -> dict[int, float]:
    return {t: accuracy(snn, x, y, time_steps=t, batch_size=1000) for t in steps}


def swap_pools(network: nn.Module, to: type[nn.Module]) -> None:
    """Replaces every 2-d average or max pooling of `network` by `to` of the same window."""
    for module in network.modules():
        if isinstance(module, SeqToANNContainer):
            for index, layer in enumerate(module):
                if isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
                    module[index] = to(layer.kernel_size)


def set_shift(shift: float) -> Callable[[Any], None]:
    def prepare(method: Any) -> None:
        for module in method.ann.modules():
            if isinstance(module, QCFS):
                module.shift = shift

    return prepare


def per_layer(ann: SpikingNetwork, snns: dict[str, SpikingNetwork], images: Tensor, t: int) -> list[dict[str, Any]]:
    """Per QCFS layer: lambda, the ANN's mean output, and each SNN's mean output over t steps and
    its mean absolute error against the ANN, neuron by neuron."""
    outputs: dict[str, dict[str, Tensor]] = {"ANN": {}, **{name: {} for name in snns}}
    handles = []
    for kind, net, cls in (("ANN", ann, QCFS), *((name, snn, ConvertedIF) for name, snn in snns.items())):
        for name, module in net.named_modules():
            if isinstance(module, cls):

                def keep(_m, _i, out, kind=kind, name=name):
                    outputs[kind][name] = out.float().mean(0)

                handles.append(module.register_forward_hook(keep))
    with torch.no_grad():
        ann(images, 1)
        for snn in snns.values():
            snn(images, t)
            functional.reset_net(snn)
    for handle in handles:
        handle.remove()
    rows = []
    for name, module in ann.named_modules():
        if isinstance(module, QCFS):
            reference = outputs["ANN"][name]
            row: dict[str, Any] = {"layer": name, "lambda": module.threshold.item(), "ann": reference.mean().item()}
            for kind in snns:
                row[f"{kind}/mean"] = outputs[kind][name].mean().item()
                row[f"{kind}/mae"] = (outputs[kind][name] - reference).abs().mean().item()
            rows.append(row)
    return rows


def diagnose_seed(args: argparse.Namespace, seed: int, steps: tuple[int, ...], quick: bool) -> dict[str, Any]:
    train = dict(split=args.split, seed=seed, depth=args.depth, lr=args.lr, epochs=args.epochs)
    record: dict[str, Any] = {"seed": seed}
    method, data = trained_ann(**train, levels=LEVELS)
    ann, (x, y) = method.ann.eval(), (data.test_x, data.test_y)
    record["ann"] = accuracy(ann, x, y, time_steps=1, batch_size=1000)
    record["lambda"] = {n: m.threshold.item() for n, m in ann.named_modules() if isinstance(m, QCFS)}
    images = calibration_subset(data.train_x, CALIBRATION_IMAGES)
    snns = {
        name: converted(ann, start, signed, calibration=calibration, images=images)
        for name, (start, signed, calibration) in NEURONS.items()
    }
    record["neurons"] = {name: curve(snn, x, y, steps) for name, snn in snns.items()}
    with torch.no_grad():  # the diagnostic neuron is the harness's, where they coincide
        for diagnostic, harness_neuron in (("IF, v0 = theta/2", ConvertedIF), ("signed IF", SignedIF)):
            theirs = copy.deepcopy(snns[diagnostic])
            for name, module in list(theirs.named_modules()):
                if isinstance(module, DiagnosticIF):
                    theirs.set_submodule(name, harness_neuron(float(module.v_threshold)))
            assert torch.equal(theirs(x[:200], 4), snns[diagnostic](x[:200], 4)), diagnostic
    unfolded = converted(ann, 0.5, False, fold=False)
    with torch.no_grad():
        gap = (unfolded(x, LEVELS).mean(0) - snns["IF, v0 = theta/2"](x, LEVELS).mean(0)).abs().max().item()
    record["fold"] = {
        "unfolded IF T=L": accuracy(unfolded, x, y, time_steps=LEVELS, batch_size=1000),
        "max logit gap": gap,
    }
    record["layers"] = per_layer(ann, {k: snns[k] for k in LAYER_NETWORKS}, x[:500], LEVELS)
    variants: dict[str, dict[str, Any]] = {}

    def variant(name: str, method: Any, starts: tuple[float, ...] = (0.5,)) -> None:
        net = method.ann.eval()
        entry = {"ann": accuracy(net, x, y, time_steps=1, batch_size=1000)}
        for start in starts:
            for signed in (False, True):
                label = f"{'signed' if signed else 'IF'}, v0 = {start:g} theta"
                entry[label] = accuracy(converted(net, start, signed), x, y, time_steps=LEVELS, batch_size=1000)
        calibrated = converted(net, 0.5, False, calibration="charge", images=images)
        entry["IF, calibrated membranes"] = accuracy(calibrated, x, y, time_steps=LEVELS, batch_size=1000)
        variants[name] = entry

    variant("phi = 0", trained_ann(**train, levels=LEVELS, prepare=set_shift(0.0))[0], starts=(0.0, 0.5))
    maxpool, _ = trained_ann(**train, levels=LEVELS, prepare=lambda m: swap_pools(m.ann, nn.MaxPool2d))
    max_ann = accuracy(maxpool.ann.eval(), x, y, time_steps=1, batch_size=1000)
    swap_pools(maxpool.ann, nn.AvgPool2d)
    variant("max pooling (ANN), average pooling converted", maxpool)
    variants["max pooling (ANN), average pooling converted"]["ANN with max pooling"] = max_ann
    if not quick:
        variant("ResNet-8 (residual path)", trained_ann(**train | {"depth": 8}, levels=LEVELS, arch="resnet")[0])
    record["variants"] = variants
    by_levels = {}
    for levels in (2, 8) if quick else (2, 8, 16):
        net = trained_ann(**train, levels=levels)[0].ann.eval()
        by_levels[levels] = {
            "ann": accuracy(net, x, y, time_steps=1, batch_size=1000),
            **{f"{kind}/T{t}": v for kind, signed, cal in LEVEL_NETWORKS
               for t, v in curve(converted(net, 0.5, signed, calibration=cal, images=images), x, y, steps).items()},
        }  # fmt: skip
    by_levels[LEVELS] = {"ann": record["ann"]} | {
        f"{kind}/T{t}": v
        for kind, name in (
            ("IF", "IF, v0 = theta/2"),
            ("signed", "signed IF"),
            ("IF, calibrated", "IF, calibrated membranes"),
        )
        for t, v in record["neurons"][name].items()
    }
    record["levels"] = dict(sorted(by_levels.items()))
    return record


def _mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def summarise(records: list[dict[str, Any]], steps: tuple[int, ...]) -> str:
    parts = []
    rows = [[r["seed"], fmt(r["ann"], 3), *(fmt(r["neurons"][n][LEVELS], 3) for n in NEURONS)] for r in records]
    parts.append(
        f"Neuron and initial membrane, T = {LEVELS} (= L):\n\n"
        + table(["seed", "ANN", *NEURONS], rows)
        + "\n\nMean over seeds, per T:\n\n"
        + table(
            ["neuron", *(f"T={t}" for t in steps)],
            [[n, *(_mean([r["neurons"][n][t] for r in records]) for t in steps)] for n in NEURONS],
        )
    )
    worst = max(records, key=lambda r: r["ann"] - r["neurons"]["IF, v0 = theta/2"][LEVELS])
    layer_rows = [
        [row["layer"], fmt(row["lambda"], 3), fmt(row["ann"], 3)]
        + [fmt(row[f"{k}/{m}"], 3) for k in LAYER_NETWORKS for m in ("mean", "mae")]
        for row in worst["layers"]
    ]
    parts.append(
        f"Per layer, seed {worst['seed']} (the largest IF gap), 500 test images, T = {LEVELS}:\n\n"
        + table(
            ["layer", "lambda", "ANN mean", *(f"{k} {m}" for k in LAYER_NETWORKS for m in ("mean", "MAE"))], layer_rows
        )
    )
    names = list(records[0]["lambda"])
    parts.append(
        "Learned thresholds lambda per layer over the seeds (min / median / max):\n\n"
        + table(
            ["layer", "min", "median", "max"],
            [
                [n, *(fmt(f([r["lambda"][n] for r in records]), 3) for f in (min, statistics.median, max))]
                for n in names
            ],
        )
    )
    folds = [r["fold"] for r in records]
    parts.append(
        f"BN folding: IF at T = {LEVELS} with BN kept as a layer {_mean([f['unfolded IF T=L'] for f in folds])} "
        f"against folded {_mean([r['neurons']['IF, v0 = theta/2'][LEVELS] for r in records])}; largest logit "
        f"difference {max(f['max logit gap'] for f in folds):.2e}"
    )
    variant_rows = []
    for name in records[0]["variants"]:
        for key in records[0]["variants"][name]:
            variant_rows.append([name, key, _mean([r["variants"][name][key] for r in records])])
    base = [["baseline (phi = 1/2, average pooling, VGG-5)", k, _mean([r["neurons"][n][LEVELS] for r in records])]
            for k, n in (("IF, v0 = 0.5 theta", "IF, v0 = theta/2"), ("signed, v0 = 0.5 theta", "signed IF"),
                         ("IF, calibrated membranes", "IF, calibrated membranes"))]  # fmt: skip
    base.insert(0, ["baseline (phi = 1/2, average pooling, VGG-5)", "ann", _mean([r["ann"] for r in records])])
    parts.append(
        f"Training-time variants, accuracy at T = {LEVELS}, mean ± std over seeds:\n\n"
        + table(["ANN trained with", "network", "accuracy"], base + variant_rows)
    )
    levels = list(records[0]["levels"])
    level_rows = []
    for level in levels:
        for kind, _, _ in LEVEL_NETWORKS:
            cells = [_mean([r["levels"][level][f"{kind}/T{t}"] for r in records]) for t in steps]
            level_rows.append([level, kind, _mean([r["levels"][level]["ann"] for r in records]), *cells])
    parts.append(
        "L against T (mean ± std over seeds):\n\n"
        + table(["L", "neuron", "ANN", *(f"T={t}" for t in steps)], level_rows)
    )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seeds 1-2, no ResNet, L in {2, 4, 8}, T up to 8")
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01827471394292857)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    seeds, steps = ([1, 2], STEPS[:4]) if args.quick else (args.seeds, STEPS)
    records = [diagnose_seed(args, seed, steps, args.quick) for seed in seeds]
    summary = summarise(records, steps)
    result = {"split": args.split, "depth": args.depth, "lr": args.lr, "epochs": args.epochs, "levels": LEVELS}
    result["records"] = records
    publish("conversion_diagnosis", result, summary, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
