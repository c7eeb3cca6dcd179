"""Repeats `harness train` over methods x time steps x seeds and tabulates mean ± std.

Each trial is an ordinary `harness train` run (logged to MLflow); the table is read back
from MLflow, so it shows exactly what the store holds. Used for the README's results:

    python scripts/seed_study.py --space search_spaces/kd.yaml --methods kd direct \
        --time-steps 4 2 --seeds 0 1 2 --experiment readme-results
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd

from harness.tracking import absolute_tracking_uri

DEFAULT_METRICS = ["test_accuracy", "teacher_test_accuracy", "firing_rate", "energy_uj", "train_seconds"]
COLUMNS = {
    "test_accuracy": "test acc",
    "teacher_test_accuracy": "teacher acc",
    "firing_rate": "firing rate",
    "energy_uj": "energy (µJ)",
    "train_seconds": "train s",
}


def run_all(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        for t in args.time_steps:
            for method in args.methods:
                cmd = [
                    sys.executable,
                    "-m",
                    "harness.cli",
                    "train",
                    "--space",
                    str(args.space),
                    "--method",
                    method,
                    "--experiment",
                    args.experiment,
                    "--tracking-uri",
                    args.tracking_uri,
                    "--set",
                    f"seed={seed}",
                    "--set",
                    f"snn.time_steps={t}",
                    *sum((["--set", s] for s in args.set), []),
                ]
                print("$", " ".join(cmd[1:]), flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def table(args: argparse.Namespace) -> str:
    mlflow.set_tracking_uri(args.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[args.experiment], filter_string="attributes.status = 'FINISHED'")
    # A method that does not train at a T (conversion) logs no snn.time_steps: its row is its reference T.
    reference = runs["params.eval.reference_time_steps"]
    runs["T"] = runs.get("params.snn.time_steps", reference).fillna(reference).astype(int)
    rows = []
    for (method, t), group in runs.groupby(["params.method", "T"]):
        row = {"method": method, "T": t, "n": len(group)}
        for metric in args.metrics:
            name = COLUMNS.get(metric, metric)
            values = group.get(f"metrics.{metric}")
            if values is not None and values.notna().any():
                row[name] = (
                    f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values.mean():.4f}"
                )
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["T", "method"], ascending=[False, True]).to_markdown(index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=Path("search_spaces/kd.yaml"))
    parser.add_argument("--methods", nargs="+", default=["kd", "direct"])
    parser.add_argument("--time-steps", nargs="+", type=int, default=[4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS, help="columns of the table")
    parser.add_argument("--experiment", default="seed-study")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--table-only", action="store_true", help="only tabulate runs already in the store")
    args = parser.parse_args()
    args.tracking_uri = absolute_tracking_uri(args.tracking_uri)
    if not args.table_only:
        run_all(args)
    print(table(args))


if __name__ == "__main__":
    main()
