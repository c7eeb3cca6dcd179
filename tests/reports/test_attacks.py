"""The accuracy-versus-eps table and figure of adversarial attacks, from a fabricated store."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from harness.contract import Capabilities
from reports.attacks import NOT_RECORDED, attack_frame, attack_table, gradient_estimator, maskings
from reports.build import build_report
from reports.figures import attack_figure
from reports.loading import load_experiment
from reports.render import Stat, to_latex, to_markdown
from reports.tables import TEACHER

from .many_methods import ATTACKS, REFERENCE_T, SEEDS, default_attack, write_many

METHODS = ("kd", "direct", "conversion")
MASKED = {1: 0.08, 2: 0.09, 3: 0.07}  # conversion: square below pgd at eps 0.03 by these, per seed
WITHIN = {1: 0.01, 2: -0.012, 3: 0.005}  # kd: square below pgd by less than the seeds' spread of it


def attack_value(method: str, seed: int, attack: str, eps: float) -> float | None:
    """`default_attack`, but conversion's square beats its pgd at 0.03 by ~8 points and kd's is level with it."""
    if attack == "square" and method in ("conversion", "kd"):
        gap = (MASKED if method == "conversion" else WITHIN)[seed]
        return round(default_attack(method, seed, "pgd", eps) - gap, 6)
    return default_attack(method, seed, attack, eps)


@pytest.fixture(scope="module")
def attack_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`attacked` (the three methods and the teacher under every attack), `older-tag` (kd and direct
    under pgd, capabilities tags without `attack_gradient`)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('attack_store') / 'mlflow.db'}"
    write_many(uri, "attacked", METHODS, attacks=ATTACKS, attack_value=attack_value, teacher_attacks=True)
    write_many(uri, "older-tag", ("kd", "direct"), attacks={"pgd": (0.03,)}, gradient=False)
    return uri


@pytest.fixture(scope="module")
def attacked_report(attack_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(attack_store, "attacked", tmp_path_factory.mktemp("attacked") / "report")


def _expected(method: str, attack: str, eps: float) -> Stat:
    stat = Stat.of(attack_value(method, seed, attack, eps) for seed in SEEDS)
    assert stat is not None
    return stat


def test_the_table_is_mean_and_std_per_method_attack_and_eps(attack_store: str) -> None:
    table = attack_table(load_experiment(attack_store, "attacked"))
    assert table is not None
    assert [c.name for c in table.columns] == [
        "gradient", "clean", "fgsm 0.01", "fgsm 0.03", "pgd 0.01", "pgd 0.03", "square 0.03", "transfer 0.03",
    ]  # fmt: skip
    rows = dict(table.rows)
    assert list(rows) == [TEACHER, *METHODS]  # the teacher first, then the sweep's order
    assert [rows[m][0] for m in (TEACHER, *METHODS)] == ["exact (ANN)", "surrogate", "surrogate", "ann"]
    for method in METHODS:
        for index, (attack, eps) in enumerate(
            [(a, e) for a, budgets in sorted(ATTACKS.items()) for e in budgets], start=2
        ):
            cell = rows[method][index]
            expected = _expected(method, attack, eps)
            assert isinstance(cell, Stat) and cell.n == len(SEEDS), (method, attack, eps)
            assert cell.mean == pytest.approx(expected.mean, abs=1e-12)
            assert cell.std == pytest.approx(expected.std, abs=1e-12)
    teacher_pgd = rows[TEACHER][5]
    assert isinstance(teacher_pgd, Stat) and teacher_pgd.mean == pytest.approx(
        statistics.fmean(0.95 - 5 * 0.03 + 0.001 * seed for seed in SEEDS)
    )
    assert teacher_pgd.n == len(SEEDS)  # one teacher per seed (`harness.teacher`)


def test_the_description_states_the_threat_model(attack_store: str) -> None:
    table = attack_table(load_experiment(attack_store, "attacked"))
    assert table is not None
    text = table.description
    assert "L-infinity" in text and "[0, 1] pixel space" in text
    assert f"attacked and evaluated at T = {REFERENCE_T}" in text
    assert "crafted on the ANN teacher, the same images for every method" in text
    assert "`ann`: the ANN it was converted from" in text and "`surrogate`: the spiking network" in text


def test_a_square_accuracy_below_pgd_flags_gradient_masking(attack_store: str) -> None:
    exp = load_experiment(attack_store, "attacked")
    found = maskings(exp)
    assert [(m.method, m.eps) for m in found] == [("conversion", 0.03)]  # kd's gap is within its noise
    gap = statistics.fmean(100 * g for g in MASKED.values())
    assert found[0].gap == pytest.approx(gap) and found[0].n == 3
    table = attack_table(exp)
    assert table is not None
    notes = [note for note in table.notes if "gradient masking" in note]
    assert len(notes) == 1 and notes[0].startswith("`conversion`:")
    assert f"lower by {gap:.1f} points" in notes[0]
    assert "its gradient estimator: ann" in notes[0]
    assert not any(note.startswith(("`kd`", "`direct`")) for note in table.notes)


def test_no_masking_note_when_square_is_not_lower(attack_store: str) -> None:
    """`older-tag`: square not attacked at all; `default_attack`: square above pgd everywhere."""
    exp = load_experiment(attack_store, "older-tag")
    assert maskings(exp) == []
    table = attack_table(exp)
    assert table is not None and not any("masking" in note for note in table.notes)
    assert [c.name for c in table.columns] == ["gradient", "clean", "pgd 0.03"]
    assert TEACHER not in dict(table.rows)  # no teacher_attack metrics: no teacher row


def test_a_tag_without_the_gradient_field_falls_back_to_the_contract(attack_store: str) -> None:
    exp = load_experiment(attack_store, "older-tag")
    default = getattr(Capabilities(), "attack_gradient", None)
    assert gradient_estimator(exp, "kd") == default
    table = attack_table(exp)
    assert table is not None and dict(table.rows)["kd"][0] == (default or NOT_RECORDED)


def test_the_report_places_table_and_figure_after_the_noise_tables(attacked_report: Path, read_csv) -> None:
    folder = attacked_report.parent
    for suffix in ("md", "tex", "csv"):
        assert (folder / "tables" / f"accuracy_vs_eps.{suffix}").stat().st_size > 0
    for suffix in ("png", "pdf"):
        assert (folder / "figures" / f"accuracy_vs_eps.{suffix}").stat().st_size > 0
    index = attacked_report.read_text()
    noise, table, figure, steps = (
        index.index(key)
        for key in (
            "(tables/accuracy_vs_noise.md)",
            "(tables/accuracy_vs_eps.md)",
            "(figures/accuracy_vs_eps.png)",
            "(tables/accuracy_vs_time_steps.md)",
        )
    )
    assert noise < table < figure < steps
    csv = read_csv(folder / "tables" / "accuracy_vs_eps.csv")
    assert float(csv["kd"]["pgd 0.03 mean"]) == pytest.approx(_expected("kd", "pgd", 0.03).mean, abs=1e-12)
    assert csv["conversion"]["gradient"] == "ann"


def test_the_figure_has_a_panel_per_attack_and_eps_zero_is_clean(attack_store: str, tmp_path: Path) -> None:
    exp = load_experiment(attack_store, "attacked")
    frame = attack_frame(exp)
    assert sorted(set(frame["attack"])) == sorted(ATTACKS)
    assert set(frame["method"]) == {TEACHER, *METHODS}
    kd_zero = frame[(frame["method"] == "kd") & (frame["attack"] == "pgd") & (frame["eps"] == 0)]
    assert sorted(kd_zero["accuracy"]) == pytest.approx(sorted(0.9 + 0.005 * seed for seed in SEEDS))
    drawn = attack_figure(exp, tmp_path)
    assert drawn is not None and drawn.key == "accuracy_vs_eps"
    assert (tmp_path / "accuracy_vs_eps.png").stat().st_size > 0 and (tmp_path / "accuracy_vs_eps.pdf").exists()


def test_the_latex_and_markdown_render(attack_store: str) -> None:
    table = attack_table(load_experiment(attack_store, "attacked"))
    assert table is not None
    markdown = to_markdown(table)
    assert markdown.splitlines()[0].startswith("| model | n | gradient | clean | fgsm 0.01 |")
    latex = to_latex(table)
    assert latex.count(r"\begin{tabular}") >= 2  # split into blocks that fit the text width
    assert latex.count(r"teacher (ANN) & 3 & ") == latex.count(r"\begin{tabular}")  # labels in every block


def test_nothing_without_attack_metrics(written_store: str, tmp_path: Path) -> None:
    exp = load_experiment(written_store, "complete")
    assert attack_table(exp) is None
    assert attack_frame(exp).empty
    assert attack_figure(exp, tmp_path) is None
    assert not list(tmp_path.iterdir())
    report = build_report(written_store, "complete", tmp_path / "report")
    assert not list((report.parent / "tables").glob("accuracy_vs_eps.*"))
    assert not list((report.parent / "figures").glob("accuracy_vs_eps.*"))
    assert "accuracy_vs_eps" not in report.read_text()
