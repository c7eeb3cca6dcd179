"""`train.precision`: bf16 autocast against fp32 for the spiking transformer, whole trials.

Each contender is one `harness.trial.train(config)` of the built-in `spikformer` (direct
training, mnist-5k, T = 4) at `train.precision` fp32 or bf16, the same seed: training samples per
second (from the trial's `train_seconds`), peak CUDA memory (`torch.cuda.max_memory_allocated`)
and the test accuracy each reaches, so speed and what it costs in accuracy sit side by side.
bf16 needs CUDA; on the CPU only fp32 runs (a dry run of the script).

    python benchmarks/precision.py --device cuda            # both precisions, 3 epochs each
    python benchmarks/precision.py --device cpu --quick     # fp32 only, 1 epoch on digits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchlib import fmt, publish, set_threads, table

from harness.config.resolve import trial_config
from harness.data import load_dataset
from harness.trial import train

ARGS = {"embed_dim": 64, "heads": 4, "depth": 2, "patch_size": 4}


def run(precision: str, device: str, dataset: str, epochs: int, batch_size: int) -> dict[str, float]:
    config = trial_config(
        {
            "method": "direct",
            "dataset.name": dataset,
            "student.arch": "spikformer",
            **{f"student.{key}": value for key, value in ARGS.items()},
            "snn.time_steps": 4,
            "train.epochs": epochs,
            "train.batch_size": batch_size,
            "train.device": device,
            "train.precision": precision,
            "eval.noise": {},
            "eval.time_steps": [4],
        }
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    metrics = train(config, log=lambda _: None)
    samples = epochs * len(load_dataset(dataset).train_x)
    return {
        "samples_per_s": samples / metrics["train_seconds"],
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan"),
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="1 epoch on digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/precision.json)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    dataset, epochs = ("digits", 1) if args.quick else ("mnist-5k", args.epochs)
    precisions = ("fp32", "bf16") if args.device == "cuda" else ("fp32",)
    results = {p: run(p, args.device, dataset, epochs, args.batch_size) for p in precisions}
    rows = [
        [p, fmt(r["samples_per_s"], 0), fmt(r["peak_mib"], 0), fmt(r["test_accuracy"], 3)] for p, r in results.items()
    ]
    summary = table(["precision", "train samples/s", "peak MiB", "test accuracy"], rows)
    result = {"dataset": dataset, "epochs": epochs, "spikformer": ARGS, "results": results}
    if "bf16" in results:
        result["bf16_speedup"] = results["bf16"]["samples_per_s"] / results["fp32"]["samples_per_s"]
    publish("precision", result, summary, quick=args.quick, out=args.out, headline=None)


if __name__ == "__main__":
    main()
