"""ResNet and VGG families over the multi-step layout `[T, B, ...]`.

Convolutions and BatchNorm run on the folded `[T*B, ...]` batch (spikingjelly's
`SeqToANNContainer`); activations see `[T, B, ...]`, so a multi-step LIF layer integrates over
T. The stem convolution and its BatchNorm see the static image once and their output is
repeated T times (direct encoding), which saves T-1 stem convolutions per sample.

Input sizes: a 3x3 stride-1 stem serves 8x8 (digits), 28x28 (MNIST) and 32x32 (CIFAR); a
downsampling step is skipped once the feature map is 1x1, so deep networks also fit 8x8.

`checkpoint_activations = True` on a network recomputes each checkpoint unit (a residual
block, a VGG block) in the backward pass instead of storing its activations
(`harness.models.recompute`): less BPTT memory, one more forward pass per training step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from harness.errors import HarnessInputError
from harness.models.recompute import run_recomputed
from harness.registry import Registry

ActivationFactory = Callable[[], nn.Module]


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> SeqToANNContainer:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return SeqToANNContainer(conv, nn.BatchNorm2d(c_out))


class SpikingNetwork(nn.Module):
    """Base of every family: stem, body, global pooling and a linear classifier.

    Subclasses fill `self.body` (an `nn.ModuleDict` of named stages whose outputs are the
    feature taps), `self.tap_channels` (channels of each tap) and `self.classifier`.
    """

    tap_channels: dict[str, int]

    stem: SeqToANNContainer
    stem_act: nn.Module
    body: nn.ModuleDict
    classifier: nn.Linear
    checkpoint_activations: bool = False
    """Recompute each unit of `checkpoint_units` in the backward pass (training only)."""

    def __init__(self, in_channels: int, width: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, width, 3, 1)
        self.stem_act = activation()

    def forward(
        self, x: Tensor, time_steps: int = 1, return_features: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Runs the network on static images.

        Args:
            x: Images `[B, C, H, W]`, already normalised.
            time_steps: Number of simulation steps T (1 for an ANN).
            return_features: Also return the named feature taps, each `[T, B, ...]`.

        Returns:
            Per-step logits `[T, B, K]`; the prediction is their mean over T.
        """
        stem = self.stem(x.unsqueeze(0))
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


class BasicBlock(nn.Module):
    """Spiking/ANN residual block: act(BN(conv(act(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride)
        self.act1 = activation()
        self.conv2 = _conv_bn(c_out, c_out, 3, 1)
        self.shortcut = _conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        self.act2 = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


# ImageNet-style layouts (4 stages); any other depth 6n+2 is a CIFAR-style 3-stage network.
_RESNET_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _resnet_layout(depth: int) -> tuple[int, ...]:
    if depth in _RESNET_LAYOUTS:
        return _RESNET_LAYOUTS[depth]
    if depth >= 8 and (depth - 2) % 6 == 0:
        n = (depth - 2) // 6
        return (n, n, n)
    raise HarnessInputError(f"resnet depth {depth} is not supported; expected 18, 34 or 6n+2 (8, 14, 20, 32, ...)")


class ResNet(SpikingNetwork):
    """ResNet with basic blocks; stage k has `width * 2**k` channels."""

    def __init__(
        self,
        depth: int,
        width: int,
        in_channels: int,
        num_classes: int,
        image_size: int,
        activation: ActivationFactory,
        pool: str = "max",
    ) -> None:
        super().__init__(in_channels, width, activation)
        stages: dict[str, nn.Module] = {}
        c_in, size = width, image_size
        for k, blocks in enumerate(_resnet_layout(depth)):
            c_out = width * 2**k
            stride = 2 if k > 0 and size > 1 else 1
            size = (size + stride - 1) // stride
            layers = [
                BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, activation) for i in range(blocks)
            ]
            stages[f"stage{k + 1}"] = nn.Sequential(*layers)
            c_in = c_out
        self.body = nn.ModuleDict(stages)
        self.tap_channels = {name: width * 2**k for k, name in enumerate(stages)}
        self.classifier = nn.Linear(c_in, num_classes)

    def checkpoint_units(self, stage: nn.Module) -> list[nn.Module]:
        """Each residual block of the stage."""
        return list(stage)


# Standard VGG convolution layouts in units of 64 channels; "M" is a 2x2 pooling.
_VGG_LAYOUTS: dict[int, list[int | str]] = {
    5: [1, "M", 2, "M", 4, 4, "M"],
    7: [1, 1, "M", 2, 2, "M", 4, 4, "M"],
    11: [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    13: [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    16: [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
    19: [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"],
}


def _vgg_layout(depth: int) -> list[int | str]:
    if depth not in _VGG_LAYOUTS:
        raise HarnessInputError(f"vgg depth {depth} is not supported; expected one of {sorted(_VGG_LAYOUTS)}")
    return _VGG_LAYOUTS[depth]


class VGG(SpikingNetwork):
    """VGG with BatchNorm and one linear classifier; the stem is the first convolution.

    Pooling is max-pooling by default (the max of spikes is a spike); conversion uses
    `pool="avg"`. A pooling step at a 1x1 feature map is dropped.
    """

    def __init__(
        self,
        depth: int,
        width: int,
        in_channels: int,
        num_classes: int,
        image_size: int,
        activation: ActivationFactory,
        pool: str = "max",
    ) -> None:
        layout = _vgg_layout(depth)
        super().__init__(in_channels, width * int(layout[0]), activation)
        blocks: dict[str, nn.Module] = {}
        self.tap_channels = {}
        current: list[nn.Module] = []
        c_in, size = width * int(layout[0]), image_size
        for item in layout[1:]:
            if item == "M":
                if size > 1:
                    pool_layer = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
                    current.append(SeqToANNContainer(pool_layer))
                    size //= 2
                name = f"block{len(blocks) + 1}"
                blocks[name] = nn.Sequential(*current)
                self.tap_channels[name] = c_in
                current = []
                continue
            c_out = width * int(item)
            current += [_conv_bn(c_in, c_out, 3, 1), activation()]
            c_in = c_out
        self.body = nn.ModuleDict(blocks)
        self.classifier = nn.Linear(c_in, num_classes)


@dataclass(frozen=True)
class ModelFamily:
    """A registry entry: how to build a family and which depths it has."""

    build: Callable[..., SpikingNetwork]
    check_depth: Callable[[int], object]


MODELS: Registry[ModelFamily] = Registry("model architecture")
MODELS.register("resnet")(ModelFamily(build=ResNet, check_depth=_resnet_layout))
MODELS.register("vgg")(ModelFamily(build=VGG, check_depth=_vgg_layout))


def list_models() -> list[str]:
    """Names of the registered families."""
    return MODELS.names()


def create_model(
    arch: str,
    *,
    depth: int,
    width: int,
    in_channels: int,
    num_classes: int,
    image_size: int,
    activation: ActivationFactory,
    pool: str = "max",
) -> SpikingNetwork:
    """Builds a network of family `arch` with the given activation (ReLU, LIF, QCFS, IF).

    Raises:
        HarnessInputError: unknown family or unsupported depth.
    """
    family = MODELS.get(arch)
    family.check_depth(depth)
    return family.build(depth, width, in_channels, num_classes, image_size, activation, pool)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
