"""ANN-to-SNN conversion: train an ANN, convert it to IF neurons, read the whole time-step
curve off one run at T_max.

Variants (`conversion.variant`):
- `qcfs` (Bu et al., ICLR 2022): the ANN is trained with the quantisation-clip-floor-shift
  activation (`conversion.levels` levels, a learnable threshold per layer), which becomes
  the IF neuron's threshold.
- `max` / `percentile`: threshold balancing of a plain ReLU ANN, each threshold the maximum or
  the `conversion.percentile`-th percentile of that layer's activations on training data.
Either way BatchNorm is folded into the preceding layer, each activation becomes an IF neuron
with soft reset and initial membrane at half its threshold, and pooling is average pooling.
`val_accuracy`, `test_accuracy` and noise are measured on the converted SNN at
`eval.reference_time_steps`; `ann_test_accuracy` is the ANN before conversion.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from baselines.conversion_core import activation_thresholds, check_convertible, convert, qcfs_factory
from harness.config import TrialConfig
from harness.methods import register_method
from harness.methods.base import network_for
from harness.methods.student import StudentMethod
from harness.models import ActivationFactory, SpikingNetwork, create_model, relu
from harness.training import accuracy, noise_accuracies


def _activation(config: TrialConfig) -> ActivationFactory:
    conversion = config.conversion
    return qcfs_factory(conversion.levels, conversion.threshold_init) if conversion.variant == "qcfs" else relu


@register_method("conversion")
class ConversionMethod(StudentMethod):
    """Trains the ANN with cross-entropy (the shared loop), converts it lazily for evaluation."""

    sections = frozenset({"student", "conversion", "train"})
    _snn: SpikingNetwork | None = None

    @classmethod
    def preflight(cls, config: TrialConfig) -> None:
        # Convertibility does not depend on the input shape: check a nominal one.
        student = config.student
        nominal = dict(in_channels=3, num_classes=10, image_size=32)
        ann = create_model(
            student.arch,
            depth=student.depth,
            width=student.width,
            activation=_activation(config),
            pool="avg",
            **nominal,
        )
        check_convertible(ann)

    def build_network(self) -> SpikingNetwork:
        """The ANN to convert: `student.*` with QCFS or ReLU activations and average pooling."""
        ann = network_for(self.ctx, self.ctx.config.student, _activation(self.ctx.config), pool="avg")
        check_convertible(ann)
        return ann

    @property
    def ann(self) -> SpikingNetwork:
        return self.student

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.ann(images, 1).mean(0), labels)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self._snn = None  # the weights change: convert again when next evaluated
        return super().train_one_epoch(epoch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._snn = None
        super().load_state_dict(state)

    @property
    def eval_time_steps(self) -> int:
        return self.ctx.config.eval.reference_time_steps

    def network(self) -> SpikingNetwork:
        if self._snn is None:
            self._snn = convert(self.ann.eval(), self._thresholds())
        return self._snn

    def _thresholds(self) -> dict[str, float] | None:
        conversion, data = self.ctx.config.conversion, self.ctx.data
        if conversion.variant == "qcfs":
            return None  # the learned QCFS thresholds
        return activation_thresholds(
            self.ann, data.normalize(data.train_x), mode=conversion.variant, percentile=conversion.percentile
        )

    def extra_metrics(self) -> dict[str, float]:
        """The ANN before conversion: clean test accuracy (`ann_test_accuracy`) and under every
        noise of `eval.noise` (`ann_noise/<type>/<level>`), which separates what conversion
        loses from what the ANN itself lacks."""
        data, cfg = self.ctx.data, self.ctx.config
        evaluate = {"time_steps": 1, "normalize": data.normalize, "batch_size": cfg.train.eval_batch_size}
        return {"ann_test_accuracy": accuracy(self.ann, data.test_x, data.test_y, **evaluate)} | noise_accuracies(
            self.ann, data.test_x, data.test_y, cfg.eval.noise, prefix="ann_noise/", **evaluate
        )
