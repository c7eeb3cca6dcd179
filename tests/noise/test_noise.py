"""Tests for harness.noise: the registry, apply_noise's contract and each corruption."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from harness.errors import HarnessInputError, PluginError
from harness.noise import NOISES, apply_noise, is_event_noise, list_noises, noise_seed

BUILTINS = [
    "contrast",
    "gaussian",
    "gaussian_blur",
    "occlusion",
    "poisson",
    "salt_pepper",
    "speckle",
    "uniform",
]
# A clearly visible, valid level per noise; a new noise must add one here.
LEVELS = {
    "contrast": 0.5,
    "gaussian": 0.2,
    "gaussian_blur": 1.0,
    "occlusion": 0.25,
    "poisson": 0.05,
    "salt_pepper": 0.2,
    "speckle": 0.3,
    "uniform": 0.2,
}
# The strongest level the tests use (the upper bound where a noise has one).
STRONG = {
    "contrast": 1.0,
    "gaussian": 1.0,
    "gaussian_blur": 3.0,
    "occlusion": 1.0,
    "poisson": 1.0,
    "salt_pepper": 1.0,
    "speckle": 2.0,
    "uniform": 1.0,
}
DETERMINISTIC = {"contrast", "gaussian_blur"}
ALL = [name for name in list_noises() if not is_event_noise(name)]  # the image noises (events: test_event_noise)
RANDOM = [name for name in ALL if name not in DETERMINISTIC]


def make_images(n: int = 4, c: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    """Random images in [0, 1], with some exact 0s and 1s."""
    images = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))
    images[:, :, 0, 0] = 0.0
    images[:, :, 0, 1] = 1.0
    images[:, :, 0, 2] = 1e-7  # (x - mean) + mean != x in float32
    return images


def constant(value: float, c: int = 1, h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.full((1, c, h, w), value)


# --- registry -------------------------------------------------------------------------


def test_builtins_are_registered_and_sorted() -> None:
    assert ALL == BUILTINS
    assert list_noises() == sorted(list_noises())


def test_an_event_noise_is_refused_on_images() -> None:
    with pytest.raises(HarnessInputError, match="^noise 'event_drop' corrupts event streams, not images$"):
        apply_noise(make_images(), "event_drop", 0.1)


def test_unknown_noise_names_the_choices() -> None:
    with pytest.raises(HarnessInputError) as err:
        apply_noise(make_images(), "gausian", 0.1)
    message = str(err.value)
    assert "\n" not in message
    assert "'gausian'" in message
    for name in BUILTINS:
        assert name in message


SHIFT_NOISE = """
import torch

SEEDS = []


def shift(x, level, generator):
    SEEDS.append(generator.initial_seed())
    x += level  # in place on purpose: apply_noise must protect its input
    x[:, 0, 0] = 0.125  # not the identity at level 0
    return x
"""


def test_user_noise_is_used_by_apply_noise(install_plugin) -> None:
    install_plugin("shift-noise", {"noises": {"test_shift": "shift_noise:shift"}}, {"shift_noise.py": SHIFT_NOISE})
    assert "test_shift" in list_noises()
    images = make_images(n=3)
    before = images.clone()
    out = apply_noise(images, "test_shift", 0.25, start_index=7)
    assert torch.equal(images, before)
    expected = before + 0.25
    expected[:, :, 0, 0] = 0.125
    assert torch.equal(out, expected.clamp(0, 1))
    import shift_noise

    assert shift_noise.SEEDS == [noise_seed("test_shift", 0.25, i) for i in (7, 8, 9)]
    # Level 0 is the identity even for a noise that would not be.
    assert torch.equal(apply_noise(images, "test_shift", 0.0), before)


def test_a_name_two_distributions_register_is_refused_naming_both(install_plugin) -> None:
    install_plugin("other-noises", {"noises": {"gaussian": "shift_noise:shift"}}, {"shift_noise.py": SHIFT_NOISE})
    with pytest.raises(PluginError) as err:
        apply_noise(make_images(), "gaussian", 0.1)
    message = str(err.value)
    assert "\n" not in message and "registered twice" in message
    assert "snn-kd-harness" in message and "other-noises" in message
    assert torch.equal(apply_noise(make_images(), "uniform", 0.0), make_images())  # the others still work


def test_a_noise_of_the_wrong_shape_is_refused(install_plugin) -> None:
    install_plugin("bad-noise", {"noises": {"bad": "bad_noise:bad"}}, {"bad_noise.py": "def bad(x):\n    return x\n"})
    with pytest.raises(PluginError, match=r"entry point 'bad' \(bad_noise:bad\) of bad-noise 0.1 .* does not take"):
        apply_noise(make_images(), "bad", 0.1)


WRONG_NOISES = """
import torch


