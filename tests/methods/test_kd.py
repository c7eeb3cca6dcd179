from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.config.sections import TrialConfig
from harness.context import TrialContext
from harness.methods import create_method
from harness.methods.kd import FeatureAdapter, KDMethod, kd_loss
from harness.trial import load_trial_data


def test_kd_loss_reduces_to_cross_entropy_at_alpha_zero() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    torch.testing.assert_close(kd_loss(s, t, y, alpha=0.0, temperature=4.0), F.cross_entropy(s, y))


def test_kd_term_matches_the_formula() -> None:
    torch.manual_seed(1)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    tau, alpha = 3.0, 0.7
    p_t = F.softmax(t / tau, dim=-1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / tau, dim=-1))).sum(-1).mean()
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * tau**2 * kl
    torch.testing.assert_close(kd_loss(s, t, y, alpha, tau), expected)
    # The soft term vanishes when the student copies the teacher.
    assert kd_loss(t, t, y, 1.0, tau).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        ((4, 8), (4, 16), (4, 16)),
        ((4, 8, 8, 8), (4, 16, 4, 4), (4, 16, 4, 4)),
        ((4, 16, 4, 4), (4, 16, 4, 4), (4, 16, 4, 4)),
    ],
)
def test_feature_adapter_maps_student_onto_teacher(student, teacher, expected) -> None:
    adapter = FeatureAdapter(student[1], teacher[1])
    assert adapter(torch.randn(student), torch.randn(teacher)).shape == expected
    if student[1] == teacher[1]:
        assert not list(adapter.parameters())  # identity when channels agree


def _kd_method(config: TrialConfig, teacher_cache: Path) -> KDMethod:
    data = load_trial_data(config, torch.device("cpu"))
    method = create_method("kd", TrialContext(config, data, torch.device("cpu"), teacher_cache, lambda _: None))
    assert isinstance(method, KDMethod)
    return method


FEATURE_KD = {"kd.student_layer": "stage2", "kd.teacher_layer": "stage3", "train.epochs": 1}


def test_feature_kd_trains_the_adapter(make_config, teacher_cache: Path) -> None:
    """With `kd.beta > 0` the adapter is built, trained with the student, and its MSE term
    enters the loss with weight beta."""
    method = _kd_method(make_config("kd", **{**FEATURE_KD, "kd.beta": 1.0}), teacher_cache)
    assert method.adapter is not None
    before = {name: p.detach().clone() for name, p in method.adapter.named_parameters()}
    assert before  # student stage2 (16 channels) onto teacher stage3 (32): a 1x1 conv + BN
    method.train_one_epoch(1)
    after = dict(method.adapter.named_parameters())
    unchanged = [name for name, value in before.items() if torch.equal(value, after[name].detach())]
    assert not unchanged, f"adapter parameters not trained: {unchanged}"


def test_feature_kd_adds_beta_times_the_feature_term_to_the_loss(make_config, teacher_cache: Path) -> None:
    """Same seed, same batch: beta = 0 is response KD alone; the feature term is positive and
    scales with beta (the student and the adapter start from the same weights in each build)."""
    losses = {}
    for beta in (0.0, 1.0, 2.0):
        method = _kd_method(make_config("kd", **{**FEATURE_KD, "kd.beta": beta}), teacher_cache)
        assert (method.adapter is None) == (beta == 0.0)
        data = method.ctx.data
        images, labels = data.train_x[:64], data.train_y[:64]
        losses[beta] = method.loss(images, labels).item()
    assert losses[1.0] != losses[0.0]
    feature_term = losses[1.0] - losses[0.0]
    assert feature_term > 0  # an MSE, weighted by beta = 1
    assert losses[2.0] - losses[0.0] == pytest.approx(2 * feature_term, rel=1e-4)
