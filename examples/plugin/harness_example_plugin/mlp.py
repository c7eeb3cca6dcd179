"""`mlp`: a spiking multilayer perceptron, the smallest model family there is.

A model family is one file: its arguments (`MLPArgs`, validated by pydantic) and the network it
builds. Layout over `[T, B, ...]`, like every harness network:

- the stem: the image flattened, a linear layer of `hidden` units, BN and a neuron (under the
  direct encoding it runs once and its output is repeated T times, as a CNN's stem is);
- `hidden2..layers`: a linear layer, BN and a neuron each (`layers` hidden layers in all);
- a linear classifier on each step's output.

Any image shape works: the first layer takes all C x H x W values, so images need not be
square. The feature taps are vectors, `[T, B, hidden]` (the stages and `pool`, the last hidden
layer): pair them with a teacher's `pool` for feature KD. With ReLU the family is an ANN (a
teacher); every weight sits in a linear layer followed by its BatchNorm, so ANN-to-SNN
conversion folds and converts it too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from harness.models import ActivationFactory, ModelArgs, SpikingNetwork
from harness.models.encoders import DirectEncoding


def _linear_bn(n_in: int, n_out: int, flatten: bool = False) -> SeqToANNContainer:
    """A linear layer and its BatchNorm over `[T, B, n_in]` (or `[T, B, C, H, W]` flattened first)."""
    layers = [nn.Flatten()] if flatten else []
    return SeqToANNContainer(*layers, nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out))


class MLP(SpikingNetwork):
    """The network `MLPArgs.build` returns."""

    def __init__(
        self,
        args: MLPArgs,
        in_channels: int,
        num_classes: int,
        image_shape: tuple[int, int],
        activation: ActivationFactory,
    ) -> None:
        nn.Module.__init__(self)  # not SpikingNetwork's convolutional stem: this family's own, below
        self.encoder = DirectEncoding()  # the harness sets the trial's
        self.stem = _linear_bn(in_channels * image_shape[0] * image_shape[1], args.hidden, flatten=True)
        self.stem_act = activation()
        stages = {
            f"hidden{i}": nn.Sequential(_linear_bn(args.hidden, args.hidden), activation())
            for i in range(2, args.layers + 1)
        }
        self.body = nn.ModuleDict(stages)
        self.tap_channels = dict.fromkeys(stages, args.hidden)
        self.classifier = nn.Linear(args.hidden, num_classes)

    def forward(
        self, x: Tensor, time_steps: int = 1, return_features: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Per-step logits `[T, B, K]` of images `[B, C, H, W]` (and the taps, each `[T, B, hidden]`)."""
        first = self.stem(self.encoder(x, time_steps))  # [1 or T, B, hidden]
        h = self.stem_act(first.expand(time_steps, *first.shape[1:]).contiguous())
        features: dict[str, Tensor] = {}
        for name, stage in self.body.items():
            h = features[name] = stage(h)
        features["pool"] = h
        logits = self.classifier(h)
        return (logits, features) if return_features else logits


class MLPArgs(ModelArgs):
    """`student.arch: mlp`: `hidden` units in each of `layers` hidden layers."""

    hidden: Annotated[int, Field(ge=1)] = 64
    layers: Annotated[int, Field(ge=1, le=8)] = 2

    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max") -> MLP:
        del pool  # no pooling layers
        return MLP(self, in_channels, num_classes, image_shape, activation)
