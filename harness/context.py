"""What a trial's code gets from the trial loop: `TrialContext`, and `network_for` to build networks from it.

Methods (`harness.methods`) and the teacher cache (`harness.teacher`) both build on this: a
teacher is trained inside the trial that first needs it, with the same data and device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config.sections import TrialConfig
from harness.data import DataSplits
from harness.models import ActivationFactory, Encoder, ModelArgs, SpikingNetwork, create_encoder


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
    net = spec.build(
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        activation=activation,
        pool=pool,
    )
    net.encoder = encoder if encoder is not None else ctx.encoder()
    return net.to(ctx.device)
