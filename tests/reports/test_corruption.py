"""The corruption summary (`reports.corruption`): mean corruption accuracy, mCE and relative mCE
against a baseline, on real MLflow stores of final runs with accuracies chosen here and the
expected values worked out by hand."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from baselines.conversion import ConversionMethod
from harness import contract
from harness.cli import main
from harness.contract import Capabilities, Role, Tag
from harness.errors import HarnessInputError
from harness.tracking import TrackedRun
from reports.corruption import KEY, corruption_table, default_baseline
from reports.loading import load_experiment
from reports.render import Stat, Table, to_markdown

T = 2
NOISE = {"gaussian": [0.1, 0.2], "contrast": [0.5]}
CAPABILITIES = {
    "kd": Capabilities(needs_teacher=True),
    "direct": Capabilities(),
    "conversion": ConversionMethod.capabilities,  # trains at no T
}
G1, G2, C5 = "noise/gaussian/0.1", "noise/gaussian/0.2", "noise/contrast/0.5"


def _seed(clean: float, g1: float, g2: float, c5: float) -> dict[str, float]:
    return {contract.TEST_ACCURACY: clean, G1: g1, G2: g2, C5: c5}


# method -> seed -> accuracies; kd first in the sweep's order, but it needs a teacher.
ACCURACIES = {
    "kd": {1: _seed(0.95, 0.90, 0.80, 0.85), 2: _seed(0.93, 0.86, 0.78, 0.83)},
    "direct": {1: _seed(0.90, 0.80, 0.60, 0.70), 2: _seed(0.88, 0.78, 0.62, 0.66)},
    "conversion": {1: _seed(0.80, 0.70, 0.50, 0.60), 2: _seed(0.80, 0.66, 0.52, 0.62)},
}


def _write(
    uri: str,
    experiment: str,
    finals: Mapping[str, Mapping[int, Mapping[str, float]]],
    capabilities: Mapping[str, Capabilities] = CAPABILITIES,
    noise: Mapping[str, list[float]] = NOISE,
) -> None:
    """A sweep's parent run and one final run per method and seed at T, logging `finals`' metrics."""
    parent = TrackedRun(uri, experiment, "sweep", {Tag.ROLE: Role.SWEEP, Tag.METHODS: ",".join(finals)})
    for method, seeds in finals.items():
        for seed, metrics in seeds.items():
            tags = contract.run_tags(
                Role.FINAL, method, f"{method}/final/{seed}/{T}", capabilities[method], parent_run_id=parent.run_id
            )
            run = TrackedRun(uri, experiment, f"{method}-s{seed}", tags)
            run.log_params(
                {
                    "method": method,
                    "seed": str(seed),
                    "snn.time_steps": str(T),
                    "dataset.name": "digits",
                    "eval.reference_time_steps": str(T),
                    "eval.time_steps": json.dumps([T]),
                    "eval.noise": json.dumps(noise),
                }
            )
            run.log_metrics(dict(metrics))
            run.finish("FINISHED")
    parent.finish("FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('corruption') / 'mlflow.db'}"
    _write(uri, "known", ACCURACIES)
    extra = {m: {s: {**v, "noise/gaussian/0.3": 0.5} for s, v in seeds.items()} for m, seeds in ACCURACIES.items()}
    _write(uri, "kd-has-more", {**ACCURACIES, "kd": extra["kd"]}, noise={**NOISE, "gaussian": [0.1, 0.2, 0.3]})
    # direct's contrast accuracy equals its clean accuracy: no degradation under contrast.
    flat = {m: {s: dict(v) for s, v in seeds.items()} for m, seeds in ACCURACIES.items()}
    for values in flat["direct"].values():
        values[C5] = values[contract.TEST_ACCURACY]
    _write(uri, "flat-contrast", flat)
    for values in flat["direct"].values():
        values[G1] = values[G2] = values[contract.TEST_ACCURACY]
    _write(uri, "flat-everywhere", flat)
    _write(uri, "one-seed", {m: {1: seeds[1]} for m, seeds in ACCURACIES.items()})
    partial = {m: {s: dict(v) for s, v in seeds.items()} for m, seeds in ACCURACIES.items()}
    del partial["kd"][2][C5]
    _write(uri, "kd-seed-2-partial", partial)
    _write(
        uri,
        "no-noise",
        {
            m: {s: {contract.TEST_ACCURACY: v[contract.TEST_ACCURACY]} for s, v in seeds.items()}
            for m, seeds in ACCURACIES.items()
        },
        noise={},
    )
    renamed = {
        "kd": Capabilities(),
        "direct": Capabilities(needs_teacher=True),
        "conversion": CAPABILITIES["conversion"],
    }
    _write(uri, "kd-needs-no-teacher", ACCURACIES, capabilities=renamed)
    nobody = {
        "kd": CAPABILITIES["kd"],
        "direct": Capabilities(needs_teacher=True),
        "conversion": CAPABILITIES["conversion"],
    }
    _write(uri, "no-baseline", ACCURACIES, capabilities=nobody)
    return uri


def _cells(table: Table) -> dict[str, dict[str, Stat | str | None]]:
    return {label: {c.name: cell for c, cell in zip(table.columns, cells, strict=True)} for label, cells in table.rows}


def _table(store: str, experiment: str, baseline: str | None = None) -> Table:
    table = corruption_table(load_experiment(store, experiment), baseline)
    assert table is not None
    return table


def _by_hand(accuracies: Mapping[str, Mapping[int, Mapping[str, float]]], method: str, baseline: str) -> tuple:
    """Per seed of `method`: (mean corruption accuracy, mCE %, relative mCE %) against `baseline`'s
    seed-mean errors, written out from Hendrycks & Dietterich's definitions."""
    types = {"gaussian": [G1, G2], "contrast": [C5]}
    base = accuracies[baseline]
    base_error = {k: sum(1 - v[k] for v in base.values()) / len(base) for k in (contract.TEST_ACCURACY, G1, G2, C5)}
    found = {}
    for seed, acc in accuracies[method].items():
        error = {k: 1 - acc[k] for k in acc}
        mean_accuracy = (acc[G1] + acc[G2] + acc[C5]) / 3
        ce = [sum(error[k] for k in ks) / sum(base_error[k] for k in ks) for ks in types.values()]
        relative = [
            sum(error[k] - error[contract.TEST_ACCURACY] for k in ks)
            / sum(base_error[k] - base_error[contract.TEST_ACCURACY] for k in ks)
            for ks in types.values()
        ]
        found[seed] = (mean_accuracy, 100 * sum(ce) / 2, 100 * sum(relative) / 2)
    return found


