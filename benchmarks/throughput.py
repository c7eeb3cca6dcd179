"""Trial throughput: the harness's student training step against the hand-written reference.

For each T and student depth (ResNet, `student.width` 16, batch 128, direct training's
cross-entropy loss, Adam), one timed unit is `--batches` training batches:

* `harness`: `harness.training.train_one_epoch` with `DirectMethod`'s loss on the
  tensor-resident training split (what every kd/direct trial runs), `train.augment: none`
  because the reference does not augment;
* `reference`: `benchmarks/reference.py`, spikingjelly's own layers and `LIFNode`, a
  `DataLoader`, `.item()` per batch;
* at the headline configuration also `harness-sj-lif`: the harness with spikingjelly's
  plain `LIFNode` instead of `FastLIFNode`, to attribute the gain.

Contenders alternate in one process (benchlib.interleaved); samples/s are medians over
repeats, the ratio is the median of per-repeat ratios. Peak memory per configuration is
measured in child processes (benchlib docstring) and, independent of the allocator, as the
bytes autograd saves for the backward pass. `--amp bf16` (CUDA only) runs both contenders
under bf16 autocast with the neurons' input cast back to fp32, so membrane potentials
integrate in fp32 and only convolutions and the classifier run in bf16.

    python benchmarks/throughput.py --quick         # T=4, depth 8 (the headline ratio)
    python benchmarks/throughput.py                 # T in {1,2,4,8} x depth in {8,14,20}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    Timing,
    child_json,
    fmt,
    interleaved,
    measure_peak_memory,
    median,
    paired_ratio,
    publish,
    set_threads,
    table,
    timed,
)
from reference import SpikingResNet, make_loader, train_epoch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from baselines.direct import DirectMethod
from harness.config.resolve import trial_config as config_of
from harness.config.sections import TrialConfig
from harness.context import network_for
from harness.data import DataSplits
from harness.methods import TrialContext
from harness.models import SpikingNetwork, make_lif
from harness.models.encoders import DirectEncoding
from harness.trial import load_trial_data, resolve_device

HEADLINE = (4, 8)  # (T, depth) of throughput_ratio


class PlainLIFDirect(DirectMethod):
    """The harness's direct-training method with spikingjelly's unmodified `LIFNode`."""

    def build_network(self) -> SpikingNetwork:
        snn = self.ctx.config.snn
        lif = make_lif(tau=snn.tau, v_threshold=snn.v_threshold, reset=snn.reset, surrogate_name=snn.surrogate,
                       surrogate_alpha=snn.surrogate_alpha, detach_reset=snn.detach_reset, fused=False)  # fmt: skip
        return network_for(self.ctx, self.ctx.config.student, lif)


@dataclass
class Setup:
    """Data and settings shared by every contender of one run."""

    data: DataSplits
    device: torch.device
    batch_size: int
    batches: int
    amp: str
    dataset: str
    width: int

    @property
    def samples(self) -> int:
        return min(len(self.data.train_x), self.batch_size * self.batches)


def normalized(data: DataSplits, images: torch.Tensor) -> torch.Tensor:
    """The images as the reference loop's pre-normalised dataset holds them."""
    return DirectEncoding(data.mean, data.std).to(images.device).normalize(images)


def trial_config(setup: Setup, depth: int, time_steps: int, **extra: Any) -> TrialConfig:
    """The direct-training trial config of one benchmark point."""
    flat = {
        "method": "direct",
        "dataset.name": setup.dataset,
        "student.depth": depth,
        "student.width": setup.width,
        "snn.time_steps": time_steps,
        "train.batch_size": setup.batch_size,
        "train.augment": "none",
        "train.device": setup.device.type,
        **extra,
    }
    return config_of(flat)


@contextlib.contextmanager
def autocast(setup: Setup) -> Iterator[None]:
    """bf16 autocast on CUDA when asked for, else nothing."""
    if setup.amp == "bf16" and setup.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def fp32_neurons(net: nn.Module) -> None:
    """Casts every spiking neuron's input to fp32 (membranes integrate in fp32 under autocast)."""
    for module in net.modules():
        if isinstance(module, sj_neuron.BaseNode):
            module.register_forward_pre_hook(lambda _, args: (args[0].float(), *args[1:]))


