"""Input encodings: how static images in [0, 1] become a spiking network's input over T steps.

An `Encoder` is a module every network holds (`SpikingNetwork.encoder`); the trial chooses it
with `encoding.name`, from the `snn_kd_harness.encoders` entry points:

- `direct` (the default; docs/ARCHITECTURE.md, "The science"): the normalised image, the same at every step. It returns
  a one-step sequence `[1, B, C, H, W]`, which the network's stem runs once and repeats T times.
- `poisson`: rate coding; pixel intensity p in [0, 1] becomes a spike with probability p at each
  step, independently, `[T, B, C, H, W]` (spikingjelly's `PoissonEncoder`, drawn from torch's
  global generator, which the trial seeds).
- `events`: event-camera data, already binned into frames `[B, T_data, C, H, W]` (C = 2
  polarities, `harness.data.events`): frame t, normalised per polarity, is step t. The time axis
  comes from the data; a run longer than the frames sees a silent sensor (zeros) after them.

An ANN trained for a spiking network (the conversion baseline's) sees `encoder.analog()`: what
the encoding carries per step on average (direct: itself; Poisson: the unnormalised intensities;
events: the frames averaged over time). The ANN teacher sees `encoder.teacher_input()`: the
normalised image for image encodings, the time-averaged frames for events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.registry import GROUP_PREFIX, Registry


class Encoder(nn.Module):
    """Base of the registered encodings.

    Args:
        mean, std: Per-channel statistics of the training images (for normalisation), or None.
    """

    takes_frames: ClassVar[bool] = False
    """Whether it takes binned event frames `[B, T, C, H, W]` (else images `[B, C, H, W]`)."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        # Not saved with the network (the data define them): checkpoints stay as they were.
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(-1, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """`(images - mean) / std` per channel (unchanged without statistics)."""
        if self.mean is None:
            return images
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        """`[B, C, H, W]` in [0, 1] -> `[T', B, C, H, W]`; T' = 1 means the same input at every step."""
        raise NotImplementedError

    def analog(self) -> Encoder:
        """The encoding an ANN of this network sees: what this one carries per step on average."""
        return self

    def teacher_input(self) -> Encoder:
        """What the ANN teacher sees: the normalised image, whatever the student's encoding."""
        return DirectEncoding(*self.statistics())

    def statistics(self) -> tuple[list[float] | None, list[float] | None]:
        """The (mean, std) this encoder normalises with, or (None, None)."""
        if self.mean is None:
            return None, None
        return self.mean.flatten().tolist(), self.std.flatten().tolist()


class DirectEncoding(Encoder):
    """The normalised image at every step (computed once)."""

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        return self.normalize(images).unsqueeze(0)


class PoissonEncoding(Encoder):
    """Bernoulli spikes with the pixel's intensity as the probability, independently per step.

    The sampling has no gradient; when the images require one (an attack's input gradient,
    `harness.attacks`), it passes straight through, as the derivative of the expected spike
    `d E[s] / d p = 1`; the spikes' values are the same."""

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        x = images.clamp(0.0, 1.0)
        spikes = (torch.rand((time_steps, *x.shape), device=x.device, dtype=x.dtype) < x).to(x.dtype)
        return spikes + (x - x.detach()) if x.requires_grad else spikes

    def analog(self) -> Encoder:
        return RateEncoding()


class RateEncoding(Encoder):
    """The unnormalised intensities: the expected value of a Poisson encoding's spikes."""

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        return images.unsqueeze(0)


class EventFrames(Encoder):
    """Binned event frames `[B, T_data, C, H, W]` -> `[T, B, C, H, W]`: frame t normalised per
    polarity is step t; steps past the last frame are zeros (the sensor is silent)."""

    takes_frames = True

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        if images.dim() != 5:
            raise ValueError(
                f"the events encoding takes binned event frames [B, T, C, H, W], got {list(images.shape)}; "
                "image data uses encoding.name: direct or poisson"
            )
        frames = self.normalize(images[:, :time_steps]).transpose(0, 1)
        missing = time_steps - frames.shape[0]
        if missing > 0:
            frames = torch.cat([frames, frames.new_zeros((missing, *frames.shape[1:]))])
        return frames.contiguous()

    def analog(self) -> Encoder:
        return AveragedFrames(*self.statistics())

    def teacher_input(self) -> Encoder:
        return AveragedFrames(*self.statistics())


class AveragedFrames(Encoder):
    """The frames averaged over time, normalised: what an ANN of an event-data network sees
    (the sum over the T bins divided by T, so the per-frame statistics normalise it)."""

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        return self.normalize(images.mean(dim=1)).unsqueeze(0)


def check_encoder(name: str, entry: Any) -> None:
    """`ENCODERS`' check: an `Encoder` subclass."""
    if not (isinstance(entry, type) and issubclass(entry, Encoder)):
        raise TypeError(f"expected a subclass of harness.models.encoders.Encoder, got {entry!r}")


ENCODERS: Registry[type[Encoder]] = Registry(GROUP_PREFIX + "encoders", "input encoding", check_encoder)


def create_encoder(name: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Encoder:
    """The encoding registered as `name`, with the training images' statistics."""
    return ENCODERS.get(name)(mean, std)


def list_encoders() -> list[str]:
    """Names of the registered encodings."""
    return ENCODERS.names()
