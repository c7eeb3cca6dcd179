"""The VGG family (`arch: vgg`): VGG-5/7/11/13/16/19 with BatchNorm; `depth` and `width` are its arguments.

Pooling is max-pooling by default (the max of spikes is a spike); conversion asks for average
pooling. Images need not be square: a pooling step halves each axis longer than one pixel and is
dropped at a 1x1 feature map, so every depth fits 8x8 inputs and, say, 20x28 ones.
"""

from __future__ import annotations

from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import nn

from harness.errors import HarnessInputError
from harness.models.args import ImageShape
from harness.models.base import ActivationFactory, DepthWidthArgs, SpikingNetwork, conv_bn, halving_stride

# Standard VGG convolution layouts in units of 64 channels; "M" is a 2x2 pooling.
_LAYOUTS: dict[int, list[int | str]] = {
    5: [1, "M", 2, "M", 4, 4, "M"],
    7: [1, 1, "M", 2, 2, "M", 4, 4, "M"],
    11: [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    13: [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    16: [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
    19: [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"],
}


def vgg_layout(depth: int) -> list[int | str]:
    """The layout of VGG-`depth`.

    Raises:
        HarnessInputError: a depth without a standard layout.
    """
    if depth not in _LAYOUTS:
        raise HarnessInputError(f"vgg depth {depth} is not supported; expected one of {sorted(_LAYOUTS)}")
    return _LAYOUTS[depth]


class VGG(SpikingNetwork):
    """VGG with BatchNorm and one linear classifier; the stem is the first convolution."""

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
        layout = vgg_layout(depth)
        super().__init__(in_channels, width * int(layout[0]), activation)
        blocks: dict[str, nn.Module] = {}
        self.tap_channels = {}
        current: list[nn.Module] = []
        c_in, size = width * int(layout[0]), image_shape
        for item in layout[1:]:
            if item == "M":
                window = halving_stride(size)
                if window != (1, 1):
                    pool_layer = nn.MaxPool2d(window) if pool == "max" else nn.AvgPool2d(window)
                    current.append(SeqToANNContainer(pool_layer))
                    size = (size[0] // window[0], size[1] // window[1])
                name = f"block{len(blocks) + 1}"
                blocks[name] = nn.Sequential(*current)
                self.tap_channels[name] = c_in
                current = []
                continue
            c_out = width * int(item)
            current += [conv_bn(c_in, c_out, 3, 1), activation()]
            c_in = c_out
        self.body = nn.ModuleDict(blocks)
        self.classifier = nn.Linear(c_in, num_classes)


class VGGArgs(DepthWidthArgs):
    """`student.arch: vgg`: `depth` one of 5, 7, 11, 13, 16, 19; base `width` (VGG's 64 channels = `width`)."""

    depth: int = 11
    network = VGG

    @classmethod
    def layout(cls, depth: int) -> object:
        return vgg_layout(depth)
