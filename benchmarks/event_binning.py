"""Event binning cost per sample, with and without the frame cache.

A folder in N-MNIST's own format (`NMNIST/{Train,Test}/<digit>/*.bin`, 40-bit records) is
written with `--samples` samples of `--events` events each (real N-MNIST samples hold about
4,000 events over 300 ms), then read through the `nmnist` entry's loader
(`harness.data.events.load_frames`) at T = 10:

* `cold`: no cache: tonic lists and decodes every file, `ToFrame` bins it, the frames are
  written to the cache (`<root>/.harness-frames`);
* `warm`: the cache holds the frames: the files are listed (names, sizes, times), the frames
  loaded, nothing decoded;
* `decode` and `bin`: the two parts of `cold`, timed apart on the same samples.

Figures are medians over repeats (a fresh cache folder for every cold repeat), per sample.

    python benchmarks/event_binning.py --quick     # 200 samples, 3 repeats
    python benchmarks/event_binning.py             # 1,000 samples, 5 repeats
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import fmt, median, publish, table

from harness.data.events import list_events, load_frames
from harness.data.frames import bin_samples

TIME_BINS = 10
SENSOR = (34, 34, 2)


def write_nmnist(root: Path, samples: int, events: int) -> None:
    """`samples` N-MNIST files (nine tenths Train, the rest Test) of `events` random events over 300 ms."""
    rng = np.random.default_rng(0)
    for i in range(samples):
        split = "Test" if i % 10 == 0 else "Train"
        t = np.sort(rng.integers(0, 300_000, events))
        record = np.zeros((events, 5), dtype=np.uint8)
        record[:, 0], record[:, 1] = rng.integers(0, 34, events), rng.integers(0, 34, events)
        record[:, 2] = (rng.integers(0, 2, events) << 7) | ((t >> 16) & 0x7F)
        record[:, 3], record[:, 4] = (t >> 8) & 0xFF, t & 0xFF
        path = root / "NMNIST" / split / str(i % 10) / f"{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(record.tobytes())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 samples and 3 repeats instead of 1,000 and 5")
    parser.add_argument("--events", type=int, default=4000, help="events per sample (N-MNIST: about 4,000)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    samples, repeats = (200, 3) if args.quick else (1000, 5)
    root = Path(tempfile.mkdtemp(prefix="event-binning-"))
    try:
        write_nmnist(root, samples, args.events)
        cache = root / ".harness-frames"
        cold, warm, decode, binning = [], [], [], []
        for _ in range(repeats):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(timed(lambda: load_frames("nmnist", str(root), False, TIME_BINS)) / samples)
            warm.append(timed(lambda: load_frames("nmnist", str(root), False, TIME_BINS)) / samples)
            train, test = list_events("nmnist", str(root), False)
            start = time.perf_counter()
            decoded = train.decode() + test.decode()
            decode.append((time.perf_counter() - start) / samples)
            start = time.perf_counter()
            bin_samples(decoded, SENSOR, TIME_BINS)
            binning.append((time.perf_counter() - start) / samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "samples": samples,
        "events_per_sample": args.events,
        "time_bins": TIME_BINS,
        "repeats": repeats,
        "ms_per_sample": {
            "cold": 1e3 * median(cold),
            "warm": 1e3 * median(warm),
            "decode": 1e3 * median(decode),
            "bin": 1e3 * median(binning),
        },
    }
    result["cache_speedup"] = median(cold) / median(warm)
    summary = table(
        ["path", "ms per sample"], [[name, fmt(value, 3)] for name, value in result["ms_per_sample"].items()]
    )
    publish("event_binning", result, summary, quick=args.quick, out=args.out, headline="cache_speedup")


if __name__ == "__main__":
    main()