def test_mean_corruption_accuracy_and_both_mces_match_the_hand_computation(store: str) -> None:
    table = _table(store, "known")
    cells = _cells(table)
    assert list(cells) == ["kd", "direct", "conversion"]
    # direct (the default baseline) errs 0.11 clean, 0.21 and 0.39 under gaussian 0.1 and 0.2, 0.32 under
    # contrast, over its two seeds. kd's seed 1 errs 0.05, 0.10, 0.20, 0.15: CE_gaussian = 0.30 / 0.60,
    # CE_contrast = 0.15 / 0.32, mCE = 48.4375 %; relative: 0.20 / 0.38 and 0.10 / 0.21, 50.1253 %.
    # Seed 2 (0.07, 0.14, 0.22, 0.17): mCE = (0.36 / 0.60 + 0.17 / 0.32) / 2 = 56.5625 %, relative
    # (0.22 / 0.38 + 0.10 / 0.21) / 2 = 52.7569 %.
    kd = cells["kd"]
    assert kd["clean"].mean == pytest.approx(0.94) and kd["clean"].std == pytest.approx(math.sqrt(2) * 0.01)
    assert kd["mean corruption acc."].mean == pytest.approx((0.85 + (0.86 + 0.78 + 0.83) / 3) / 2)
    assert kd["mCE (%)"].mean == pytest.approx(52.5) and kd["mCE (%)"].n == 2
    assert kd["mCE (%)"].std == pytest.approx((56.5625 - 48.4375) / math.sqrt(2))
    relative = [(0.20 / 0.38 + 0.10 / 0.21) / 2 * 100, (0.22 / 0.38 + 0.10 / 0.21) / 2 * 100]
    assert kd["relative mCE (%)"].mean == pytest.approx(sum(relative) / 2)
    assert kd["relative mCE (%)"].std == pytest.approx(abs(relative[0] - relative[1]) / math.sqrt(2))
    for method in ("kd", "direct", "conversion"):
        per_seed = _by_hand(ACCURACIES, method, "direct").values()
        for index, column in enumerate(("mean corruption acc.", "mCE (%)", "relative mCE (%)")):
            assert cells[method][column].mean == pytest.approx(sum(v[index] for v in per_seed) / 2, abs=1e-9)
    assert "`direct`" in table.description and "CE_c = Σ_s E^f_{s,c} / Σ_s E^base_{s,c}" in table.description
    assert "Σ_s (E^f_{s,c} − E^f_clean) / Σ_s (E^base_{s,c} − E^base_clean)" in table.description
    assert "gaussian 0.1, 0.2; contrast 0.5" in table.description and table.notes == ()
    assert "**52.5 ± 5.7**" in to_markdown(table)  # kd: the lowest mCE is the column's best


@pytest.mark.parametrize("baseline", ["kd", "direct", "conversion"])
def test_the_baselines_own_mce_and_relative_mce_are_100(store: str, baseline: str) -> None:
    table = _table(store, "known", baseline)
    own = _cells(table)[baseline]
    assert own["mCE (%)"].mean == pytest.approx(100.0, abs=1e-9)
    assert own["relative mCE (%)"].mean == pytest.approx(100.0, abs=1e-9)
    assert table.title.endswith(f"against {baseline}") and "--corruption-baseline" in table.description