def taller(x, level, generator):
    return torch.cat([x, x], dim=1)


def double(x, level, generator):
    return x.double()


def listed(x, level, generator):
    return x.tolist()


def infinite(x, level, generator):
    return x / 0.0


def loud(x, level, generator):
    return x * 10.0  # outside [0, 1]: clipped, as documented
"""


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        ("taller", r"returned an image of shape \(1, 8, 4\) for an input of shape \(1, 4, 4\)"),
        ("double", r"returned an image of dtype torch.float64 for an input of dtype torch.float32"),
        ("listed", r"returned list, not a tensor"),
        ("infinite", r"returned non-finite values \(NaN or inf\) at level 0.1"),
    ],
)
def test_what_a_plugin_noise_returns_is_checked_naming_its_entry_point(
    install_plugin, noise: str, expected: str
) -> None:
    install_plugin("wrong-noises", {"noises": {noise: f"wrong_noises:{noise}"}}, {"wrong_noises.py": WRONG_NOISES})
    with pytest.raises(PluginError) as info:
        apply_noise(torch.full((2, 1, 4, 4), 0.5), noise, 0.1)
    message = str(info.value)
    assert message.startswith(f"noise {noise!r} (entry point {noise!r} (wrong_noises:{noise}) of wrong-noises 0.1) ")
    assert __import__("re").search(expected, message) and "\n" not in message


def test_a_plugin_noise_outside_0_1_is_clipped(install_plugin) -> None:
    install_plugin("wrong-noises", {"noises": {"loud": "wrong_noises:loud"}}, {"wrong_noises.py": WRONG_NOISES})
    out = apply_noise(torch.full((2, 1, 4, 4), 0.5), "loud", 0.1)
    assert torch.equal(out, torch.ones(2, 1, 4, 4))


# --- noise_seed -----------------------------------------------------------------------


def test_noise_seed_is_blake2b_of_the_key() -> None:
    digest = hashlib.blake2b(b"gaussian/0.1/42", digest_size=8).digest()
    assert noise_seed("gaussian", 0.1, 42) == int.from_bytes(digest, "big") % 2**63


def test_noise_seed_range_and_sensitivity() -> None:
    seeds = {
        noise_seed(noise, level, index)
        for noise in ("gaussian", "uniform")
        for level in (0.1, 0.2)
        for index in range(5)
    }
    assert len(seeds) == 20
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert noise_seed("gaussian", 1, 3) == noise_seed("gaussian", 1.0, 3)


# --- contract, for every registered noise ---------------------------------------------


@pytest.mark.parametrize("noise", ALL)
def test_level_zero_is_identity(noise: str) -> None:
    images = make_images()
    assert torch.equal(apply_noise(images, noise, 0.0), images)
    assert torch.equal(apply_noise(images, noise, 0), images)
    # The corruption itself, not only apply_noise's shortcut.
    image = images[0]
    out = NOISES.get(noise)(image.clone(), 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, image)


@pytest.mark.parametrize("noise", ALL)
def test_output_is_clipped_float32_same_shape(noise: str) -> None:
    images = make_images(n=3, c=2, h=12, w=20).double()
    out = apply_noise(images, noise, STRONG[noise])
    assert out.shape == images.shape
    assert out.dtype == torch.float32
    assert out.device == images.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.equal(out, images.float())


@pytest.mark.parametrize("noise", ALL)
def test_input_is_not_modified(noise: str) -> None:
    images = make_images()
    before = images.clone()
    out = apply_noise(images, noise, LEVELS[noise])
    assert torch.equal(images, before)
    assert out.data_ptr() != images.data_ptr()
    # Same for level 0: a copy, not the input itself.
    out = apply_noise(images, noise, 0.0)
    out.fill_(0.5)
    assert torch.equal(images, before)


@pytest.mark.parametrize("noise", ALL)
def test_same_sample_same_output_whatever_the_batch(noise: str) -> None:
    images = make_images(n=5)
    level = LEVELS[noise]
    full = apply_noise(images, noise, level, start_index=10)
    assert torch.equal(full, apply_noise(images, noise, level, start_index=10))
    # Sample 13 alone ...
    alone = apply_noise(images[3:4], noise, level, start_index=13)
    assert torch.equal(alone[0], full[3])
    # ... and at position 1 of a batch of a different size.
    other = torch.cat([images[0:1], images[3:4], images[1:2]])
    mixed = apply_noise(other, noise, level, start_index=12)
    assert torch.equal(mixed[1], full[3])


@pytest.mark.parametrize("noise", RANDOM)
def test_different_indices_give_different_noise(noise: str) -> None:
    images = make_images(n=1, h=32, w=32).repeat(4, 1, 1, 1)
    out = apply_noise(images, noise, LEVELS[noise])
    for i in range(4):
        for j in range(i):
            assert not torch.equal(out[i], out[j]), (i, j)


@pytest.mark.parametrize("noise", RANDOM)
def test_different_levels_use_different_seeds(noise: str) -> None:
    images = make_images(n=1, h=32, w=32)
    level = LEVELS[noise]
    a = apply_noise(images, noise, level) - images
    b = apply_noise(images, noise, level * 0.5) - images
    # Not merely a rescaled copy of the same noise draw.
    assert not torch.allclose(a * 0.5, b, atol=1e-6)


@pytest.mark.parametrize("noise", sorted(DETERMINISTIC))
def test_deterministic_noises_ignore_the_index(noise: str) -> None:
    images = make_images(n=1).repeat(3, 1, 1, 1)
    out = apply_noise(images, noise, LEVELS[noise], start_index=5)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


# --- bad levels -----------------------------------------------------------------------


@pytest.mark.parametrize("noise", ALL)
@pytest.mark.parametrize("level", [-0.1, -1e-9, math.nan, math.inf, "abc", None])
def test_bad_levels_raise(noise: str, level: object) -> None:
    with pytest.raises(HarnessInputError) as err:
        apply_noise(make_images(n=1), noise, level)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    assert noise in str(err.value)


@pytest.mark.parametrize(
    ("noise", "level"),
    [("salt_pepper", 1.01), ("contrast", 1.5), ("occlusion", 2.0)],
)
def test_levels_above_range_raise(noise: str, level: float) -> None:
    with pytest.raises(HarnessInputError, match=noise) as err:
        apply_noise(make_images(n=1), noise, level)
    assert "\n" not in str(err.value)
    # The upper bound itself is valid.
    apply_noise(make_images(n=1), noise, 1.0)


def test_non_4d_images_raise() -> None:
    with pytest.raises(ValueError):
        apply_noise(torch.rand(3, 8, 8), "gaussian", 0.1)


# --- statistics -----------------------------------------------------------------------


def test_gaussian_statistics() -> None:
    out = apply_noise(constant(0.5), "gaussian", 0.1)
    assert out.std().item() == pytest.approx(0.1, rel=0.1)
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)


def test_uniform_statistics() -> None:
    out = apply_noise(constant(0.5), "uniform", 0.3)
    assert out.std().item() == pytest.approx(0.3 / math.sqrt(3), rel=0.05)
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)
    assert (out - 0.5).abs().max().item() <= 0.3 + 1e-6


def test_salt_pepper_statistics() -> None:
    image = constant(0.5, c=3)
    out = apply_noise(image, "salt_pepper", 0.2)
    changed = out != 0.5  # [1, 3, H, W]
    # All channels of a pixel location are hit together, with the same value.
    assert torch.equal(changed.all(dim=1), changed.any(dim=1))
    assert torch.equal(out.amin(dim=1), out.amax(dim=1))
    assert changed[:, 0].float().mean().item() == pytest.approx(0.2, abs=0.03)
    values = out[changed]
    assert ((values == 0) | (values == 1)).all()
    assert (values == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(apply_noise(image, "salt_pepper", 1.0) != 0.5, torch.ones_like(changed))


def test_poisson_statistics() -> None:
    x, level = 0.4, 0.01  # 100 photons at full intensity
    out = apply_noise(constant(x, h=128, w=128), "poisson", level)
    assert out.mean().item() == pytest.approx(x, rel=0.02)
    assert out.var().item() == pytest.approx(x * level, rel=0.1)
    # Values are whole photon counts times the level.
    counts = out / level
    assert torch.allclose(counts, counts.round(), atol=1e-3)


def test_speckle_statistics() -> None:
    x, sigma = 0.5, 0.2
    out = apply_noise(constant(x), "speckle", sigma)
    assert out.std().item() == pytest.approx(x * sigma, rel=0.1)
    assert out.mean().item() == pytest.approx(x, abs=0.01)
    # Multiplicative: black pixels stay black.
    assert torch.equal(apply_noise(constant(0.0), "speckle", sigma), constant(0.0))


@pytest.mark.parametrize("c", [0.3, 0.8, 1.0])
def test_contrast_scales_std(c: float) -> None:
    images = make_images(n=2)
    out = apply_noise(images, "contrast", c)
    for image, result in zip(images, out, strict=True):
        assert result.std().item() == pytest.approx(image.std().item() * (1 - c), abs=1e-5)
        assert result.mean().item() == pytest.approx(image.mean().item(), abs=1e-5)


@pytest.mark.parametrize(("fraction", "side"), [(0.25, 20), (0.5, 28), (1.0, 40)])
def test_occlusion_zeroes_a_square(fraction: float, side: int) -> None:
    images = torch.ones(3, 2, 40, 40)
    out = apply_noise(images, "occlusion", fraction)
    for result in out:
        zero = result == 0
        assert torch.equal(zero[0], zero[1])
        rows = zero[0].any(dim=1).nonzero().flatten()
        cols = zero[0].any(dim=0).nonzero().flatten()
        assert len(rows) == len(cols) == side
        top, left = rows[0].item(), cols[0].item()
        assert zero[0, top : top + side, left : left + side].all()
        assert zero.float().mean().item() == pytest.approx(fraction, abs=0.02)
        assert (result[~zero] == 1).all()


def test_occlusion_non_square_image_uses_shorter_side() -> None:
    out = apply_noise(torch.ones(1, 1, 20, 50), "occlusion", 0.25)
    assert (out == 0).sum().item() == 10 * 10


def test_blur_keeps_a_constant_image() -> None:
    out = apply_noise(constant(0.3, c=3, h=20, w=20), "gaussian_blur", 1.5)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)


def test_blur_matches_a_normalised_gaussian_kernel() -> None:
    sigma, size = 1.5, 33
    image = torch.zeros(1, 1, size, size)
    image[0, 0, size // 2, size // 2] = 1.0
    out = apply_noise(image, "gaussian_blur", sigma)[0, 0]
    radius = math.ceil(3 * sigma)
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(d**2) / (2 * sigma**2))
    k = k / k.sum()
    expected = torch.zeros(size, size, dtype=torch.float64)
    lo, hi = size // 2 - radius, size // 2 + radius + 1
    expected[lo:hi, lo:hi] = torch.outer(k, k)
    assert torch.allclose(out.double(), expected, atol=1e-6)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_blur_reduces_variance_more_with_larger_sigma() -> None:
    images = make_images(n=1, c=1, h=32, w=32)
    variances = [apply_noise(images, "gaussian_blur", s).var().item() for s in (0.5, 1, 2)]
    assert images.var().item() > variances[0] > variances[1] > variances[2]


def test_blur_is_depthwise() -> None:
    images = make_images(n=1, c=3)
    out = apply_noise(images, "gaussian_blur", 1.0)
    for ch in range(3):
        alone = apply_noise(images[:, ch : ch + 1], "gaussian_blur", 1.0)
        assert torch.allclose(out[:, ch : ch + 1], alone)


def test_blur_on_image_smaller_than_radius() -> None:
    image = constant(0.7, c=2, h=4, w=5)
    image[0, 0, 0, 0] = 0.0
    out = apply_noise(image, "gaussian_blur", 3.0)  # radius 9 > 4: replicate padding
    assert out.shape == image.shape
    assert out.min() > 0.0 and out.max() <= 0.7 + 1e-6
    assert torch.allclose(out[0, 1], torch.full((4, 5), 0.7), atol=1e-6)


@pytest.mark.parametrize(("sigma", "size", "mode"), [(1.0, 12, "reflect"), (2.0, 5, "replicate")])
def test_blur_matches_a_2d_reference(sigma: float, size: int, mode: str) -> None:
    images = make_images(n=2, c=2, h=size, w=size + 3)
    radius = math.ceil(3 * sigma)
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(d**2) / (2 * sigma**2))
    kernel = torch.outer(k, k) / torch.outer(k, k).sum()
    padded = torch.nn.functional.pad(images.double(), (radius,) * 4, mode=mode)
    weight = kernel.expand(2, 1, -1, -1)
    expected = torch.nn.functional.conv2d(padded, weight, groups=2)
    out = apply_noise(images, "gaussian_blur", sigma)
    assert torch.allclose(out.double(), expected, atol=1e-5)
