"""`harness sweep`: Optuna (TPE) searches scheduled by Ray Tune (ASHA), every trial in MLflow.

Flow (one direction), one module per concept:

- `plan`: the validated space -> a typed `SweepPlan`: per method its resolved `TrialConfig`,
  the dims it samples (those of the sections it reads) and its capabilities.
- `search`: one Tune experiment for the whole sweep; `SweepSearcher` asks each method's own
  `OptunaSearch` (define-by-run over only its dims) for its search trials and `MethodScheduler`
  gives each method its own ASHA.
- `final`: as soon as a method's search is complete its best configuration is retrained over
  `search.final_repeats` seeds and the T values the method's capabilities call for.
- `workers`: what runs in Ray workers (the Tune trainable around `harness.trial.train`, the
  teacher task); light imports.
- `callback`: `MlflowTrialCallback`, on the driver, writes one child run per trial through
  `harness.contract`.
- `run`: the orchestration (`run_sweep`): the parent run, Ray, the teacher stage, the experiment.

This package's `__init__` imports nothing, so a Ray worker that imports `workers` loads neither
MLflow nor Optuna.
"""
