"""The ResNet family (`arch: resnet`): basic blocks; `depth` and `width` are its arguments.

Depths 18 and 34 are ImageNet-style 4-stage layouts; any other depth 6n+2 (8, 14, 20, ...) is a
CIFAR-style 3-stage network. Images need not be square: a downsampling step halves each axis
longer than one pixel and is skipped once the feature map is 1x1, so deep networks also fit 8x8
inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from harness.errors import HarnessInputError
from harness.models.args import ImageShape
from harness.models.base import ActivationFactory, DepthWidthArgs, SpikingNetwork, conv_bn, halving_stride

_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def resnet_layout(depth: int) -> tuple[int, ...]:
    """Blocks per stage for `depth`.

    Raises:
        HarnessInputError: not 18, 34 or 6n+2.
    """
    if depth in _LAYOUTS:
        return _LAYOUTS[depth]
    if depth >= 8 and (depth - 2) % 6 == 0:
        n = (depth - 2) // 6
        return (n, n, n)
    raise HarnessInputError(f"resnet depth {depth} is not supported; expected 18, 34 or 6n+2 (8, 14, 20, 32, ...)")


class BasicBlock(nn.Module):
    """Spiking/ANN residual block: act(BN(conv(act(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], activation: ActivationFactory) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.act1 = activation()
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != (1, 1) or c_in != c_out else nn.Identity()
        self.act2 = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class ResNet(SpikingNetwork):
    """ResNet with basic blocks; stage k has `width * 2**k` channels."""

    def __init__(
        self,
        depth: int,
        width: int,
        in_channels: int,
        num_classes: int,
        image_shape: ImageShape,
        activation: ActivationFactory,
        pool: str = "max",
    ) -> None:
        super().__init__(in_channels, width, activation)
        stages: dict[str, nn.Module] = {}
        c_in, size = width, image_shape
        for k, blocks in enumerate(resnet_layout(depth)):
            c_out = width * 2**k
            stride = halving_stride(size) if k > 0 else (1, 1)
            size = (-(-size[0] // stride[0]), -(-size[1] // stride[1]))
            layers = [
                BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else (1, 1), activation)
                for i in range(blocks)
            ]
            stages[f"stage{k + 1}"] = nn.Sequential(*layers)
            c_in = c_out
        self.body = nn.ModuleDict(stages)
        self.tap_channels = {name: width * 2**k for k, name in enumerate(stages)}
        self.classifier = nn.Linear(c_in, num_classes)

    def checkpoint_units(self, stage: nn.Module) -> list[nn.Module]:
        """Each residual block of the stage."""
        return list(stage)


class ResNetArgs(DepthWidthArgs):
    """`student.arch: resnet` (or `teacher.arch`): `depth` 18, 34 or 6n+2; base `width` in channels."""

    depth: int = 8
    network = ResNet

    @classmethod
    def layout(cls, depth: int) -> object:
        return resnet_layout(depth)
