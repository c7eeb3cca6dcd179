"""Ablations at the headline point (T=4, ResNet-8, width 16, batch 128, mnist-5k): what each
candidate speed change does to the harness's training step and evaluation on this machine.

Training-step variants (one timed unit = `--batches` batches of `Fitting.epoch`, interleaved):

* `harness`: as shipped (FastLIFNode, tensor-resident data, a NaN check every 20 batches);
* `spikingjelly-lif`: spikingjelly's own LIFNode instead of FastLIFNode;
* `channels-last`: the student's weights and input images in channels_last memory format;
* `item-every-batch`: the loss read back with `.item()` after every batch (a host sync);
* `torch-compile` (full mode only): `torch.compile` of the student; its first call (the
  compilation) is timed separately.

LIF kernel: forward + backward of one LIF layer of the student's first stage (`[4, 128, 16,
28, 28]`) with spikingjelly's LIFNode and with FastLIFNode at several `BLOCK` sizes (2**30:
whole tensors), its ops on one thread (`ONE_THREAD`, shipped) or on all, with torch set to
one and to two threads.

Evaluation variants (`predict_steps` over the validation split at T=4): under
`torch.inference_mode()` (as shipped), `torch.no_grad()`, and with autograd on (a loop that
forgets to turn it off).

    python benchmarks/ablations.py --quick
    python benchmarks/ablations.py
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from benchlib import Timing, fmt, interleaved, median, paired_ratio, publish, table, timed
from spikingjelly.activation_based import functional, neuron, surrogate
from throughput import HEADLINE, PlainLIFDirect, Setup, make_setup, trial_config

import harness.models.lif_cpu as lif_cpu
from baselines.direct import DirectMethod
from harness.methods import TrialContext

BLOCKS = (1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 20, 1 << 30)


def step_unit(setup: Setup, variant: str) -> Callable[[], Timing]:
    """A timed unit of training batches for one variant."""
    t, depth = HEADLINE
    ctx = TrialContext(trial_config(setup, depth, t), setup.data, setup.device, Path("unused"), lambda _: None)
    method = (PlainLIFDirect if variant == "spikingjelly-lif" else DirectMethod)(ctx)
    loss_fn = method.loss
    if variant == "channels-last":
        method.student.to(memory_format=torch.channels_last)
        loss_fn = lambda x, y: method.loss(x.contiguous(memory_format=torch.channels_last), y)  # noqa: E731
    elif variant == "item-every-batch":

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            loss = method.loss(x, y)
            loss.item()
            return loss

    elif variant == "torch-compile":
        method.student.forward = torch.compile(method.student.forward)  # type: ignore[method-assign]
    x, y = setup.data.train_x[: setup.samples], setup.data.train_y[: setup.samples]

    def run() -> None:
        method.fitting.epoch(loss_fn, x, y, 1)

    return lambda: timed(run)


def eval_unit(setup: Setup, mode: str) -> Callable[[], Timing]:
    """Timed evaluation of the validation split at T=4 under one autograd mode."""
    t, depth = HEADLINE
    ctx = TrialContext(trial_config(setup, depth, t), setup.data, setup.device, Path("unused"), lambda _: None)
    net = DirectMethod(ctx).student.eval()
    data = setup.data
    context = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad, "autograd_on": contextlib.nullcontext}

    def run() -> None:
        with context[mode]():
            for start in range(0, len(data.val_x), 500):
                net(data.val_x[start : start + 500], t)
                functional.reset_net(net)

    return lambda: timed(run)


def lif_kernel(repeats: int) -> dict[str, dict[str, float]]:
    """Milliseconds of one LIF layer's forward + backward per implementation and thread count."""
    torch.manual_seed(0)
    x = (torch.randn(4, 128, 16, 28, 28) * 1.5).requires_grad_()
    grad = torch.randn_like(x)
    shipped = lif_cpu.BLOCK

    def unit(block: int | None, one_thread: bool = True) -> Callable[[], Timing]:
        def run() -> None:
            node_cls = neuron.LIFNode if block is None else lif_cpu.FastLIFNode
            lif_cpu.BLOCK, lif_cpu.ONE_THREAD = (shipped if block is None else block), one_thread
            node_cls(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")(x).backward(grad)

        return lambda: timed(run)

    out: dict[str, dict[str, float]] = {}
    threads = torch.get_num_threads()
    try:
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            units = {"spikingjelly": unit(None), **{f"fast, BLOCK=2**{b.bit_length() - 1}": unit(b) for b in BLOCKS}}
            if n > 1:
                units |= {f"fast, BLOCK=2**{b.bit_length() - 1}, all threads": unit(b, False) for b in BLOCKS[2:]}
            runs = interleaved(units, repeats)
            out[f"{n} thread(s)"] = {name: 1000 * median([t.wall for t in v]) for name, v in runs.items()}
    finally:
        lif_cpu.BLOCK, lif_cpu.ONE_THREAD = shipped, True
        torch.set_num_threads(threads)
    return out


def measure(setup: Setup, repeats: int, compile_too: bool) -> dict[str, Any]:
    """Every ablation figure."""
    variants = ["harness", "spikingjelly-lif", "channels-last", "item-every-batch"]
    units = {name: step_unit(setup, name) for name in variants}
    result: dict[str, Any] = {"lif_kernel_ms": lif_kernel(repeats + 2)}
    if compile_too:
        try:
            units["torch-compile"] = step_unit(setup, "torch-compile")
            result["compile_first_unit_s"] = units["torch-compile"]().wall
        except Exception as exc:  # noqa: BLE001 - a compile failure is a finding, not a crash
            result["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            units.pop("torch-compile", None)
    for unit in units.values():
        unit()  # warm-up
    steps = interleaved(units, repeats)
    evals = interleaved({m: eval_unit(setup, m) for m in ("inference_mode", "no_grad", "autograd_on")}, repeats)
    step_sps = {name: [setup.samples / t.wall for t in values] for name, values in steps.items()}
    result["train_samples_per_s"] = {name: median(values) for name, values in step_sps.items()}
    result["train_vs_harness"] = {name: paired_ratio(values, step_sps["harness"]) for name, values in step_sps.items()}
    eval_walls = {name: [t.wall for t in values] for name, values in evals.items()}
    result["eval_seconds"] = {name: median(values) for name, values in eval_walls.items()}
    result["eval_vs_inference_mode"] = {
        name: paired_ratio(values, eval_walls["inference_mode"]) for name, values in eval_walls.items()
    }
    return result


def report(result: dict[str, Any]) -> str:
    """The Markdown tables of a run."""
    rows = [
        [name, fmt(sps, 1), fmt(result["train_vs_harness"][name])]
        for name, sps in result["train_samples_per_s"].items()
    ]
    text = table(["training step variant", "samples/s", "throughput vs harness"], rows)
    if "compile_first_unit_s" in result:
        text += f"\n\ntorch.compile: first unit (compilation included) {fmt(result['compile_first_unit_s'], 1)} s"
    if "compile_error" in result:
        text += f"\n\ntorch.compile failed: {result['compile_error']}"
    eval_rows = [
        [name, fmt(s), fmt(result["eval_vs_inference_mode"][name])] for name, s in result["eval_seconds"].items()
    ]
    kernel = result["lif_kernel_ms"]
    columns = list(kernel)
    names = list(dict.fromkeys(name for column in kernel.values() for name in column))
    kernel_rows = [[name, *(fmt(kernel[c].get(name, float("nan")), 1) for c in columns)] for name in names]
    return "\n\n".join(
        [
            text,
            table(["evaluation mode", "seconds", "time vs inference_mode"], eval_rows),
            table(["LIF layer [4,128,16,28,28], forward + backward (ms)", *columns], kernel_rows),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no torch.compile")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats = 1, 3
    args.dataset, args.width, args.batch_size, args.device, args.amp = "mnist-5k", 16, 128, "cpu", "none"
    setup = make_setup(args)
    result = measure(setup, args.repeats, compile_too=not args.quick)
    publish("ablations", result, report(result), quick=args.quick, out=args.out)
    return result


if __name__ == "__main__":
    main()
