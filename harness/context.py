"""What a trial's code gets from the trial loop: `TrialContext`, and `network_for` to build networks from it.

Methods (`harness.methods`) and the teacher cache (`harness.teacher`) both build on this: a
teacher is trained inside the trial that first needs it, with the same data and device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional

from harness.config.sections import TrialConfig
from harness.data import DataSplits
from harness.errors import HarnessInputError, PluginError
from harness.models import ENCODERS, MODELS, ActivationFactory, Encoder, ModelArgs, SpikingNetwork, create_encoder
from harness.models.args import family_name
from harness.registry import Registry


@dataclass(frozen=True)
class TrialContext:
    """What a method gets from the trial loop.

    Attributes:
        config: The resolved trial config.
        data: Dataset splits on `device`, images in [0, 1].
        device: Where tensors and networks live.
        teacher_cache: Folder of the content-addressed teacher cache.
        log: Progress messages for the user (stderr in `harness train`).
    """

    config: TrialConfig
    data: DataSplits
    device: torch.device
    teacher_cache: Path
    log: Callable[[str], None]

    def encoder(self) -> Encoder:
        """The trial's input encoding (`encoding.name`), with the training split's statistics."""
        return create_encoder(self.config.encoding.name, self.data.mean, self.data.std)


def network_for(
    ctx: TrialContext,
    spec: ModelArgs,
    activation: ActivationFactory,
    pool: str = "max",
    seed: int | None = None,
    encoder: Encoder | None = None,
) -> SpikingNetwork:
    """A network of `spec` (`teacher.model` or `student`) sized for the trial's data, on its device.

    Initialised from `seed` (default: the trial's seed) right here, so its weights do not
    depend on what ran before (a teacher trained or loaded, another network built). Its input
    encoding is `encoder` (default: the trial's `encoding.name`).
    """
    torch.manual_seed(ctx.config.seed if seed is None else seed)
    data = ctx.data
    try:
        net = spec.build(
            in_channels=data.in_channels,
            num_classes=data.num_classes,
            image_shape=data.image_shape,
            activation=activation,
            pool=pool,
        )
    except (ValueError, HarnessInputError) as exc:
        raise _cannot_take(spec, data.train_x.shape[1:], exc) from None
    net.encoder = encoder if encoder is not None else ctx.encoder()
    net = net.to(ctx.device)
    check_network(net, spec, data.train_x[:PROBE_IMAGES], data.num_classes, ctx.config.encoding.name)
    return net


PROBE_IMAGES = 2
PROBE_TIME_STEPS = 2


def check_network(net: SpikingNetwork, spec: ModelArgs, images: torch.Tensor, classes: int, encoding: str) -> None:
    """What a plugin's network returns, checked once, where it enters the harness: its encoder
    gives `[T', B, C, H, W]` with T' = 1 or T (C, H, W those of one image, or of one frame of
    event data), and the network `[T, B, K]` logits.

    One forward pass of a couple of images at T = 2, in eval mode, without gradients, with the
    random generators forked (a Poisson encoding draws from them) and the neurons reset after:
    the network is as it was, and so are the trial's random numbers.

    Raises:
        PluginError: naming the model family's (or the encoding's) entry point and distribution:
            a wrong output shape, or a forward pass that fails on the data's image shape (a
            family built for square images given 20x28 ones, say).
    """
    steps, batch = PROBE_TIME_STEPS, len(images)
    was_training = net.training
    devices = [images.device] if images.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            net.eval()
            encoded = net.encoder(images, steps)
            step = (batch, *images.shape[-3:])  # one step's input: images, or one frame of event data
            if not _shaped(encoded, lambda shape: len(shape) == 5 and shape[0] in (1, steps) and shape[1:] == step):
                expected = f"[1 or T, B, C, H, W] = [1 or {steps}, {', '.join(map(str, step))}]"
                what = (
                    f"encodes {list(images.shape)} inputs at T = {steps} as {_shape_of(encoded)}; expected {expected}"
                )
                raise _broken(ENCODERS, "input encoding", encoding, what)
            try:
                logits = net(images, steps)
            except RuntimeError as exc:  # torch's shape mismatches are RuntimeErrors
                raise _cannot_take(spec, images.shape[1:], exc) from None
            if not _shaped(logits, lambda shape: shape == (steps, batch, classes)):
                what = f"returns {_shape_of(logits)} for {batch} images at T = {steps}; expected [T, B, K] logits = "
                raise _broken(MODELS, "model family", family_name(spec.arch), what + str([steps, batch, classes]))
    finally:
        functional.reset_net(net)
        net.train(was_training)


def _cannot_take(spec: ModelArgs, shape: Sequence[int], exc: BaseException) -> PluginError:
    """The family cannot be built for, or run on, images of `shape` `[C, H, W]`."""
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    what = f"cannot take {' x '.join(map(str, shape))} (C x H x W) images: {reason}"
    return _broken(MODELS, "model family", family_name(spec.arch), what)


def _shaped(value: Any, fits: Callable[[tuple[int, ...]], bool]) -> bool:
    return isinstance(value, torch.Tensor) and fits(tuple(value.shape))


def _shape_of(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _broken(registry: Registry[Any], kind: str, name: str, what: str) -> PluginError:
    providers = registry.providers(name)
    who = providers[0].describe() if providers else f"{kind} {name!r}"
    return PluginError(f"{kind} {name!r} ({who}) {what}")
