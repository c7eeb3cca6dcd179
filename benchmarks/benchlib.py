"""Helpers shared by the benchmark scripts: machine facts, interleaved timing, peak memory, output.

Timing on a shared machine: every contender runs in the same process, repeats alternate
between contenders (in an ABBA order, so neither always runs first), and figures are
medians. A ratio is also given as the median of per-repeat ratios, which cancels load that
drifts slowly over the run.

Peak memory on the CPU: `tracemalloc` does not see torch's allocator, so a benchmark runs
its training steps in a fresh child process (memory freed earlier in a process can be reused
without showing in its resident set) and reports the peak resident set during the steps
minus the resident set just before them. The peak is Linux's VmHWM after resetting it
(`/proc/self/clear_refs`); where that is not allowed, `getrusage(RUSAGE_SELF).ru_maxrss`,
which also counts setup (data loading), so the figure is then a lower bound. On CUDA it is
`torch.cuda.max_memory_allocated()` after resetting the peak.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
T = TypeVar("T")


def set_threads(threads: int) -> None:
    """Fixes torch's intra-op threads (and the OpenMP/MKL defaults of child processes)."""
    torch.set_num_threads(threads)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def cpu_model() -> str:
    """`lscpu`'s model name (or the platform's processor string where lscpu is missing)."""
    lscpu = shutil.which("lscpu")
    if lscpu:
        out = subprocess.run([lscpu], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on, and when."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        sj_version = version("spikingjelly")
    except PackageNotFoundError:
        sj_version = "unknown"
    info: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "spikingjelly": sj_version,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def interleaved(contenders: Mapping[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """Runs each contender `repeats` times, alternating ABBA; returns each one's results.

    Each callable runs one timed unit of work and returns its figure (e.g. `Timing`).
    """
    names = list(contenders)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(contenders[name]())
    return results


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median of the per-repeat ratios `numerator[i] / denominator[i]`."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True) if b > 0])


@dataclass(frozen=True)
class Timing:
    """Wall and process CPU seconds of one timed unit."""

    wall: float
    cpu: float


def timed(fn: Callable[[], Any]) -> Timing:
    """Wall and CPU seconds of `fn()` (synchronising CUDA before and after when present).

    CPU seconds (all threads of the process) are less sensitive to other processes on a
    shared machine than wall seconds, though threads spinning at barriers count in them.
    """
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def sync() -> None:
    """Waits for queued CUDA work (a no-op on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _status_mib(field: str) -> float | None:
    """A `VmXXX` line of /proc/self/status in MiB (None where there is no procfs)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets this process's peak resident set to the current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB."""
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_peak_memory(run: Callable[[], Any], device: torch.device) -> float:
    """Peak memory growth in MiB while `run()` executes (see the module docstring).

    On the CPU the figure is only meaningful in a process that has not yet run anything
    bigger (the child processes of `child_json`).
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    reset = reset_peak_rss()
    current = _status_mib("VmRSS")
    before = current if reset and current is not None else peak_rss_mib()
    run()
    return peak_rss_mib() - before


def child_json(script: Path, args: Sequence[str], timeout: float = 600) -> dict[str, Any]:
    """Runs `python script args...` in a fresh process and parses the JSON of its last line.

    glibc's malloc keeps freed blocks below its (adaptive) mmap threshold in the heap, so a
    process's resident set stays high after tensors are freed and mixes allocator history
    into the figure; the child gets a fixed threshold of 64 KiB, so every tensor-sized block
    is mapped and unmapped and the resident set follows the live tensors.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def save_results(name: str, payload: Mapping[str, Any], out: Path | None = None) -> Path:
    """Writes `payload` (with the machine facts) as JSON under benchmarks/results/ (or `out`)."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def publish(
    name: str, result: Mapping[str, Any], summary: str, *, quick: bool, out: Path | None, headline: str | None = None
) -> Path:
    """What every benchmark ends with: saves `result` as `<name>[_quick].json`, prints the
    Markdown `summary`, the machine and the file, and last `headline=<value>` when given
    (the line `run.py` and a reader look for)."""
    path = save_results(name + ("_quick" if quick else ""), result, out)
    print(summary)
    print(f"machine: {machine()['cpu']}; results: {path}")
    if headline is not None:
        print(f"{headline}={result[headline]:.3f}")
    return path


def fmt(value: float, digits: int = 2) -> str:
    """A figure for a table (`-` for NaN)."""
    return "-" if value != value else f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
