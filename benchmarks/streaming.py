"""Streaming path against tensor path: training samples per second on a CIFAR-shaped set.

A synthetic set of uint8 images `[N, 3, 32, 32]` (random pixels, 10 classes) is held both ways
(`harness.data.stream`): `tensor`, one float32 tensor on the device; `stream-wK`, the uint8
pool in host memory read through a DataLoader with K worker processes. One timed unit is one
epoch of `harness.training.train_one_epoch` with `crop_flip` augmentation and a spiking
ResNet-8 (width 16, T = 2, LIF, cross-entropy, Adam), the loop every kd/direct trial runs.
A second measurement, `delivery`, times the batches alone (the same epoch's order, no network),
which is the streaming path's own cost.

Contenders alternate in one process (benchlib.interleaved, ABBA); figures are medians, the ratio
the median of per-repeat ratios.

    python benchmarks/streaming.py --quick        # 2,048 images, 3 repeats
    python benchmarks/streaming.py                # 8,192 images, 5 repeats
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import fmt, interleaved, median, paired_ratio, publish, set_threads, table, timed

from harness.config.sections import TrainConfig
from harness.data.augment import crop_flip
from harness.data.stream import StreamedImages, batches_of
from harness.models import create_model, make_lif
from harness.training import make_optimizer, make_schedule, shuffled_batches, train_one_epoch

BATCH = 128


def synthetic_pool(samples: int) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(samples, 3, 32, 32), dtype=np.uint8)
    pool.flags.writeable = False
    return pool, torch.from_numpy(rng.integers(0, 10, size=samples))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,048 images and 3 repeats instead of 8,192 and 5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    samples, repeats = (2048, 3) if args.quick else (8192, 5)
    pool, labels = synthetic_pool(samples)
    rows = np.arange(samples)
    device = torch.device("cpu")
    held = torch.from_numpy(pool.copy()).to(torch.float32).div_(255.0)
    sources = {
        "tensor": held,
        "stream-w0": StreamedImages(pool, rows, 255.0, device, workers=0),
        "stream-w1": StreamedImages(pool, rows, 255.0, device, workers=1),
        "stream-w2": StreamedImages(pool, rows, 255.0, device, workers=2),
    }
    net = create_model(
        "resnet", depth=8, width=16, in_channels=3, num_classes=10, image_shape=32, activation=make_lif()
    )
    train = TrainConfig(augment="crop_flip", batch_size=BATCH)
    optimizer = make_optimizer(list(net.parameters()), train)
    schedule = make_schedule(optimizer, train, 10**6)

    def loss(images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(images, 2).mean(0), y)

    def epoch(x) -> float:
        generator = torch.Generator().manual_seed(0)
        run = timed(
            lambda: train_one_epoch(
                [net], optimizer, schedule, x, labels, loss, batch_size=BATCH, generator=generator,
                augment=crop_flip, epoch=1,
            )
        )  # fmt: skip
        return samples / run.wall

    def delivery(x) -> float:
        order = shuffled_batches(samples, BATCH, torch.Generator().manual_seed(0))
        run = timed(lambda: [crop_flip(batch, torch.Generator()) for batch in batches_of(x, order)])
        return samples / run.wall

    training = interleaved({name: (lambda x=x: epoch(x)) for name, x in sources.items()}, repeats)
    delivered = interleaved({name: (lambda x=x: delivery(x)) for name, x in sources.items()}, repeats)
    result = {
        "samples": samples,
        "batch": BATCH,
        "repeats": repeats,
        "training_samples_per_s": {name: median(values) for name, values in training.items()},
        "delivery_samples_per_s": {name: median(values) for name, values in delivered.items()},
        "training_ratio_to_tensor": {
            name: paired_ratio(values, training["tensor"]) for name, values in training.items() if name != "tensor"
        },
    }
    result["best_stream_ratio"] = max(result["training_ratio_to_tensor"].values())
    summary = table(
        ["source", "training samples/s", "ratio to tensor", "delivery only, samples/s"],
        [
            [
                name,
                fmt(result["training_samples_per_s"][name], 1),
                fmt(result["training_ratio_to_tensor"].get(name, 1.0)),
                fmt(result["delivery_samples_per_s"][name], 0),
            ]
            for name in sources
        ],
    )
    publish("streaming", result, summary, quick=args.quick, out=args.out, headline="best_stream_ratio")


if __name__ == "__main__":
    main()
