"""The built-in input corruptions (registered in pyproject.toml, group `snn_kd_harness.noises`).

Every corruption is a `NoiseFn`: it receives ONE image `x` shaped [C, H, W] with values
in [0, 1], a severity `level` (0 = clean) and a CPU `torch.Generator`, and returns the
corrupted image with the same shape on the same device. Random numbers are always drawn
on the CPU generator and then moved to the image's device, so the result does not depend
on the device. `harness.noise.apply_noise` seeds the generator, checks that the level is
finite and non-negative, and clips the result to [0, 1]; each corruption checks its own
upper bound, if it has one, and returns `x` unchanged at level 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.noise import check_level_at_most


def _randn(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal numbers shaped like `x`, drawn on the CPU, on `x`'s device."""
    return torch.randn(x.shape, generator=generator).to(x.device)


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) numbers of `shape`, drawn on the CPU, on `x`'s device."""
    return torch.rand(shape, generator=generator).to(x.device)


def gaussian(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise: `x + sigma * N(0, 1)`, per pixel and channel.

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The standard deviation `sigma` >= 0.
        generator: CPU generator for the noise.

    Returns:
        The noisy image (clipped to [0, 1] later by `apply_noise`).
    """
    if level == 0:
        return x
    return x + level * _randn(x, generator)


def salt_pepper(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise: each pixel is hit with probability `p`.

    A hit pixel location has all of its channels set to 0 or all set to 1, with equal
    probability: `where(U1 < p, (U2 < 0.5) as 0/1, x)` with U1, U2 ~ U(0, 1) per [H, W].

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The probability `p` in [0, 1].
        generator: CPU generator for the hit mask and the salt/pepper choice.

    Returns:
        The noisy image.

    Raises:
        HarnessInputError: If `p` > 1.
    """
    check_level_at_most("salt_pepper", level, 1.0)
    if level == 0:
        return x
    shape = (1, *x.shape[1:])
    hit = _rand(shape, x, generator) < level
    salt = (_rand(shape, x, generator) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def poisson(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson shot noise: `Poisson(x / level) * level`.

    `level` is 1 / photons, i.e. a pixel of intensity 1 collects `1 / level` photons on
    average; the result has mean `x` and variance `x * level`.

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The inverse photon count at full intensity, >= 0 (0 = no shot noise).
        generator: CPU generator for the photon counts.

    Returns:
        The noisy image.
    """
    if level == 0:
        return x
    counts = torch.poisson(x.detach().cpu() / level, generator=generator)
    return (counts * level).to(device=x.device, dtype=x.dtype)


def speckle(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative (speckle) noise: `x + x * sigma * N(0, 1)`.

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The relative standard deviation `sigma` >= 0.
        generator: CPU generator for the noise.

    Returns:
        The noisy image.
    """
    if level == 0:
        return x
    return x + x * level * _randn(x, generator)


def uniform(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Additive uniform noise: `x + U(-a, a)`, independently per pixel and channel.

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The half-width `a` >= 0 (the noise std is `a / sqrt(3)`).
        generator: CPU generator for the noise.

    Returns:
        The noisy image.
    """
    if level == 0:
        return x
    return x + level * (2 * _rand(tuple(x.shape), x, generator) - 1)


def gaussian_blur(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, deterministic (the generator is ignored).

    Each channel is convolved with the normalised kernel
    `k(d) = exp(-d^2 / (2 sigma^2)) / sum_d' exp(-d'^2 / (2 sigma^2))` for
    `d = -r..r`, `r = ceil(3 sigma)`, along rows and then columns (the separable form of
    the 2-D Gaussian). Borders use reflect padding, or replicate padding when the image
    is not larger than `r` in some dimension (reflect cannot pad that far).

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The kernel standard deviation `sigma` in pixels, >= 0.
        generator: Unused.

    Returns:
        The blurred image.
    """
    del generator
    if level == 0:
        return x
    radius = math.ceil(3 * level)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * level**2))
    kernel = (kernel / kernel.sum()).to(device=x.device, dtype=x.dtype)
    channels, height, width = x.shape
    mode = "reflect" if radius < min(height, width) else "replicate"
    padded = F.pad(x.unsqueeze(0), (radius, radius, radius, radius), mode=mode)
    rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    cols = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(padded, rows, groups=channels)
    blurred = F.conv2d(blurred, cols, groups=channels)
    return blurred.squeeze(0)


def contrast(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Contrast reduction towards the image mean: `m + (x - m) * (1 - c)`.

    `m` is the mean of the image over all pixels and channels; `c = 1` gives a flat
    image. Deterministic (the generator is ignored).

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The contrast reduction `c` in [0, 1].
        generator: Unused.

    Returns:
        The low-contrast image.

    Raises:
        HarnessInputError: If `c` > 1.
    """
    del generator
    check_level_at_most("contrast", level, 1.0)
    if level == 0:
        return x
    mean = x.mean()
    return mean + (x - mean) * (1 - level)


def occlusion(x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    """Occlusion: a square patch at a uniformly random position is set to 0.

    The side is `s = round(sqrt(f) * min(H, W))` (Python rounding), so the patch covers
    about `f` of a square image (`f * min(H, W)^2` pixels in general). Its top-left
    corner is drawn uniformly from `[0, H - s] x [0, W - s]`; all channels are zeroed.

    Args:
        x: One image [C, H, W] in [0, 1].
        level: The area fraction `f` in [0, 1].
        generator: CPU generator for the patch position.

    Returns:
        The occluded image.

    Raises:
        HarnessInputError: If `f` > 1.
    """
    check_level_at_most("occlusion", level, 1.0)
    _, height, width = x.shape
    side = round(math.sqrt(level) * min(height, width))
    if side == 0:
        return x
    top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
    out = x.clone()
    out[:, top : top + side, left : left + side] = 0
    return out
