"""What every model family builds: a `SpikingNetwork` over the multi-step layout `[T, B, ...]`.

A network takes static images `[B, C, H, W]` in [0, 1] and a number of time steps T, and returns
per-step logits `[T, B, K]` (the prediction is their mean over T; an ANN is the case T = 1).
Its `encoder` (`harness.models.encoders`, chosen by the trial's `encoding.name`) turns the images
into the input sequence; convolutions and BatchNorm run on the folded `[T*B, ...]` batch
(spikingjelly's `SeqToANNContainer`) and activations see `[T, B, ...]`, so a multi-step LIF layer
integrates over T. An input that is the same at every step (direct encoding: a one-step
sequence) goes through the stem once and the stem's output is repeated T times, which saves
T-1 stem convolutions per sample.

`checkpoint_activations = True` on a network recomputes each checkpoint unit (a residual
block, a VGG block) in the backward pass instead of storing its activations
(`harness.models.recompute`): less BPTT memory, one more forward pass per training step.

`create_model(arch, ..., **args)` builds a registered family by name, as timm's does; the
family (a `harness.models.ModelArgs` subclass, `harness.models.args`) validates its own `args`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field, ValidationError, field_validator
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from harness.config.base import describe_error, fields_of
from harness.errors import HarnessInputError
from harness.models.args import MODELS, ImageShape, ModelArgs, model_family
from harness.models.encoders import DirectEncoding, Encoder
from harness.models.recompute import run_recomputed

ActivationFactory = Callable[[], nn.Module]


def as_image_shape(shape: ImageShape | int) -> ImageShape:
    """`(height, width)`, from an int for a square image."""
    if isinstance(shape, int):
        return (shape, shape)
    height, width = shape
    return (int(height), int(width))


def halving_stride(shape: ImageShape) -> tuple[int, int]:
    """Stride 2 along the axes longer than one pixel, 1 along the others: a non-square map
    (or a 1-pixel-high one) keeps downsampling the way it can."""
    return (2 if shape[0] > 1 else 1, 2 if shape[1] > 1 else 1)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int]) -> SeqToANNContainer:
    """A convolution (no bias, `kernel // 2` padding) and its BatchNorm, over `[T, B, ...]`."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return SeqToANNContainer(conv, nn.BatchNorm2d(c_out))


class SpikingNetwork(nn.Module):
    """Base of every family: encoder, stem, body, global pooling and a linear classifier.

    Subclasses fill `self.body` (an `nn.ModuleDict` of named stages whose outputs are the
    feature taps, each `[T, B, C, H, W]`), `self.tap_channels` (channels of each tap) and
    `self.classifier`.
    """

    tap_channels: dict[str, int]

    encoder: Encoder
    stem: SeqToANNContainer
    stem_act: nn.Module
    body: nn.ModuleDict
    classifier: nn.Linear
    checkpoint_activations: bool = False
    """Recompute each unit of `checkpoint_units` in the backward pass (training only)."""

    def __init__(self, in_channels: int, width: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.encoder = DirectEncoding()  # `harness.context.network_for` sets the trial's
        self.stem = conv_bn(in_channels, width, 3, 1)
        self.stem_act = activation()

    def forward(
        self, x: Tensor, time_steps: int = 1, return_features: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Runs the network on static images.

        Args:
            x: Images `[B, C, H, W]` in [0, 1]; the encoder normalises or encodes them.
            time_steps: Number of simulation steps T (1 for an ANN).
            return_features: Also return the named feature taps, each `[T, B, ...]`.

        Returns:
            Per-step logits `[T, B, K]`; the prediction is their mean over T.
        """
        stem = self.stem(self.encoder(x, time_steps))  # [1 or T, B, ...]
        h = self.stem_act(stem.expand(time_steps, *stem.shape[1:]).contiguous())
        features: dict[str, Tensor] = {}
        for name, stage in self.body.items():
            h = self._run_stage(stage, h)
            features[name] = h
        pooled = h.mean(dim=(-2, -1))
        features["pool"] = pooled
        logits = self.classifier(pooled)
        return (logits, features) if return_features else logits

    def _run_stage(self, stage: nn.Module, h: Tensor) -> Tensor:
        if not (self.checkpoint_activations and self.training and torch.is_grad_enabled()):
            return stage(h)
        for unit in self.checkpoint_units(stage):
            h = run_recomputed(unit, h)
        return h

    def checkpoint_units(self, stage: nn.Module) -> list[nn.Module]:
        """The modules of a stage that `checkpoint_activations` recomputes one at a time."""
        return [stage]

    def feature_channels(self) -> dict[str, int]:
        """Channel count of each feature tap (for KD adapters)."""
        return {**self.tap_channels, "pool": self.classifier.in_features}


class DepthWidthArgs(ModelArgs):
    """Arguments of a CNN family sized by a `depth` it has a layout for and a base `width`.

    A subclass names its `network` class (built as `network(depth, width, in_channels,
    num_classes, image_shape, activation, pool)`), its `layout(depth)` (which raises
    HarnessInputError for a depth it lacks) and its default `depth`.
    """

    depth: int
    width: Annotated[int, Field(ge=1)] = 16
    network: ClassVar[type[SpikingNetwork]]

    @classmethod
    def layout(cls, depth: int) -> object:
        """The family's layout of `depth`; raises HarnessInputError if it has none."""
        raise NotImplementedError

    @field_validator("depth")
    @classmethod
    def _supported(cls, depth: int) -> int:
        try:
            cls.layout(depth)
        except HarnessInputError as exc:
            raise ValueError(str(exc)) from None
        return depth

    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max") -> SpikingNetwork:
        return self.network(self.depth, self.width, in_channels, num_classes, image_shape, activation, pool)


def list_models() -> list[str]:
    """Names of the registered families."""
    return MODELS.names()


def create_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    image_shape: ImageShape | int,
    activation: ActivationFactory,
    pool: str = "max",
    encoder: Encoder | None = None,
    **args: Any,
) -> SpikingNetwork:
    """Builds family `arch` with its own `args` (`depth=8, width=16` for the CNNs).

    Args:
        arch: A registered family (`list_models()`).
        in_channels, num_classes: The data's channels and classes.
        image_shape: The images' (height, width); an int for square images.
        activation: The neuron of every layer (ReLU, LIF, QCFS, IF).
        pool: "max" or "avg" pooling where the family pools.
        encoder: The input encoding (default: direct, without normalisation).
        **args: The family's arguments, validated by it.

    Raises:
        HarnessInputError: unknown family or arguments it rejects.
    """
    family = model_family(arch)
    try:
        spec = family.model_validate({"arch": arch, **args})
    except ValidationError as exc:
        key, message = describe_error(exc.errors()[0], fields_of(family))
        raise HarnessInputError(f"{arch}: {key}: {message}") from None
    net = spec.build(
        in_channels=in_channels,
        num_classes=num_classes,
        image_shape=as_image_shape(image_shape),
        activation=activation,
        pool=pool,
    )
    if encoder is not None:
        net.encoder = encoder
    return net


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
