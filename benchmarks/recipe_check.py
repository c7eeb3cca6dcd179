"""The CIFAR preset's recipe, the harness's student against the hand-written reference, step for step.

The case (issue: datasets as papers use them): on a CIFAR-format set built from the shipped
mnist-5k digits (padded to 32x32, three equal channels), the paper preset's direct training
(spiking ResNet-18, SGD 0.1, cosine) sat at chance for its first epochs. Is that the harness's
network, or the recipe? Both contenders train here under the same recipe, on the same data, in
the same batches:

* `harness`: `harness.models.create_model("resnet", depth=18)` with LIF neurons, the direct
  encoding (normalising with the training split's statistics), `DirectMethod`'s loss, through
  `harness.training.Fitting` (SGD with Nesterov momentum 0.9, weight decay 5e-4, lr 0.1, a
  per-batch cosine schedule, `crop_flip`);
* `reference`: `benchmarks/reference.py`'s `SpikingResNet(18)` (spikingjelly's own layers and
  `LIFNode`, its own initialisation), fed the same normalised, augmented batches in the same
  order, with the same optimiser and schedule built by hand (`torch.optim.SGD`,
  `CosineAnnealingLR`).

After every epoch: the mean training loss and the test accuracy at T. Widths below ResNet-18's
64 keep it within minutes on a CPU (`--width`); the layout (2, 2, 2, 2 blocks), the
recipe and the data are the preset's.

    python benchmarks/recipe_check.py --quick        # width 8, 3 epochs, 1,024 training images
    python benchmarks/recipe_check.py                # width 16, 12 epochs, the whole training split
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchlib import fmt, publish, set_threads, table
from reference import SpikingResNet

from harness.config.sections import TrainConfig
from harness.data import load_dataset
from harness.data.augment import crop_flip
from harness.models import create_model, make_lif
from harness.models.encoders import DirectEncoding
from harness.training import Fitting, accuracy, shuffled_batches

T = 4


def cifar_like(x: torch.Tensor) -> torch.Tensor:
    """mnist-5k images `[N, 1, 28, 28]` as CIFAR-shaped ones: padded to 32x32, three channels."""
    return F.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 8, 3 epochs, 1,024 training images")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    width = args.width or (8 if args.quick else 16)
    epochs = args.epochs or (3 if args.quick else 12)
    data = load_dataset("mnist-5k")
    train_x, test_x = cifar_like(data.train_x), cifar_like(data.test_x)
    train_y = data.train_y
    if args.quick:
        train_x, train_y = train_x[:1024], train_y[:1024]
    mean, std = float(train_x.mean()), float(train_x.std())
    recipe = TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine", augment="crop_flip", batch_size=128
    )

    torch.manual_seed(0)
    ours = create_model("resnet", depth=18, width=width, in_channels=3, num_classes=10, image_shape=32,
                        activation=make_lif(), encoder=DirectEncoding([mean] * 3, [std] * 3))  # fmt: skip
    fitting = Fitting([ours], recipe, epochs=epochs, samples=len(train_x), seed=0)

    def our_loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(ours(images, T).mean(0), labels)

    torch.manual_seed(0)
    peer = SpikingResNet(18, width, 3, 10, 32, T=T)
    steps = epochs * -(-len(train_x) // recipe.batch_size)
    peer_opt = torch.optim.SGD(peer.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    peer_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(peer_opt, T_max=steps)
    peer_generator = torch.Generator().manual_seed(0)  # the same order and crops as `fitting`'s

    def peer_epoch() -> float:
        from spikingjelly.activation_based import functional

        peer.train()
        total, batches = 0.0, 0
        for index in shuffled_batches(len(train_x), recipe.batch_size, peer_generator):
            images = (crop_flip(train_x[index], peer_generator) - mean) / std
            loss = F.cross_entropy(peer(images), train_y[index])
            peer_opt.zero_grad(set_to_none=True)
            loss.backward()
            peer_opt.step()
            peer_schedule.step()
            functional.reset_net(peer)
            total, batches = total + loss.item(), batches + 1
        return total / batches

    @torch.inference_mode()
    def peer_accuracy() -> float:
        from spikingjelly.activation_based import functional

        peer.eval()
        correct = 0
        for start in range(0, len(test_x), 500):
            out = peer((test_x[start : start + 500] - mean) / std)
            functional.reset_net(peer)
            correct += int((out.argmax(1) == data.test_y[start : start + 500]).sum())
        return correct / len(test_x)

    curves: dict[str, list[dict[str, float]]] = {"harness": [], "reference": []}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss = fitting.epoch(our_loss, train_x, train_y, epoch)
        ours_seconds = time.perf_counter() - start
        test = accuracy(ours, test_x, data.test_y, time_steps=T, batch_size=500)
        curves["harness"].append({"epoch": epoch, "train_loss": loss, "test_accuracy": test, "seconds": ours_seconds})
        start = time.perf_counter()
        loss = peer_epoch()
        peer_seconds = time.perf_counter() - start
        curves["reference"].append(
            {"epoch": epoch, "train_loss": loss, "test_accuracy": peer_accuracy(), "seconds": peer_seconds}
        )
        print(f"epoch {epoch}: harness {curves['harness'][-1]}, reference {curves['reference'][-1]}", flush=True)
    result = {"width": width, "depth": 18, "time_steps": T, "epochs": epochs, "train_samples": len(train_x),
              "recipe": recipe.model_dump(mode="json"), "curves": curves}  # fmt: skip
    result["final_accuracy_gap"] = curves["harness"][-1]["test_accuracy"] - curves["reference"][-1]["test_accuracy"]
    rows = [
        [e, fmt(h["train_loss"], 3), fmt(h["test_accuracy"], 3), fmt(r["train_loss"], 3), fmt(r["test_accuracy"], 3)]
        for e, (h, r) in enumerate(zip(curves["harness"], curves["reference"], strict=True), start=1)
    ]
    summary = table(["epoch", "harness loss", "harness test acc", "reference loss", "reference test acc"], rows)
    publish("recipe_check", result, summary, quick=args.quick, out=args.out, headline="final_accuracy_gap")


if __name__ == "__main__":
    main()
