from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.methods.kd import FeatureAdapter, kd_loss
from harness.trial import train


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


def test_feature_kd_trains_the_adapter(make_config, teacher_cache: Path) -> None:
    config = make_config(
        "kd", **{"kd.beta": 1.0, "kd.student_layer": "stage2", "kd.teacher_layer": "stage3", "train.epochs": 1}
    )
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
