"""Runs every benchmark and prints the headline figures as its last line.

    python benchmarks/run.py --quick    # CI-sized: under 5 minutes on 2 cores
    python benchmarks/run.py            # the full figures of BENCHMARKS.md (hours: the sweep is kd.yaml)

Each benchmark runs in its own process (a fresh resident set for memory figures, its own
Ray instance for the sweep) and writes its JSON under benchmarks/results/; the last line is
`throughput_ratio=<x> utilization=<y> timestep_curve_speedup=<z>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchlib import BENCH_DIR, RESULTS_DIR

# (script, results file stem, headline key in its JSON); FULL_ONLY scripts are left out of --quick.
BENCHMARKS = (
    ("throughput.py", "throughput", "throughput_ratio"),
    ("eval_cost.py", "eval_cost", "timestep_curve_speedup"),
    ("cost_growth.py", "cost_growth", None),
    ("ablations.py", "ablations", None),
    ("tune_startup.py", "tune_startup", None),
    ("sweep_efficiency.py", "sweep_efficiency", "utilization"),
)
FULL_ONLY = {"ablations.py", "tune_startup.py"}


def run(script: str, quick: bool, extra: list[str]) -> float:
    """Runs one benchmark script in a child process; returns its wall seconds."""
    started = time.perf_counter()
    command = [sys.executable, str(BENCH_DIR / script), *(["--quick"] if quick else []), *extra]
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def headline(stem: str, key: str, quick: bool) -> float:
    """A headline figure from a benchmark's results file (NaN if it has none)."""
    path = RESULTS_DIR / f"{stem}{'_quick' if quick else ''}.json"
    return float(json.loads(path.read_text())[key]) if path.exists() else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized runs of every benchmark")
    parser.add_argument("--skip", nargs="*", default=[], help="scripts to leave out (their last results are read)")
    args = parser.parse_args(argv)
    seconds = {}
    for script, _, _ in BENCHMARKS:
        if script not in args.skip and not (args.quick and script in FULL_ONLY):
            seconds[script] = run(script, args.quick, [])
    print("benchmark wall seconds: " + ", ".join(f"{name} {s:.0f}" for name, s in seconds.items()))
    stems = {key: stem for _, stem, key in BENCHMARKS if key}
    order = ("throughput_ratio", "utilization", "timestep_curve_speedup")
    print(" ".join(f"{key}={headline(stems[key], key, args.quick):.3f}" for key in order))
    return 0


if __name__ == "__main__":
    sys.exit(main())
