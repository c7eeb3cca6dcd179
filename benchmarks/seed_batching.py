"""Would training several seeds of one configuration as one batched model pay on the CPU?

Issue #13 names the lever: train the final stage's seeds of one configuration together, as one
model with grouped convolutions, "so small networks keep both cores busy". This measures it
on the default sweep's student (spiking VGG-5, width 12, T=4, batch 128, 28x28 inputs, Adam):
`S` seeds as one model whose convolutions have `groups=S` (S*width channels), BatchNorm over
all S*width channels (per channel, so per seed) and a block-diagonal classifier: exactly S
independent networks in one set of kernels. Contenders, for two seeds' training steps:

* `separate, 2 processes x 1 thread`: what the sweep does, each seed a trial in its own slot;
  the wall time for both to run `steps` steps side by side;
* `batched, 1 process x 2 threads`: the grouped model of both seeds;
* `separate, 1 process x 2 threads, one after the other`: the two seeds in turn, for scale.

Random inputs of mnist's shape (timing does not depend on the pixels).

    python benchmarks/seed_batching.py --quick
    python benchmarks/seed_batching.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import torch
from benchlib import fmt, median, publish, set_threads, table
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import nn

from harness.models.neurons import make_lif

LAYOUT = [1, "M", 2, "M", 4, 4, "M"]  # VGG-5, as harness/models/vgg.py
WIDTH, T, BATCH, CLASSES = 12, 4, 128, 10


class GroupedVGG5(nn.Module):
    """`seeds` spiking VGG-5s in one: grouped convolutions, one BatchNorm over all channels."""

    def __init__(self, seeds: int) -> None:
        super().__init__()
        lif = make_lif()
        self.seeds = seeds
        self.stem = SeqToANNContainer(nn.Conv2d(seeds, seeds * WIDTH, 3, padding=1, groups=seeds, bias=False),
                                      nn.BatchNorm2d(seeds * WIDTH))  # fmt: skip
        layers: list[nn.Module] = [lif()]
        c_in = WIDTH
        for item in LAYOUT[1:]:
            if item == "M":
                layers.append(SeqToANNContainer(nn.MaxPool2d(2)))
                continue
            c_out = WIDTH * int(item)
            conv = nn.Conv2d(seeds * c_in, seeds * c_out, 3, padding=1, groups=seeds, bias=False)
            layers += [SeqToANNContainer(conv, nn.BatchNorm2d(seeds * c_out)), lif()]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Parameter(torch.randn(seeds, c_in, CLASSES) / c_in**0.5)
        self.features = c_in

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """`images` [B, 1, H, W] (one batch every seed sees) -> logits [seeds, B, classes]."""
        x = images.repeat(1, self.seeds, 1, 1).unsqueeze(0).repeat(T, 1, 1, 1, 1)  # direct encoding
        x = self.body(self.stem(x)).mean(dim=(0, 3, 4))  # [B, seeds * C]
        x = x.reshape(x.shape[0], self.seeds, self.features).transpose(0, 1)  # [seeds, B, C]
        return torch.bmm(x, self.classifier)


def train_steps(seeds: int, steps: int, threads: int) -> float:
    """Seconds for `steps` Adam steps of a `seeds`-seed model on `threads` threads (after one warm-up)."""
    set_threads(threads)
    torch.manual_seed(0)
    model = GroupedVGG5(seeds)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    images, labels = torch.randn(BATCH, 1, 28, 28), torch.randint(0, CLASSES, (BATCH,))

    def step() -> None:
        logits = model(images)
        loss = sum(nn.functional.cross_entropy(logits[s], labels) for s in range(seeds))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        functional.reset_net(model)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def _child(steps: int, barrier: Any, queue: Any) -> None:
    barrier.wait()
    queue.put(train_steps(1, steps, threads=1))


def side_by_side(processes: int, steps: int) -> float:
    """Wall seconds for `processes` one-seed, one-thread trainings started together."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes + 1), ctx.Queue()
    children = [ctx.Process(target=_child, args=(steps, barrier, queue)) for _ in range(processes)]
    for child in children:
        child.start()
    barrier.wait()
    started = time.perf_counter()
    times = [queue.get() for _ in children]
    wall = time.perf_counter() - started
    for child in children:
        child.join()
    return max(wall, *times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    steps, repeats = (3, 2) if args.quick else (10, 4)
    contenders = {
        "separate, 2 processes x 1 thread": lambda: side_by_side(2, steps),
        "batched, 1 process x 2 threads": lambda: train_steps(2, steps, threads=2),
        "separate, 1 process x 2 threads, one after the other": lambda: 2 * train_steps(1, steps, threads=2),
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):  # alternating order, as benchlib.interleaved
        for name in contenders if r % 2 == 0 else reversed(list(contenders)):
            runs[name].append(contenders[name]() / steps)
    per_step = {name: median(values) for name, values in runs.items()}
    baseline = per_step["separate, 2 processes x 1 thread"]
    result = {"steps": steps, "repeats": repeats, "runs_s_per_step": runs, "s_per_step_of_two_seeds": per_step,
              "batched_speedup": baseline / per_step["batched, 1 process x 2 threads"]}  # fmt: skip
    rows = [[name, fmt(value, 3), fmt(baseline / value)] for name, value in per_step.items()]
    summary = table(["two seeds' training step", "wall s per step", "speed vs separate processes"], rows)
    publish("seed_batching", result, summary, quick=args.quick, out=args.out, headline="batched_speedup")
    return result


if __name__ == "__main__":
    main()
