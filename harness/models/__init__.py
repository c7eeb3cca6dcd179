"""Networks over the multi-step layout `[T, B, ...]`, built by registered model families.

One definition per family serves every role: with ReLU it is the ANN teacher, with LIF neurons
the spiking student, with QCFS or IF activations the conversion baseline. The families (`resnet`,
`vgg`, a plugin's) register under the entry-point group `snn_kd_harness.models`; encoders under
`snn_kd_harness.encoders`. A family is a `ModelArgs` subclass (`harness.models.args`); what it
builds is a `SpikingNetwork` (`harness.models.base`).
"""

from __future__ import annotations

from harness.models.args import MODELS, ImageShape, ModelArgs
from harness.models.base import ActivationFactory, SpikingNetwork, count_parameters, create_model, list_models
from harness.models.encoders import ENCODERS, Encoder, create_encoder, list_encoders
from harness.models.neurons import make_lif, relu

__all__ = [
    "ENCODERS",
    "MODELS",
    "ActivationFactory",
    "Encoder",
    "ImageShape",
    "ModelArgs",
    "SpikingNetwork",
    "count_parameters",
    "create_encoder",
    "create_model",
    "list_encoders",
    "list_models",
    "make_lif",
    "relu",
]
