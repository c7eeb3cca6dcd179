"""`eval.noise: cifar-c` (`harness.noise.presets`): its levels, the config paths that expand it, and
each mapped corruption against the CIFAR-10-C formula of `make_cifar_c.py` on a small image."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

import harness.noise.presets as presets
from harness.config.resolve import resolve, trial_config
from harness.config.sections import EvalConfig
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.errors import HarnessInputError
from harness.noise import apply_noise, noise_seed
from harness.noise.presets import CIFAR_C_PARAMETERS, NOISE_PRESETS, list_noise_presets, noise_preset

# The preset's levels, severity 1 first, written out (presets.py's docstring has the table).
CIFAR_C_LEVELS = {
    "gaussian": [0.04, 0.06, 0.08, 0.09, 0.1],
    "poisson": [1 / 500, 1 / 250, 1 / 100, 1 / 75, 1 / 50],
    "salt_pepper": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "contrast": [0.25, 0.5, 0.6, 0.7, 0.85],
}
# make_cifar_c.py's name of each harness noise.
CIFAR_NAME = {
    "gaussian": "gaussian_noise",
    "poisson": "shot_noise",
    "salt_pepper": "impulse_noise",
    "speckle": "speckle_noise",
    "gaussian_blur": "gaussian_blur",
    "contrast": "contrast",
}
UNKNOWN = "unknown noise preset 'cifar-x'; expected a mapping {type: [levels]} or a preset: cifar-c"


def test_the_preset_expands_to_the_documented_levels() -> None:
    assert list_noise_presets() == ["cifar-c"] == list(NOISE_PRESETS)
    assert noise_preset("cifar-c") == CIFAR_C_LEVELS
    assert EvalConfig(noise="cifar-c").noise == {kind: tuple(levels) for kind, levels in CIFAR_C_LEVELS.items()}
    noise_preset("cifar-c")["gaussian"].append(0.5)  # a fresh mapping each time
    assert noise_preset("cifar-c") == CIFAR_C_LEVELS


def test_the_docstring_table_holds_the_parameters_and_mapping_of_the_code() -> None:
    rows = {}
    for line in (presets.__doc__ or "").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in CIFAR_C_PARAMETERS:
            rows[cells[0]] = cells
    assert set(rows) == set(CIFAR_C_PARAMETERS)
    for noise, cifar in CIFAR_NAME.items():
        name, parameters, _, harness_noise, level, _ = rows[cifar]
        assert tuple(float(c) for c in parameters.split(",")) == CIFAR_C_PARAMETERS[cifar]
        assert harness_noise == noise
        mapping = {"c": lambda c: c, "1 / c": lambda c: 1 / c, "1 - c": lambda c: 1 - c}[level]
        assert [mapping(c) for c in CIFAR_C_PARAMETERS[cifar]] == CIFAR_C_LEVELS[noise]
    levels = re.search(r"The harness levels, severities 1-5: (.*?)\n\n", presets.__doc__ or "", re.S)
    assert levels is not None
    text = " ".join(levels.group(1).split())
    for noise, values in CIFAR_C_LEVELS.items():
        shown = [f"{v:g}" if noise != "poisson" or v != 1 / 75 else "1/75 = 0.013333333333333334" for v in values]
        assert f"{noise} {', '.join(shown)}" in text.replace(" (the report prints it `0.0133333`)", "")


def _space(tmp_path: Path, noise: object) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "preset",
                "methods": ["direct"],
                "fixed": {"dataset.name": "digits", "student.depth": 8, "student.width": 8},
                "eval": {"reference_time_steps": 2, "time_steps": [1, 2], "noise": noise},
            }
        )
    )
    return path


def test_set_eval_noise_cifar_c_through_the_config_loader(tmp_path: Path) -> None:
    path = _space(tmp_path, {"gaussian": [0.3]})
    space = load_space(path, [parse_override("eval.noise=cifar-c")])
    config = resolve(space, overrides=[parse_override("eval.noise=cifar-c")], source=str(path)).config
    assert config.flat()["eval.noise"] == CIFAR_C_LEVELS  # what a run logs: the levels, not the name
    assert trial_config(config.flat()) == config  # and a logged config reads back as it was
    # The same in the file's `eval:` block.
    path = _space(tmp_path, "cifar-c")
    assert resolve(load_space(path), source=str(path)).config.eval == config.eval


def test_an_unknown_preset_is_a_one_line_error_naming_the_field(tmp_path: Path) -> None:
    path = _space(tmp_path, {"gaussian": [0.3]})
    space = load_space(path)
    with pytest.raises(HarnessInputError) as raised:
        resolve(space, overrides=[parse_override("eval.noise=cifar-x")], source=str(path))
    assert str(raised.value) == f"--set eval.noise: {UNKNOWN}"
    path = _space(tmp_path, "cifar-x")
    with pytest.raises(HarnessInputError) as raised:
        load_space(path)
    assert str(raised.value) == f"{path}: eval.noise: {UNKNOWN}"
    with pytest.raises(HarnessInputError, match=r"^unknown noise preset 'CIFAR-C'"):
        noise_preset("CIFAR-C")


def _image(channels: int, size: int = 12) -> torch.Tensor:
    """One [1, C, H, W] image in (0, 1), the same every time."""
    return torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(7)) * 0.9 + 0.05


def _generator(noise: str, level: float) -> torch.Generator:
    """The generator `apply_noise` gives test sample 0."""
    return torch.Generator().manual_seed(noise_seed(noise, level, 0))


SEVERITIES = range(5)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_and_speckle_are_cifar_cs_formulas(severity: int) -> None:
    x = _image(3)
    c = CIFAR_C_PARAMETERS["gaussian_noise"][severity]
    level = CIFAR_C_LEVELS["gaussian"][severity]
    want = (x[0] + torch.randn(x[0].shape, generator=_generator("gaussian", level)) * c).clamp(0, 1)  # x + N(0, c)
    torch.testing.assert_close(apply_noise(x, "gaussian", level)[0], want, rtol=0, atol=1e-7)
    c = CIFAR_C_PARAMETERS["speckle_noise"][severity]
    level = CIFAR_C_LEVELS["speckle"][severity]
    noise = torch.randn(x[0].shape, generator=_generator("speckle", level)) * c
    torch.testing.assert_close(
        apply_noise(x, "speckle", level)[0], (x[0] + x[0] * noise).clamp(0, 1), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("severity", SEVERITIES)
def test_poisson_is_cifar_cs_shot_noise(severity: int) -> None:
    x = _image(3)
    c = CIFAR_C_PARAMETERS["shot_noise"][severity]
    level = CIFAR_C_LEVELS["poisson"][severity]
    want = (torch.poisson(x[0] * c, generator=_generator("poisson", level)) / c).clamp(0, 1)  # poisson(x c) / c
    torch.testing.assert_close(apply_noise(x, "poisson", level)[0], want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_contrast_is_cifar_cs_on_one_channel_and_uses_the_image_mean_on_three(severity: int) -> None:
    c = CIFAR_C_PARAMETERS["contrast"][severity]
    level = CIFAR_C_LEVELS["contrast"][severity]
    gray = _image(1)[0]
    mean = gray.mean(dim=(1, 2), keepdim=True)  # np.mean(x, axis=(0, 1)) of an H x W x C image
    torch.testing.assert_close(
        apply_noise(gray[None], "contrast", level)[0], (gray - mean) * c + mean, atol=1e-6, rtol=0
    )
    colour = _image(3)[0]
    per_channel = colour.mean(dim=(1, 2), keepdim=True)
    cifar = (colour - per_channel) * c + per_channel
    got = apply_noise(colour[None], "contrast", level)[0]
    # The documented difference: each channel's mean moved towards the image's by (1 - c) of the gap.
    torch.testing.assert_close(got - cifar, (1 - c) * (colour.mean() - per_channel).expand_as(got), atol=1e-6, rtol=0)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_blur_is_scipys_gaussian_filter_inside_the_borders(severity: int) -> None:
    sigma = CIFAR_C_PARAMETERS["gaussian_blur"][severity]
    level = CIFAR_C_LEVELS["gaussian_blur"][severity]
    x = _image(3, size=16)
    got = apply_noise(x, "gaussian_blur", level)[0].numpy()
    image = x[0].numpy().astype(np.float64)
    # skimage.filters.gaussian(sigma=c, multichannel=True): scipy's filter, edges repeated, 4 sigma.
    cifar = np.clip(ndimage.gaussian_filter(image, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0), 0, 1)
    radius = int(4.0 * sigma + 0.5)
    inside = (slice(None), slice(radius, -radius), slice(radius, -radius))
    exact = severity < 4  # severity 5: the harness truncates at 3 sigma (radius 3, not 4)
    np.testing.assert_allclose(got[inside], cifar[inside], rtol=0, atol=1e-6 if exact else 1e-3)
    if exact:  # the harness reflects at the borders (scipy's `mirror`) where CIFAR-10-C repeats the edge
        mirrored = ndimage.gaussian_filter(image, sigma=(0, sigma, sigma), mode="mirror", truncate=4.0)
        np.testing.assert_allclose(got, mirrored, rtol=0, atol=1e-6)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_salt_pepper_hits_the_fraction_cifar_cs_impulse_noise_does(severity: int) -> None:
    c = CIFAR_C_PARAMETERS["impulse_noise"][severity]
    level = CIFAR_C_LEVELS["salt_pepper"][severity]
    x = torch.full((1, 3, 160, 160), 0.5)
    got = apply_noise(x, "salt_pepper", level)[0]
    hit = got != 0.5
    # skimage's s&p replaces each value with probability c (by 1 or 0, even odds): so does salt_pepper
    # on average, but a whole pixel at a time (the documented difference on colour images).
    n = hit[0].numel()
    assert abs(hit[0].float().mean().item() - c) < 5 * (c * (1 - c) / n) ** 0.5
    assert torch.equal(hit[0], hit[1]) and torch.equal(hit[0], hit[2])
    salt = (got[0][hit[0]] == 1).float().mean().item()
    assert abs(salt - 0.5) < 5 * (0.25 / hit[0].sum().item()) ** 0.5
