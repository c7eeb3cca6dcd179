"""Model families keyed by the name used in YAML (`teacher.arch`, `student.arch`).

One definition per family serves every role: with ReLU it is the ANN teacher, with LIF
neurons the spiking student, with QCFS or IF activations the conversion baseline. Every
network takes a static image batch `[B, C, H, W]` and a number of time steps T and returns
per-step logits `[T, B, K]` (direct input encoding; an ANN is the case T = 1).
"""

from __future__ import annotations

from harness.models.families import (
    MODELS,
    ActivationFactory,
    ModelFamily,
    SpikingNetwork,
    count_parameters,
    create_model,
    list_models,
)
from harness.models.neurons import make_lif, relu

__all__ = [
    "MODELS",
    "ActivationFactory",
    "ModelFamily",
    "SpikingNetwork",
    "count_parameters",
    "create_model",
    "list_models",
    "make_lif",
    "relu",
]
