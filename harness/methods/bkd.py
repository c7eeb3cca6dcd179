"""BKDSNN (Xu et al., ECCV 2024): blurred feature KD plus response KD from an ANN teacher.

The student's feature map is blurred (a random part of it masked) and a small generator, trained
with the student, must regenerate the teacher's feature from what is left:

`L = (1 - alpha) CE(z_s, y) + alpha tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau))
     + beta MSE(G(M_lambda(f_s)), f_t)`

- `z_s`, `z_t`: the student's time-averaged logits and the frozen teacher's (`kd_loss`);
- `f_s`: the student's feature at `bkd.student_layer`, averaged over T, `[B, C_s, H, W]`; `f_t`
  the teacher's at `bkd.teacher_layer`, `[B, C_t, H', W']`. Where the spatial sizes differ the
  larger map is average-pooled to the smaller (per axis), as `kd`'s `FeatureAdapter` pools;
- `M_lambda`: a random mask, drawn afresh for every batch from the torch RNG: each spatial
  position of each sample is set to 0 (in every channel) with probability `lambda` (`bkd.lambda`),
  so a fraction lambda of the positions is masked on average (lambda = 0 masks nothing);
- `G`: the generator, `conv3x3(C_s -> C_t) - ReLU - conv3x3(C_t -> C_t)` (with biases, no
  BatchNorm, padding 1), trained with the student (`build_extra_modules`), like KD's adapter;
- the MSE is the mean over every element (`F.mse_loss`), as `kd`'s feature term.

With `beta = 0` no generator is built and the loss is `kd`'s response KD. The layers default to
`last`: the last spatial map (`[T, B, C, H, W]`) each network exposes (a CIFAR ResNet's `stage3`,
an ImageNet ResNet's `stage4`, VGG's last `block<k>`, Spikformer's last `block<k>`, torchvision's
`layer4`), never the pooled vector `pool`. A name that is not a tap, or a tap that is not a
spatial map, is refused with a one-line HarnessInputError naming `bkd.student_layer` (or
`bkd.teacher_layer`): by `preflight` on a nominal build, and again on the trial's data at build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from harness.config import Section
from harness.config.sections import TrialConfig
from harness.errors import HarnessInputError
from harness.methods.kd import DistillationMethod, kd_loss
from harness.models import relu

LAST = "last"
"""A layer name meaning the last spatial feature map of the network."""

NOMINAL = dict(in_channels=3, num_classes=10, image_shape=(32, 32))
"""The input `preflight` builds the networks for: tap names do not depend on the data."""


class BKDConfig(Section):
    """`bkd.*`: the mask fraction `lambda` (the YAML key; `lambda_` in Python), the weight `beta`
    of the blurred feature term, response KD's `alpha` and `temperature`, and the two taps."""

    # `lambda` is a Python keyword: the field is `lambda_`, validated and dumped as `lambda`
    # (the file, `--set bkd.lambda`, `space:`, MLflow params and `harness keys` all say `lambda`).
    model_config = ConfigDict(validate_by_alias=True, validate_by_name=False, serialize_by_alias=True)

    lambda_: Annotated[float, Field(ge=0, lt=1, alias="lambda")] = 0.15
    beta: Annotated[float, Field(ge=0)] = 1.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 4.0
    student_layer: Annotated[str, Field(min_length=1)] = LAST
    teacher_layer: Annotated[str, Field(min_length=1)] = LAST


class FeatureGenerator(nn.Module):
    """`G`: two 3x3 convolutions with a ReLU between them, student channels -> teacher channels."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(student_channels, teacher_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1),
        )

    def forward(self, feature: Tensor) -> Tensor:
        return self.net(feature)


def blur_mask(feature: Tensor, fraction: float) -> Tensor:
    """`M_lambda(f)`: `feature` `[B, C, H, W]` with each spatial position of each sample set to 0
    (in every channel) with probability `fraction`, drawn from the torch RNG."""
    if fraction == 0:
        return feature
    batch, _, height, width = feature.shape
    keep = torch.rand(batch, 1, height, width, device=feature.device) >= fraction
    return feature * keep.to(feature.dtype)


def match_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Both maps at the smaller height and width: the larger one average-pooled (per axis)."""
    size = (min(student.shape[-2], teacher.shape[-2]), min(student.shape[-1], teacher.shape[-1]))
    if tuple(student.shape[-2:]) != size:
        student = F.adaptive_avg_pool2d(student, size)
    if tuple(teacher.shape[-2:]) != size:
        teacher = F.adaptive_avg_pool2d(teacher, size)
    return student, teacher


def blurred_feature_loss(generator: nn.Module, student: Tensor, teacher: Tensor, fraction: float) -> Tensor:
    """`MSE(G(M_lambda(f_s)), f_t)` of time-averaged maps `[B, C_s, H, W]`, `[B, C_t, H', W']`."""
    student, teacher = match_spatial(student, teacher)
    return F.mse_loss(generator(blur_mask(student, fraction)), teacher)


def bkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    student_feature: Tensor,
    teacher_feature: Tensor,
    generator: nn.Module,
    config: BKDConfig,
) -> Tensor:
    """The `bkd` loss of the module docstring from time-averaged logits `[B, K]` and maps `[B, C, H, W]`."""
    loss = kd_loss(student_logits, teacher_logits, labels, config.alpha, config.temperature)
    feature = blurred_feature_loss(generator, student_feature, teacher_feature, config.lambda_)
    return loss + config.beta * feature


def pick_tap(shapes: Mapping[str, tuple[int, ...]], name: str, key: str, network: str) -> str:
    """The spatial tap `name` (or the last one, for `last`) of a network whose taps have `shapes`
    (`[T, B, ...]` each).

    Raises:
        HarnessInputError: one line naming `key`: no such tap, or it is not a `[T, B, C, H, W]` map.
    """
    spatial = [tap for tap, shape in shapes.items() if len(shape) == 5]
    choices = f"its spatial maps are {', '.join(spatial) or 'none'} (or {LAST!r}: the last)"
    if name == LAST:
        if not spatial:
            raise HarnessInputError(f"{key}: {network} has no spatial feature map (its taps: {', '.join(shapes)})")
        return spatial[-1]
    if name not in shapes:
        raise HarnessInputError(f"{key}: {network} has no feature tap {name!r}; {choices}")
    if name not in spatial:
        shape = ", ".join(map(str, shapes[name][2:]))
        raise HarnessInputError(
            f"{key}: {name!r} of {network} is not a spatial feature map (it is [{shape}]); {choices}"
        )
    return name


def tap_shapes(net: nn.Module, images: Tensor, time_steps: int) -> dict[str, tuple[int, ...]]:
    """The shape of each feature tap of `net` on `images`: one forward pass in eval mode, without
    gradients, the random generators forked and the neurons reset after (as `check_network`)."""
    was_training = net.training
    devices = [images.device] if images.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            net.eval()
            _, features = net(images, time_steps, return_features=True)
    finally:
        functional.reset_net(net)
        net.train(was_training)
    return {name: tuple(value.shape) for name, value in features.items()}


def _pick_both(
    config: TrialConfig, student: Mapping[str, tuple[int, ...]], teacher: Mapping[str, tuple[int, ...]]
) -> tuple[str, str]:
    bkd: BKDConfig = config.options
    return (
        pick_tap(student, bkd.student_layer, "bkd.student_layer", f"the student ({config.student.arch})"),
        pick_tap(teacher, bkd.teacher_layer, "bkd.teacher_layer", f"the teacher ({config.teacher.arch})"),
    )


class BKDMethod(DistillationMethod):
    """BKDSNN: response KD plus the blurred feature term on `bkd.student_layer` / `bkd.teacher_layer`."""

    options = BKDConfig
    generator: FeatureGenerator | None = None

    @classmethod
    def preflight(cls, config: TrialConfig) -> None:
        """Refuses a layer that is not a spatial tap of its network, on a nominal build (no data);
        a network that cannot be built or run for the nominal input is left to the build-time check."""
        images = torch.zeros(1, NOMINAL["in_channels"], *NOMINAL["image_shape"])
        try:
            with torch.random.fork_rng(devices=[]):
                student = config.student.build(activation=relu, **NOMINAL)
                teacher = config.teacher.model.build(activation=relu, **NOMINAL)
            shapes = tap_shapes(student, images, 1), tap_shapes(teacher, images, 1)
        except (ValueError, RuntimeError, HarnessInputError):
            return
        _pick_both(config, *shapes)

    def build_extra_modules(self) -> list[nn.Module]:
        ctx, bkd = self.ctx, self.ctx.config.options
        images = ctx.data.train_x[:2]
        student = tap_shapes(self.student, images, ctx.config.snn.time_steps)
        teacher = tap_shapes(self.teacher, images, 1)
        self.student_layer, self.teacher_layer = _pick_both(ctx.config, student, teacher)
        if bkd.beta == 0:
            return []
        channels = student[self.student_layer][2], teacher[self.teacher_layer][2]
        ctx.log(
            f"bkd: student {self.student_layer} {list(student[self.student_layer][2:])} -> "
            f"teacher {self.teacher_layer} {list(teacher[self.teacher_layer][2:])}, lambda {bkd.lambda_}"
        )
        self.generator = FeatureGenerator(*channels).to(ctx.device)
        return [self.generator]

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        bkd: BKDConfig = self.ctx.config.options
        time_steps = self.ctx.config.snn.time_steps
        if self.generator is None:  # beta = 0: response KD alone
            with torch.inference_mode():
                teacher_steps = self.teacher(images, 1)
            student_steps = self.student(images, time_steps)
            return kd_loss(student_steps.mean(0), teacher_steps.mean(0), labels, bkd.alpha, bkd.temperature)
        with torch.inference_mode():  # the frozen teacher: no autograd bookkeeping at all
            teacher_steps, teacher_features = self.teacher(images, 1, return_features=True)
        student_steps, student_features = self.student(images, time_steps, return_features=True)
        return bkd_loss(
            student_steps.mean(0),
            teacher_steps.mean(0),
            labels,
            student_features[self.student_layer].mean(0),
            teacher_features[self.teacher_layer].mean(0),
            self.generator,
            bkd,
        )
