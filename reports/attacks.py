"""Accuracy under adversarial attacks: the accuracy-versus-eps table and the long-form data of its figure.

Final runs log `attack/<name>/<eps>` (`harness.contract.attack_metric`): test accuracy under an
L-infinity attack of budget eps in [0, 1] pixel space, at the reference T. `fgsm` and `pgd` are
white-box attacks through the method's own gradient estimator (what it declares as
`Capabilities.attack_gradient`, read from the raw `harness.capabilities` tag so that a store
written before the field existed still reads), `transfer` uses images crafted on the ANN teacher
(the same images for every method) and `square` is a gradient-free, score-based attack on a small
subset of the test set. The teacher's own figures, where logged, are `teacher_attack/<name>/<eps>`.

A gradient-free attack that beats PGD at the same budget means PGD's gradients were poor: the
white-box figure is then likely inflated by gradient masking, and the table says so in a note
(`masking_notes`).

`reports.contents.all_tables` places the table after the noise tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import contract
from harness.contract import Tag, metric_column, parse_noise_metric
from reports.collapse import collapse_groups, collapses, marked
from reports.loading import ExperimentRuns
from reports.render import DASH, Cell, Column, Stat, Table, words
from reports.significance import per_seed_samples
from reports.tables import (
    SEED,
    TEACHER,
    metric_stat,
    per_seed,
    renamed,
    teacher_runs,
)

KEY = "accuracy_vs_eps"  # the table's and the figure's file stem
ATTACK = getattr(contract, "ATTACK", "attack/")
TEACHER_ATTACK = getattr(contract, "TEACHER_ATTACK", "teacher_attack/")
GRADIENT_FIELD = "attack_gradient"  # Capabilities' field naming the white-box gradient estimator
TEACHER_GRADIENT = "exact (ANN)"
GRADIENT_WORDS = {  # Capabilities.attack_gradient's values
    getattr(contract, "ATTACK_GRADIENT_SURROGATE", "surrogate"): "the spiking network through its surrogate "
    "gradient (BPTT over T)",
    getattr(contract, "ATTACK_GRADIENT_ANN", "ann"): "the ANN it was converted from",
}
NOT_RECORDED = "not recorded"
GRADIENT_FREE, CHECKED = "square", "pgd"  # a square accuracy below pgd's flags gradient masking

ATTACK_WORDS = {
    "fgsm": "`fgsm`: one signed-gradient step (white-box)",
    "pgd": "`pgd`: iterated signed-gradient steps projected onto the budget (white-box)",
    "square": "`square`: a gradient-free, score-based attack, on a small subset of the test set",
}


def attack_metrics(exp: ExperimentRuns) -> list[str]:
    """Every `attack/<name>/<eps>` metric of the final runs, by attack name, then eps."""
    prefix = metric_column(ATTACK)
    names = [c.removeprefix("metrics.") for c in exp.finals.columns if c.startswith(prefix)]
    names = [name for name in names if exp.finals[metric_column(name)].notna().any()]
    return sorted(names, key=lambda name: (parse_noise_metric(name)[0], parse_noise_metric(name)[1]))


def attack_label(metric: str) -> str:
    """`attack/pgd/0.03` -> `pgd 0.03`."""
    name, eps = parse_noise_metric(metric)
    return f"{name} {eps:g}"


def gradient_estimator(exp: ExperimentRuns, method: str) -> str | None:
    """What `method`'s white-box attacks differentiate (`Capabilities.attack_gradient`: `surrogate`,
    `ann`), as its runs recorded it in the raw `harness.capabilities` tag, else the contract's
    default for a tag without the field; None where neither has it."""
    runs = exp.runs[exp.tag(Tag.METHOD) == method]
    for text in exp.tag(Tag.CAPABILITIES, runs).dropna():
        try:
            raw = json.loads(str(text))
        except ValueError:
            continue
        if isinstance(raw, dict) and raw.get(GRADIENT_FIELD):
            return str(raw[GRADIENT_FIELD])
    declared = getattr(exp.capabilities(method), GRADIENT_FIELD, None)
    return str(declared) if declared else None


def teacher_attack(metric: str) -> str:
    """`attack/pgd/0.03` -> `teacher_attack/pgd/0.03`: the teacher's accuracy under the same attack."""
    return renamed(metric, TEACHER_ATTACK)


@dataclass(frozen=True)
class Masking:
    """At one eps, `method`'s mean accuracy under the gradient-free attack below that under PGD.

    Attributes:
        method: The method.
        eps: The budget.
        square: Mean accuracy under `square` (fraction).
        pgd: Mean accuracy under `pgd` (fraction), on square's images where the runs kept their
            per-image predictions.
        gap: `pgd - square` in points (100 x fraction), the mean over the seeds that ran both.
        spread: The standard deviation of that gap over those seeds, in points (NaN for one seed).
        n: The seeds that ran both.
    """

    method: str
    eps: float
    square: float
    pgd: float
    gap: float
    spread: float
    n: int


