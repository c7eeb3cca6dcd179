"""Trained networks for the attack tests: a tiny spiking VGG and a converted one, trained once per session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.config.resolve import trial_config
from harness.config.sections import TrialConfig
from harness.data import DataSplits
from harness.methods import Method, TrialContext, create_method
from harness.trial import load_trial_data
from tests.conftest import TINY

# A spiking VGG-5 that reaches about 0.55 on digits in 2 epochs (2-3 s on 2 cores); a one-epoch
# teacher of its own (for `transfer`), fixed for every seed.
STUDENT: dict[str, Any] = {
    **TINY,
    "student.arch": "vgg",
    "student.depth": 5,
    "student.width": 8,
    "train.batch_size": 32,
    "train.epochs": 2,
    "teacher.epochs": 1,
    "teacher.seed": 0,
    "eval.noise": {},
    "eval.time_steps": [2],
    "eval.reference_time_steps": 2,
}


@dataclass
class Trained:
    """A method trained through the real loop, with its data and config."""

    method: Method
    data: DataSplits
    config: TrialConfig
    log: list[str]

    def with_attacks(self, attacks: dict[str, Any], **overrides: Any) -> TrialConfig:
        """The trial's config with `eval.attacks` (and other keys) set, validated."""
        return trial_config({**self.config.flat(), "eval.attacks": attacks, **overrides})


def train_method(method: str, teacher_cache: Path, **overrides: Any) -> Trained:
    """`method` trained for `train.epochs` epochs of STUDENT (with `overrides`) on the CPU."""
    config = trial_config({**STUDENT, "method": method, **overrides})
    torch.manual_seed(config.seed)
    cpu = torch.device("cpu")
    data = load_trial_data(config, cpu)
    lines: list[str] = []
    trained = create_method(method, TrialContext(config, data, cpu, teacher_cache, lines.append))
    for epoch in range(1, config.train.epochs + 1):
        trained.train_one_epoch(epoch)
    return Trained(trained, data, config, lines)


@pytest.fixture(scope="session")
def direct_student(teacher_cache: Path) -> Trained:
    """A spiking VGG-5 trained directly (surrogate gradients) for 2 epochs."""
    return train_method("direct", teacher_cache)


@pytest.fixture(scope="session")
def converted(teacher_cache: Path) -> Trained:
    """A QCFS VGG-5 trained for 2 epochs and converted (IF neurons, no surrogate)."""
    return train_method("conversion", teacher_cache)


@pytest.fixture
def trained_with(teacher_cache: Path) -> Callable[..., Trained]:
    """`trained_with(method, **overrides)`: another trained method (a different seed, say)."""
    return lambda method, **overrides: train_method(method, teacher_cache, **overrides)