def test_the_default_baseline_follows_the_capabilities_not_the_names(store: str) -> None:
    assert default_baseline(load_experiment(store, "known")) == "direct"  # kd needs a teacher
    # The same methods declaring otherwise: kd needs no teacher (first in the sweep's order), direct does.
    table = _table(store, "kd-needs-no-teacher")
    assert table.title.endswith("against kd") and _cells(table)["kd"]["relative mCE (%)"].mean == pytest.approx(100)
    # None that needs no teacher and trains at a T (conversion trains at none): no mCE, and the note says why.
    table = _table(store, "no-baseline")
    assert all(cells["mCE (%)"] is None and cells["relative mCE (%)"] is None for cells in _cells(table).values())
    assert _cells(table)["kd"]["mean corruption acc."] is not None
    assert any(note.startswith("No mCE") and "--corruption-baseline METHOD" in note for note in table.notes)


def test_an_unknown_baseline_is_a_one_line_error_naming_the_flag(store: str) -> None:
    with pytest.raises(HarnessInputError, match=r"^--corruption-baseline: no method 'nope' .*kd, direct, conversion"):
        corruption_table(load_experiment(store, "known"), "nope")


def test_columns_some_method_lacks_are_left_out_and_named(store: str) -> None:
    table = _table(store, "kd-has-more")
    assert _cells(table) == _cells(_table(store, "known"))  # over the three common columns only
    (note,) = table.notes
    assert "gaussian 0.3 (not logged by `direct` and `conversion`)" in note


def test_a_seed_lacking_a_column_is_left_out_of_the_means_and_named(store: str) -> None:
    table = _table(store, "kd-seed-2-partial")
    kd, known = _cells(table)["kd"], _cells(_table(store, "known"))["kd"]
    assert kd["clean"] == known["clean"]  # both seeds
    assert kd["mCE (%)"].n == 1 and kd["mCE (%)"].mean == pytest.approx(48.4375)  # seed 1 alone
    assert kd["mean corruption acc."].mean == pytest.approx(0.85)
    assert table.notes == ("`kd`: seed 2 lacks some of the columns used; the cells other than clean leave it out.",)
    assert "0.8500 (n=1)" in to_markdown(table)


def test_a_type_the_baseline_does_not_degrade_under_gets_no_relative_ce(store: str) -> None:
    table = _table(store, "flat-contrast")
    kd = _cells(table)["kd"]
    # Relative mCE over gaussian alone: (0.20 / 0.38 + 0.22 / 0.38) / 2 = 55.263 %; direct still 100.
    assert kd["relative mCE (%)"].mean == pytest.approx(100 * (0.20 + 0.22) / 2 / 0.38)
    assert _cells(table)["direct"]["relative mCE (%)"].mean == pytest.approx(100)
    assert kd["mCE (%)"] is not None  # the plain CE of contrast is defined (direct errs there)
    (note,) = table.notes
    assert "`direct` does not degrade" in note and "under contrast" in note and "over the other types" in note
    # No type left: no relative mCE at all.
    table = _table(store, "flat-everywhere")
    assert all(cells["relative mCE (%)"] is None for cells in _cells(table).values())
    assert all(cells["mCE (%)"] is not None for cells in _cells(table).values())
    assert any("under gaussian and contrast" in note and "no relative mCE" in note for note in table.notes)


def test_one_seed_gives_single_values(store: str) -> None:
    table = _table(store, "one-seed")
    kd = _cells(table)["kd"]
    assert kd["mCE (%)"].n == 1 and math.isnan(kd["mCE (%)"].std)
    # direct's seed 1 alone is the baseline: errors 0.10, 0.20, 0.40, 0.30; kd's seed 1: 0.05, 0.10, 0.20, 0.15.
    assert kd["mCE (%)"].mean == pytest.approx(100 * (0.30 / 0.60 + 0.15 / 0.30) / 2)
    assert kd["relative mCE (%)"].mean == pytest.approx(100 * (0.20 / 0.40 + 0.10 / 0.20) / 2)
    assert _cells(table)["direct"]["mCE (%)"].mean == pytest.approx(100.0)
    assert "| direct | 1 | 0.9000 | 0.7000 | 100.0 | 100.0 |" in to_markdown(table)


def test_without_noise_there_is_no_table(store: str) -> None:
    exp = load_experiment(store, "no-noise")
    assert corruption_table(exp) is None
    assert corruption_table(exp, "kd") is None  # a valid baseline changes nothing


def _read(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


def test_harness_report_takes_the_baseline_flag(store: str, workdir: Path, capsys) -> None:
    args = ["report", "--experiment", "known", "--tracking-uri", store, "--out", "out"]
    assert main([*args, "--corruption-baseline", "kd"]) == 0
    rows = _read(workdir / "out" / "tables" / f"{KEY}.csv")
    assert float(rows["kd"]["relative mCE (%) mean"]) == pytest.approx(100)
    assert float(rows["direct"]["mCE (%) mean"]) > 100
    text = (workdir / "out" / "report.md").read_text()
    noise, corruption = text.index("Test accuracy under input noise"), text.index("Corruption robustness at T = 2")
    assert noise < corruption < text.index("Test accuracy versus the number of time steps")
    assert f"tables/{KEY}.tex" in text
    capsys.readouterr()
    assert main([*args, "--out", "other", "--corruption-baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--corruption-baseline: no method 'nope'" in err
    assert not (workdir / "other").exists()
