"""Start-up of one Ray Tune experiment: from `Tuner.fit()` to the first line of a trial.

A sweep's Tune experiment starts its trial actors in fresh worker processes, which import
the trainable's module before a trial can run. The sweep's trainable lives in
`harness.sweep.workers` (torch and the trial config only). This measures, on the same local Ray
instance, experiments of two trivial trials whose trainable lives

* `in-harness.ray_workers`: in a module that imports `harness.sweep.workers`, as the sweep's does;
* `in-harness.sweep`: in a module that imports `harness.sweep.run` (MLflow, Optuna, Tune's search
  code, the whole harness), where the trainable lived before;
* `light`: in a module that imports nothing else (the floor: Ray and Tune themselves).

    python benchmarks/tune_startup.py --quick    # 2 experiments of each
    python benchmarks/tune_startup.py            # 4 of each
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import fmt, median, publish, set_threads, table

TRAINABLE = """
def trainable(config):
    import time
    from ray import tune
    tune.report({"first_line": time.time()})
"""
MODULES = {
    "light": TRAINABLE,
    "in-harness.ray_workers": "import harness.sweep.workers  # noqa: F401\n" + TRAINABLE,
    "in-harness.sweep": "import harness.sweep.run  # noqa: F401\n" + TRAINABLE,
}


def experiment(module: Any, storage: str, name: str) -> dict[str, float]:
    """One Tune experiment of two trials on two slots; seconds to its first trial and in all."""
    from ray import tune

    started = time.time()
    results = tune.Tuner(
        tune.with_resources(module.trainable, {"cpu": 1}),
        param_space={"a": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()
    first = min(r.metrics["first_line"] for r in results)
    return {"to_first_trial_s": first - started, "wall_s": time.time() - started}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import importlib

    import ray

    set_threads(1)
    repeats = 2 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="tune-startup-") as tmp:
        for stem, source in MODULES.items():
            (Path(tmp) / f"probe_{stem.replace('-', '_').replace('.', '_')}.py").write_text(source)
        sys.path.insert(0, tmp)
        modules = {
            stem: importlib.import_module(f"probe_{stem.replace('-', '_').replace('.', '_')}") for stem in MODULES
        }
        path = os.pathsep.join([tmp, *filter(None, [os.environ.get("PYTHONPATH")])])
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
        try:
            runs: dict[str, list[dict[str, float]]] = {stem: [] for stem in MODULES}
            for r in range(repeats):
                for stem in MODULES if r % 2 == 0 else reversed(list(MODULES)):
                    runs[stem].append(experiment(modules[stem], tmp, f"{stem}-{r}"))
        finally:
            ray.shutdown()
    result = {
        "runs": runs,
        "to_first_trial_s": {stem: median([x["to_first_trial_s"] for x in values]) for stem, values in runs.items()},
        "experiment_wall_s": {stem: median([x["wall_s"] for x in values]) for stem, values in runs.items()},
    }
    rows = [[stem, fmt(result["to_first_trial_s"][stem]), fmt(result["experiment_wall_s"][stem])] for stem in MODULES]
    summary = table(["trainable's module", "Tuner.fit() to first trial line (s)", "experiment wall (s)"], rows)
    publish("tune_startup", result, summary, quick=args.quick, out=args.out)
    return result


if __name__ == "__main__":
    main()