def _on_the_same_images(
    exp: ExperimentRuns, runs: pd.DataFrame, metric: str, subset_metric: str
) -> dict[int, float] | None:
    """Per seed, the accuracy under `metric` on the images `subset_metric` evaluated (square's
    subset), from the runs' per-image predictions; None where a run kept none."""
    on_all = per_seed_samples(exp, runs, metric)
    on_subset = per_seed_samples(exp, runs, subset_metric)
    if on_all is None or on_subset is None:
        return None
    found = {}
    for seed in on_all.keys() & on_subset.keys():
        chosen = ~np.isnan(on_subset[seed]) & ~np.isnan(on_all[seed])
        if chosen.any():
            found[seed] = float(on_all[seed][chosen].mean())
    return found or None


def maskings(exp: ExperimentRuns) -> list[Masking]:
    """Every (method, eps) whose `square` accuracy is below its `pgd` accuracy by more than the
    run-to-run noise: the mean over seeds of the per-seed gap (`pgd - square`, the seeds that ran
    both) is above 0 and above the gap's standard deviation over those seeds (with one seed there
    is no spread to compare with, and any gap above 0 counts). PGD's accuracy is read on square's
    own subset of images where the runs kept their per-image predictions (the same images, so a
    subset that happens to be harder is no false alarm), else on the whole test split."""
    reference = exp.settings.reference_time_steps
    by_name: dict[str, dict[float, str]] = {}
    for metric in attack_metrics(exp):
        name, eps = parse_noise_metric(metric)
        by_name.setdefault(name, {})[eps] = metric
    found = []
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        for eps, square_metric in by_name.get(GRADIENT_FREE, {}).items():
            pgd_metric = by_name.get(CHECKED, {}).get(eps)
            if pgd_metric is None:
                continue
            square = per_seed(runs, square_metric)
            pgd = _on_the_same_images(exp, runs, pgd_metric, square_metric) or per_seed(runs, pgd_metric)
            gaps = Stat.of(100 * (pgd[seed] - square[seed]) for seed in square.keys() & pgd.keys())
            if gaps is None or gaps.mean <= 0 or (gaps.n > 1 and not gaps.mean > gaps.std):
                continue
            square_mean, pgd_mean = Stat.of(square.values()), Stat.of(pgd.values())
            assert square_mean is not None and pgd_mean is not None
            found.append(Masking(method, eps, square_mean.mean, pgd_mean.mean, gaps.mean, gaps.std, gaps.n))
    return found


def masking_notes(exp: ExperimentRuns, found: list[Masking]) -> list[str]:
    """One note per method of `found`: each eps where square is lower, and what that means."""
    notes = []
    for method in dict.fromkeys(m.method for m in found):
        mine = [m for m in found if m.method == method]
        where = words(
            [
                f"at eps {m.eps:g} square's {m.square:.3f} against pgd's {m.pgd:.3f}, lower by {m.gap:.1f} points"
                + (
                    f" (the gap's std over {m.n} seeds: {m.spread:.1f})"
                    if m.n > 1
                    else " (one seed: no spread to compare)"
                )
                for m in mine
            ]
        )
        gradient = gradient_estimator(exp, method)
        through = f" (its gradient estimator: {gradient})" if gradient else ""
        notes.append(
            f"`{method}`: the gradient-free square attack is more effective than white-box PGD: {where}, more than "
            f"the run-to-run noise. Its white-box figures{through} are likely inflated by gradient masking; "
            "read its robustness off the lowest accuracy of any attack."
        )
    return notes


