"""A sweep folder's state, checked whole before `--resume` touches anything.

`<storage>/<sweep>/` keeps what a resumed sweep goes on from: `plan.json` (the plan it started
with), `choices.json` (each method's chosen search trial), `optuna.db` (the mirrored studies),
the Tune experiment under `trials/` (its state, the searcher's, the callbacks') and each trial's
checkpoints. A resume reads them all; one that is damaged would otherwise surface as a traceback
deep inside Tune, or be replaced without a word. `check_sweep_state` reads each one (plan.json
is compared with the plan by `check_same_plan`) and refuses a damaged one in a line naming it
and the way out (exit 2), before the store, Ray or anything else is touched. A damaged trial
checkpoint is no reason to refuse: the trial goes on from the one before (`TrialCheckpoints`).

Nothing here unpickles: a pickle is checked by walking its opcodes (`pickletools.genops`), which
finds a truncated or garbled file without running any of it.
"""

from __future__ import annotations

import pickletools
import sqlite3
from pathlib import Path

from harness.files import FRESH_START, DamagedState, read_json
from harness.sweep.search import CHOICES_FILE, read_choices
from harness.sweep.studies import STUDY_FILE

TUNE_JSON = ("experiment_state-*.json",)
# Tune pickles its search generator's state into a file it names `.json`.
TUNE_PICKLES = ("search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl", "tuner.pkl")


def check_sweep_state(folder: Path, trials: Path) -> None:
    """Reads every state file of the sweep in `folder` (its Tune experiment in `trials`) that a
    resume will read; silent when they are whole or absent (a sweep's first start).

    Raises:
        DamagedState: naming the first damaged file and the way out.
    """
    read_choices(folder / CHOICES_FILE)
    check_sqlite(folder / STUDY_FILE, "the mirror of each method's Optuna study")
    for pattern in TUNE_JSON:
        newest = _newest(trials, pattern)
        if newest is not None:
            read_json(newest, "the Tune experiment's state")
    for pattern in TUNE_PICKLES:
        newest = _newest(trials, pattern)
        if newest is not None:
            check_pickle(newest, "the Tune experiment's state")


def _newest(folder: Path, pattern: str) -> Path | None:
    """The file Tune restores from: the newest name (they carry their date) matching `pattern`."""
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return found[-1] if found else None


def check_sqlite(path: Path, what: str) -> None:
    """Refuses a SQLite file that does not pass SQLite's own quick check (absent: fine)."""
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise DamagedState(f"{path}: {what} is damaged ({verdict}); {FRESH_START}")


def check_pickle(path: Path, what: str) -> None:
    """Refuses a pickle whose opcode stream is not whole (walked, never loaded)."""
    try:
        data = path.read_bytes()
        stops = [op for op, _, _ in pickletools.genops(data) if op.name == "STOP"]
        whole = bool(stops)
    except Exception:  # noqa: BLE001 - any failure to walk it means it is not whole
        whole = False
    if not whole:
        raise DamagedState(f"{path}: {what} is damaged (not a whole pickle); {FRESH_START}")