def harness_unit(setup: Setup, depth: int, time_steps: int, plain_lif: bool = False, **extra: Any):
    """A callable timing `setup.batches` harness training batches, and the network it trains."""
    config = trial_config(setup, depth, time_steps, **extra)
    ctx = TrialContext(config, setup.data, setup.device, Path("unused-teacher-cache"), lambda _: None)
    method = (PlainLIFDirect if plain_lif else DirectMethod)(ctx)
    if setup.amp == "bf16":
        fp32_neurons(method.student)
    x, y = setup.data.train_x[: setup.samples], setup.data.train_y[: setup.samples]

    def run() -> None:
        with autocast(setup):
            method.fitting.epoch(method.loss, x, y, 1)

    return lambda: timed(run), method.student


def reference_unit(setup: Setup, depth: int, time_steps: int, seed: int = 0):
    """A callable timing `setup.batches` reference training batches, and the network it trains."""
    data = setup.data
    torch.manual_seed(seed)
    net = SpikingResNet(depth, setup.width, data.in_channels, data.num_classes, data.image_shape[0], time_steps)
    net = net.to(setup.device)
    if setup.amp == "bf16":
        fp32_neurons(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=1e-4)
    # A researcher's data: a CPU TensorDataset, moved to the device batch by batch.
    x, y = data.train_x[: setup.samples].cpu(), data.train_y[: setup.samples].cpu()
    loader = make_loader(x, y, data.mean[0], data.std[0], setup.batch_size, seed)

    def run() -> None:
        with autocast(setup):
            train_epoch(net, loader, optimizer, setup.device)

    return lambda: timed(run), net


def saved_mib(net: nn.Module, setup: Setup, time_steps: int, harness: bool) -> float:
    """MiB that autograd saves for the backward pass of one training batch's forward."""
    from spikingjelly.activation_based import functional

    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    images = setup.data.train_x[: setup.batch_size]  # the harness's network normalises them itself
    net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(setup):
        out = net(images, time_steps).mean(0) if harness else net(normalized(setup.data, images))
    del out
    functional.reset_net(net)
    return total / 2**20


def measure_point(setup: Setup, time_steps: int, depth: int, repeats: int, attribute: bool) -> dict[str, Any]:
    """Throughput of every contender at one (T, depth); `attribute` adds `harness-sj-lif`."""
    harness_run, harness_net = harness_unit(setup, depth, time_steps)
    reference_run, reference_net = reference_unit(setup, depth, time_steps)
    contenders: dict[str, Callable[[], Timing]] = {"harness": harness_run, "reference": reference_run}
    if (time_steps, depth) == HEADLINE and attribute:
        contenders["harness-sj-lif"] = harness_unit(setup, depth, time_steps, plain_lif=True)[0]
    for run in contenders.values():  # warm-up (allocator, kernels); not counted
        run()
    timings = interleaved(contenders, repeats)
    runs = {name: [setup.samples / t.wall for t in values] for name, values in timings.items()}
    cpu = {name: [setup.samples / t.cpu for t in values] for name, values in timings.items()}
    point: dict[str, Any] = {
        "T": time_steps,
        "depth": depth,
        "samples_per_s": {name: median(values) for name, values in runs.items()},
        "runs": runs,
        "ratio": paired_ratio(runs["harness"], runs["reference"]),
        "cpu_samples_per_s": {name: median(values) for name, values in cpu.items()},
        "cpu_ratio": paired_ratio(cpu["harness"], cpu["reference"]),
        "saved_mib": {
            "harness": saved_mib(harness_net, setup, time_steps, True),
            "reference": saved_mib(reference_net, setup, time_steps, False),
        },
    }
    if "harness-sj-lif" in runs:
        point["ratio_fast_lif"] = paired_ratio(runs["harness"], runs["harness-sj-lif"])
        point["cpu_ratio_fast_lif"] = paired_ratio(cpu["harness"], cpu["harness-sj-lif"])
    return point


def peak_memory(setup: Setup, args: argparse.Namespace, time_steps: int, depth: int) -> dict[str, float]:
    """Peak memory growth (MiB) of a few training batches, per contender."""
    if setup.device.type == "cuda":  # in-process figures are exact on CUDA
        return {
            "harness": measure_peak_memory(harness_unit(setup, depth, time_steps)[0], setup.device),
            "reference": measure_peak_memory(reference_unit(setup, depth, time_steps)[0], setup.device),
        }
    script = Path(__file__).resolve()
    common = ["--dataset", args.dataset, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
              "--width", str(args.width), "--device", args.device]  # fmt: skip
    return {
        impl: child_json(script, [*common, "--memory-child", impl, str(time_steps), str(depth)])["peak_mib"]
        for impl in ("harness", "reference")
    }