def attack_table(exp: ExperimentRuns) -> Table | None:
    """Accuracy versus attack budget at the reference T: the teacher (where its attacks are logged)
    and each method, clean then every (attack, eps), mean ± std over the final runs, with each
    method's white-box gradient estimator; None when no final run logged an attack metric."""
    metrics = attack_metrics(exp)
    if not metrics:
        return None
    reference = exp.settings.reference_time_steps
    found = collapses(exp)
    rows: list[tuple[str, tuple[Cell, ...]]] = []
    notes = []
    teacher = teacher_runs(exp)
    teacher_cells = [metric_stat(teacher, teacher_attack(metric)) for metric in metrics]
    if not teacher.empty and any(cell is not None for cell in teacher_cells):
        rows.append((TEACHER, (TEACHER_GRADIENT, metric_stat(teacher, contract.TEACHER_TEST_ACCURACY), *teacher_cells)))
    unattacked, unrecorded = [], []
    for method in exp.methods:
        runs = exp.finals_at(method, reference)
        if runs.empty:
            continue
        cells = [metric_stat(runs, metric) for metric in (contract.TEST_ACCURACY, *metrics)]
        if all(cell is None for cell in cells[1:]):
            unattacked.append(method)
        gradient = gradient_estimator(exp, method)
        if gradient is None:
            unrecorded.append(method)
        rows.append((marked(method, found), (gradient or NOT_RECORDED, *cells)))
    notes += masking_notes(exp, maskings(exp))
    if unattacked:
        notes.append(f"{words([f'`{m}`' for m in unattacked])}: no attack metrics logged ({DASH}).")
    if unrecorded:
        notes.append(
            f"{words([f'`{m}`' for m in unrecorded])}: the runs do not record the gradient estimator of the white-box "
            "attacks (`Capabilities.attack_gradient`; an older store)."
        )
    for (method, label, threshold), group in collapse_groups(found).items():
        seeds = words([str(c.seed) for c in group])
        notes.append(
            f"`{marked(method, found)}`: seed{'s' if len(group) > 1 else ''} {seeds} collapsed (the network more than "
            f"{threshold:g} points below its own {label}; see the noise table); the row's cells include "
            f"{'them' if len(group) > 1 else 'it'}."
        )
    names = list(dict.fromkeys(parse_noise_metric(metric)[0] for metric in metrics))
    described = [ATTACK_WORDS[name] for name in names if name in ATTACK_WORDS]
    gradients = list(dict.fromkeys(str(cells[0]) for _, cells in rows))
    return Table(
        key=KEY,
        title=f"Test accuracy under adversarial attacks at T = {reference}",
        description=(
            "Test accuracy (fraction) on the clean test set and under each adversarial attack (name and budget "
            "eps), for every method at the reference T = "
            f"{reference}{', and for the ANN teacher' if rows and rows[0][0] == TEACHER else ''}. The attacks are "
            "L-infinity: each pixel moves by at most eps, in [0, 1] pixel space (images as the dataset stores "
            f"them, before normalisation), and every method is attacked and evaluated at T = {reference}. "
            + (f"{'; '.join(described)}. " if described else "")
            + "Transfer images (`transfer`) are crafted on the ANN teacher, the same images for every method. "
            "Column `gradient`: what a method's white-box attacks "
            "differentiate"
            + "".join(f"; `{code}`: {GRADIENT_WORDS[code]}" for code in gradients if code in GRADIENT_WORDS)
            + ". "
            f"Final runs with seeds {', '.join(map(str, exp.seeds()))} (n: the number of seeds in a row)."
        ),
        row_header="model",
        columns=(
            Column("gradient"),
            Column("clean", "higher"),
            *(Column(attack_label(metric), "higher") for metric in metrics),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def attack_frame(exp: ExperimentRuns) -> pd.DataFrame:
    """Long form for the figure: model (a method, or the teacher where its attacks are logged), seed,
    attack, eps, accuracy. Each run's clean accuracy is its eps 0 point of every attack that did not
    log eps 0 itself."""
    metrics = attack_metrics(exp)
    columns = ["method", "seed", "attack", "eps", "accuracy"]
    if not metrics:
        return pd.DataFrame(columns=columns)
    reference = exp.settings.reference_time_steps
    logged_zero = {parse_noise_metric(m)[0] for m in metrics if parse_noise_metric(m)[1] == 0}
    names = list(dict.fromkeys(parse_noise_metric(m)[0] for m in metrics))
    sources = [(TEACHER, teacher_runs(exp), contract.TEACHER_TEST_ACCURACY, teacher_attack)]
    sources += [(m, exp.finals_at(m, reference), contract.TEST_ACCURACY, lambda x: x) for m in exp.methods]
    rows = []
    for model, runs, clean, rename in sources:
        if runs.empty or not any(metric_column(rename(m)) in runs.columns for m in metrics):
            continue
        for _, run in runs.iterrows():
            for name in names:
                if name not in logged_zero:
                    rows.append((model, run[SEED], name, 0.0, run.get(metric_column(clean))))
            for metric in metrics:
                name, eps = parse_noise_metric(metric)
                rows.append((model, run[SEED], name, eps, run.get(metric_column(rename(metric)))))
    frame = pd.DataFrame(rows, columns=columns)
    frame["accuracy"] = pd.to_numeric(frame["accuracy"], errors="coerce")
    frame = frame.dropna(subset=["accuracy"])
    # a model's line of an attack it was not attacked with would be its clean point alone
    attacked = frame.groupby(["method", "attack"])["eps"].transform(lambda eps: bool((eps > 0).any()))
    return frame[attacked.astype(bool)].reset_index(drop=True)
