"""A sweep folder's state checked whole before a resume (`harness.sweep.state`), and the choice
record that is never silently rewritten (`harness.sweep.search`)."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

from harness.files import DamagedState
from harness.sweep.search import read_choices, record_choice
from harness.sweep.state import check_pickle, check_sqlite, check_sweep_state


def test_a_whole_or_absent_state_passes(tmp_path: Path) -> None:
    check_sweep_state(tmp_path / "none", tmp_path / "none" / "trials")
    trials = tmp_path / "trials"
    trials.mkdir()
    (trials / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (trials / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        db.execute("create table t (x)")
    record_choice(tmp_path / "choices.json", "kd", "1", {"kd.alpha": 0.3})
    check_sweep_state(tmp_path, trials)


def test_only_the_newest_tune_state_is_read_as_tune_restores_from_it(tmp_path: Path) -> None:
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{damaged")
    (tmp_path / "experiment_state-2026-01-02_00-00-00.json").write_text("{}")
    check_sweep_state(tmp_path / "sweep", tmp_path)
    (tmp_path / "experiment_state-2026-01-03_00-00-00.json").write_text("{damaged")
    with pytest.raises(DamagedState, match=r"experiment_state-2026-01-03_00-00-00.json: the Tune experiment's state"):
        check_sweep_state(tmp_path / "sweep", tmp_path)


@pytest.mark.parametrize("content", [pickle.dumps(list(range(100)))[:-5], b"\x80\x05garbage", b""])
def test_a_pickle_that_is_not_whole_is_refused_without_loading_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tuner.pkl"
    path.write_bytes(content)
    with pytest.raises(DamagedState, match=r"tuner.pkl: the state is damaged \(not a whole pickle\)"):
        check_pickle(path, "the state")


def test_a_pickle_that_would_run_code_is_walked_not_run(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    path = tmp_path / "searcher-state.pkl"
    path.write_bytes(pickle.dumps(Boom()))
    check_pickle(path, "the state")  # whole
    assert not (tmp_path / "ran").exists()


def test_a_damaged_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "optuna.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 200)
    with pytest.raises(DamagedState, match=r"optuna.db: the mirror is damaged \(file is not a database\)"):
        check_sqlite(path, "the mirror")


@pytest.mark.parametrize(
    "record",
    [[1, 2], {"kd": "1"}, {"kd": {"run": 1, "values": {}}}, {"kd": {"run": "1"}}, {"kd": {"run": "1", "values": 3}}],
)
def test_a_choice_record_of_the_wrong_shape_is_damaged(tmp_path: Path, record: object) -> None:
    path = tmp_path / "choices.json"
    path.write_text(json.dumps(record))
    with pytest.raises(DamagedState, match="choices.json: the record of each method's chosen search trial is damaged"):
        read_choices(path)


def test_a_choice_on_record_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "choices.json"
    record_choice(path, "kd", "1", {"kd.alpha": 0.3})
    record_choice(path, "kd", "0", {"kd.alpha": 0.9})  # a second choice for kd: the first stands
    record_choice(path, "direct", None, None)
    assert read_choices(path) == {
        "kd": {"run": "1", "values": {"kd.alpha": 0.3}},
        "direct": {"run": None, "values": None},
    }