def memory_child(setup: Setup, impl: str, time_steps: int, depth: int) -> None:
    """In a fresh process: peak memory growth of one training batch; prints JSON.

    `impl` is `harness`, `harness-checkpoint` (train.checkpoint_activations) or `reference`.
    A warm-up batch runs first, so one-time costs (lazy imports such as torch._dynamo's under
    torch.utils.checkpoint, the optimiser's state, oneDNN's primitive caches) are left out.
    """
    setup.batches = 1
    if impl == "reference":
        run = reference_unit(setup, depth, time_steps)[0]
    else:
        extra = {"train.checkpoint_activations": True} if impl == "harness-checkpoint" else {}
        run = harness_unit(setup, depth, time_steps, **extra)[0]
    run()  # warm-up, not measured
    print(json.dumps({"peak_mib": measure_peak_memory(run, setup.device)}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the headline point, no memory, fewer repeats")
    parser.add_argument("--dataset", default="mnist-5k", help="digits or mnist-5k (default)")
    parser.add_argument("--time-steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 14, 20])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=1, help="training batches per timed unit")
    parser.add_argument("--repeats", type=int, default=4, help="timed units per contender")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--amp", default="none", choices=["none", "bf16"], help="bf16 autocast (CUDA only)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/throughput.json)")
    parser.add_argument("--memory-child", nargs=3, metavar=("IMPL", "T", "DEPTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # the headline ratio only: no memory children, one batch per unit
        args.time_steps, args.depths = [HEADLINE[0]], [HEADLINE[1]]
        args.batches, args.repeats, args.no_memory = 1, 6, True
    return args


def make_setup(args: argparse.Namespace) -> Setup:
    """Loads the data onto the device once for every contender."""
    set_threads(args.threads)
    device = resolve_device(args.device)
    config = config_of({"dataset.name": args.dataset})
    data = load_trial_data(config, device)
    amp = args.amp if device.type == "cuda" else "none"
    return Setup(data, device, args.batch_size, args.batches, amp, args.dataset, args.width)


def report(result: dict[str, Any]) -> str:
    """The Markdown table of a run."""
    rows = []
    for p in result["points"]:
        sps, mem = p["samples_per_s"], p.get("peak_mib", {})
        rows.append([p["T"], p["depth"], fmt(sps["harness"], 1), fmt(sps["reference"], 1), fmt(p["ratio"]),
                     fmt(p["cpu_ratio"]),
                     fmt(mem.get("harness", float("nan")), 0), fmt(mem.get("reference", float("nan")), 0),
                     fmt(p["saved_mib"]["harness"], 0), fmt(p["saved_mib"]["reference"], 0)])  # fmt: skip
    headers = ["T", "depth", "harness samples/s", "reference samples/s", "ratio", "CPU-time ratio", "harness peak MiB",
               "reference peak MiB", "harness saved MiB", "reference saved MiB"]  # fmt: skip
    return table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup = make_setup(args)
    if args.memory_child:
        impl, t, depth = args.memory_child
        memory_child(setup, impl, int(t), int(depth))
        return {}
    points = []
    for depth in args.depths:
        for t in args.time_steps:
            point = measure_point(setup, t, depth, args.repeats, attribute=not args.quick)
            if not args.no_memory:
                point["peak_mib"] = peak_memory(setup, args, t, depth)
            points.append(point)
            print(f"T={t} depth={depth}: ratio {point['ratio']:.3f} {point['samples_per_s']}", file=sys.stderr)
    headline = next((p for p in points if (p["T"], p["depth"]) == HEADLINE), points[0])
    result = {
        "settings": {k: str(v) for k, v in vars(args).items() if k != "memory_child"},
        "device": str(setup.device),
        "amp": setup.amp,
        "points": points,
        "throughput_ratio": headline["ratio"],
        "fast_lif_ratio": headline.get("ratio_fast_lif", float("nan")),
    }
    publish("throughput", result, report(result), quick=args.quick, out=args.out, headline="throughput_ratio")
    return result


if __name__ == "__main__":
    main()
