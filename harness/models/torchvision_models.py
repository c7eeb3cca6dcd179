"""torchvision's classification models as ANN teachers: `teacher.arch: torchvision/<name>`.

Most pre-trained teachers come from torchvision, so its image classifiers (`resnet18`,
`vgg16_bn`, `densenet121`, ...: `torchvision.models.list_models(module=torchvision.models)`) are
one family, `torchvision`, whose variant is the part of `arch` after the slash. They are built
without weights (nothing is downloaded at run time); the weights come from a local file,
`teacher.checkpoint`: torchvision's own `.pth` state dicts load as they are
(`TorchvisionArgs.import_state_dict`), as does a state dict saved from the model.

What the harness adapts, and why:
- `num_classes` is the dataset's; a checkpoint with another head (ImageNet's 1000 classes) is
  refused naming `fc.weight` (or the model's head) and its shape: fine-tune it on the data first,
  or save it with a new head.
- With other than 3 input channels (MNIST's 1), the first convolution is rebuilt for them; a
  3-channel checkpoint is then refused naming that convolution.
- The input is normalised with the training set's mean and std (the teacher's encoder), as
  every teacher's is: a checkpoint fine-tuned with other statistics sees shifted inputs.
- Feature taps for feature KD: `pool`, the input of the last linear layer (the pooled feature
  of a ResNet, VGG's penultimate one), and a ResNet's `layer1`..`layer4` maps.

They are ANNs only: as `student.arch`, or in conversion, they are refused at load, since their
layers are not built from the harness's neuron factory.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.models.args import ImageShape, ModelArgs
from harness.models.encoders import DirectEncoding, Encoder

FAMILY = "torchvision"
TAP_LAYERS = ("layer1", "layer2", "layer3", "layer4")  # ResNet's stages, where a model has them


def torchvision_names() -> list[str]:
    """torchvision's image classifiers, by builder name."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


class TorchvisionNetwork(nn.Module):
    """A torchvision classifier over the harness's layout: images `[B, C, H, W]` in [0, 1] in,
    `[T, B, K]` logits out (the same at every step: it is an ANN), with feature taps.

    The torchvision model is `self.net`, so its state dict is the model's under `net.`.
    """

    encoder: Encoder

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder = DirectEncoding()
        self.net = net
        # Plain attributes, not submodules: the state dict stays the model's own, under `net.`.
        self.__dict__["_taps"] = {name: module for name, module in net.named_children() if name in TAP_LAYERS}
        self.__dict__["_head"] = _last_linear(net)

    def forward(
        self, x: Tensor, time_steps: int = 1, return_features: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        inputs = self.encoder(x, time_steps)  # [1 or T, B, C, H, W]
        lead, batch = inputs.shape[:2]
        captured: dict[str, Tensor] = {}
        handles = []
        if return_features:
            handles = [m.register_forward_hook(_keep(captured, name, output=True)) for name, m in self._taps.items()]
            handles.append(self._head.register_forward_pre_hook(_keep(captured, "pool", output=False)))
        try:
            out = self.net(inputs.flatten(0, 1))
        finally:
            for handle in handles:
                handle.remove()
        if not isinstance(out, Tensor):  # GoogLeNet / Inception in training mode: (logits, aux...)
            out = out[0]

        def steps(value: Tensor) -> Tensor:
            value = value.reshape(lead, batch, *value.shape[1:])
            return value.expand(time_steps, *value.shape[1:]) if lead == 1 else value

        logits = steps(out)
        if not return_features:
            return logits
        return logits, {name: steps(value) for name, value in captured.items()}

    def feature_channels(self) -> dict[str, int]:
        """Channel count of each feature tap (for KD adapters)."""
        channels = {"pool": self._head.in_features}
        for name, stage in self._taps.items():
            convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
            bns = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
            channels[name] = bns[-1].num_features if bns else convs[-1].out_channels
        return channels


def _keep(captured: dict[str, Tensor], name: str, output: bool):
    def hook(_module: nn.Module, inputs: tuple[Tensor, ...], *out: Tensor) -> None:
        captured[name] = out[0] if output else inputs[0]

    return hook


def _last_linear(net: nn.Module) -> nn.Linear:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("it has no linear classifier to take the pooled feature from")
    return linears[-1]


def _with_input_channels(net: nn.Module, in_channels: int) -> None:
    """Rebuilds the first convolution of `net` for `in_channels` input channels."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(
                    parent,
                    name,
                    nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        child.kernel_size,
                        stride=child.stride,
                        padding=child.padding,
                        dilation=child.dilation,
                        bias=child.bias is not None,
                    ),
                )
                return
    raise ValueError("it has no convolution to take the images")


class TorchvisionArgs(ModelArgs):
    """`teacher.arch: torchvision/<name>`: a torchvision image classifier, as the ANN teacher.

    It has no arguments of its own beyond the name; the weights come from `teacher.checkpoint`.
    """

    ann_only: ClassVar[bool] = True

    @classmethod
    def check_arch(cls, arch: str) -> str:
        family, _, name = arch.partition("/")
        known = torchvision_names()
        if family != FAMILY or name not in known:
            raise ValueError(
                f"expected {FAMILY}/<model>, <model> one of torchvision's {len(known)} image classifiers "
                f"(resnet18, resnet34, vgg16_bn, ...: torchvision.models.list_models(module=torchvision.models)); "
                f"got {arch!r}"
            )
        return arch

    @property
    def model_name(self) -> str:
        """The torchvision builder's name (`resnet18`)."""
        return self.arch.partition("/")[2]

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_shape: ImageShape,
        activation: Any,
        pool: str = "max",
    ) -> TorchvisionNetwork:
        del image_shape, pool  # torchvision's models pool adaptively; their own pooling stays
        if not isinstance(activation(), nn.ReLU):
            raise ValueError(f"{self.arch} is an ANN: it takes no spiking or quantised neurons")
        import torchvision

        net = torchvision.models.get_model(self.model_name, weights=None, num_classes=num_classes)
        if in_channels != 3:
            _with_input_channels(net, in_channels)
        return TorchvisionNetwork(net)

    @classmethod
    def import_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's own files (`resnet18-f37072fd.pth`: the model's keys) under `net.`;
        a state dict of a `TorchvisionNetwork` (already under `net.`) as it is."""
        if state and all(key.startswith("net.") for key in state):
            return state
        return {f"net.{key}": value for key, value in state.items()}
