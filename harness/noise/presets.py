"""Named sets of noise levels: `eval.noise: cifar-c` in a space file's `eval:` block, or `--set eval.noise=cifar-c`.

A preset is expanded when the config is validated (`harness.config.sections.EvalConfig`): the
resolved config holds the explicit levels, so each run logs them as its `eval.noise` param, and
`harness evaluate --run ID --set eval.noise=cifar-c` measures the levels a run lacks, as for levels
given by hand. The preset's name is not recorded anywhere: the levels are the measurement, and
the report's corruption summary (`reports.corruption`) works from the `noise/<type>/<level>`
metrics the runs logged, whatever named them.

`cifar-c`: the CIFAR-10-C severities 1-5
-----------------------------------------

Source: D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019; the parameters are those of its CIFAR generator,
github.com/hendrycks/robustness, `ImageNet-C/create_c/make_cifar_c.py` (its only version, commit
ca36008 of 2019-01-08), where each corruption takes a [0, 1] image `x` (H x W x 3, the uint8
CIFAR-10 test image / 255) and severity s picks `c = [...][s - 1]`. The harness has six of its
corruptions; each level below gives the corruption that formula gives (`harness.noise.corruptions`
for the harness's side):

| CIFAR-10-C | its c, severities 1-5 | its formula | harness noise | harness level | match |
| --- | --- | --- | --- | --- | --- |
| gaussian_noise | 0.04, 0.06, 0.08, 0.09, 0.10 | clip(x + N(0, c^2)) | gaussian | c | exact |
| shot_noise | 500, 250, 100, 75, 50 | clip(Poisson(x c) / c) | poisson | 1 / c | exact |
| impulse_noise | 0.01, 0.02, 0.03, 0.05, 0.07 | skimage s&p, amount c | salt_pepper | c | per pixel (a) |
| speckle_noise | 0.06, 0.10, 0.12, 0.16, 0.20 | clip(x + x N(0, c^2)) | speckle | c | exact |
| gaussian_blur | 0.4, 0.6, 0.7, 0.8, 1.0 | skimage gaussian, sigma c | gaussian_blur | c | borders (b) |
| contrast | 0.75, 0.50, 0.40, 0.30, 0.15 | clip((x - m) c + m) | contrast | 1 - c | mean (c) |

The harness levels, severities 1-5: gaussian 0.04, 0.06, 0.08, 0.09, 0.1; poisson 0.002, 0.004,
0.01, 1/75 = 0.013333333333333334 (the report prints it `0.0133333`), 0.02; salt_pepper 0.01,
0.02, 0.03, 0.05, 0.07; speckle 0.06, 0.1, 0.12, 0.16, 0.2; gaussian_blur 0.4, 0.6, 0.7, 0.8, 1.0;
contrast 0.25, 0.5, 0.6, 0.7, 0.85.

"exact": the same distribution of corrupted images (`N(0, c^2)` is numpy's `normal(scale=c)`;
`poisson` at level 1/c is `Poisson(x c) / c`). Where it is not:

- (a) impulse noise: skimage's `random_noise(mode='s&p', amount=c)` (0.13 and 0.14, the versions
  of 2018) replaces each value of the H x W x 3 array on its own with probability c, by 1 or 0
  with equal odds; `salt_pepper` replaces each pixel (all its channels together) with probability
  c by white or black. The same fraction c of values is hit, but on colour images CIFAR-10-C's
  hits are single-channel colour specks and the harness's are grey; on one-channel images the two
  are the same.
- (b) gaussian blur: skimage's `gaussian(sigma=c, multichannel=True)` is scipy's
  `gaussian_filter` with `mode='nearest'` (edge pixels repeated) and `truncate=4.0` (radius
  `int(4 c + 0.5)`); `gaussian_blur` uses the same normalised kernel `exp(-d^2 / 2c^2)` with radius
  `ceil(3 c)`, which is the same radius at severities 1-4 (2, 2, 3, 3) and 3 instead of 4 at
  severity 5 (the two dropped taps weigh 1.3e-4 each), and reflect padding at the borders. Pixels
  at least the radius away from every border are blurred exactly alike at severities 1-4.
- (c) contrast: CIFAR-10-C's mean `m` is per channel (`np.mean(x, axis=(0, 1))`), the harness's
  over the whole image, so on colour images the harness also moves each channel's mean towards
  the image's mean by `(1 - c)` of their gap; on one-channel images the two are the same.

Besides: CIFAR-10-C's files hold the corrupted images floored to uint8 (`np.uint8`, so a value
loses up to 1/255, 0.5/255 on average), the harness's corrupted images stay float; the harness
draws its noise from its own per-sample seeds (`harness.noise.noise_seed`), so the images are
corrupted alike in distribution, not the same images as CIFAR-10-C's `.npy` files; and the levels
are CIFAR's for 32 x 32 images (the blur's sigma is in pixels), used as they are at any image size.
Left out, having no corresponding harness noise: defocus, glass, motion and zoom blur, snow,
frost, fog, brightness, elastic transform, pixelate, JPEG (of the 15 benchmark corruptions), and
spatter and saturate (of the 4 extra ones). Speckle noise and gaussian blur are 2 of the extra 4,
so a mean corruption error over this preset is not the paper's 15-corruption mCE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.errors import HarnessInputError

__all__ = ["CIFAR_C_PARAMETERS", "NOISE_PRESETS", "NoisePreset", "list_noise_presets", "noise_preset"]

CIFAR_C_PARAMETERS: Mapping[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
}
"""`make_cifar_c.py`'s `c` per corruption, severities 1-5, as written there."""


@dataclass(frozen=True)
class NoisePreset:
    """A named `eval.noise`.

    Attributes:
        summary: What it is, in a few words.
        levels: Noise type -> its levels, in order (for `cifar-c`: severity 1 first).
    """

    summary: str
    levels: Mapping[str, tuple[float, ...]]

    def expand(self) -> dict[str, list[float]]:
        """The levels as `eval.noise` holds them (a fresh mapping)."""
        return {kind: list(levels) for kind, levels in self.levels.items()}


CIFAR_C = NoisePreset(
    "CIFAR-10-C severities 1-5 of gaussian, shot, impulse and speckle noise, gaussian blur and contrast",
    {
        "gaussian": CIFAR_C_PARAMETERS["gaussian_noise"],  # the std
        "poisson": tuple(1 / c for c in CIFAR_C_PARAMETERS["shot_noise"]),  # 1 / photons at full intensity
        "salt_pepper": CIFAR_C_PARAMETERS["impulse_noise"],  # the fraction hit
        "speckle": CIFAR_C_PARAMETERS["speckle_noise"],  # the relative std
        "gaussian_blur": CIFAR_C_PARAMETERS["gaussian_blur"],  # sigma, pixels
        "contrast": tuple(1 - c for c in CIFAR_C_PARAMETERS["contrast"]),  # the reduction: 1 - the factor kept
    },
)

NOISE_PRESETS: Mapping[str, NoisePreset] = {"cifar-c": CIFAR_C}
"""The presets by name (`eval.noise: <name>`)."""


def list_noise_presets() -> list[str]:
    """The preset names, sorted."""
    return sorted(NOISE_PRESETS)


def noise_preset(name: str) -> dict[str, list[float]]:
    """The levels preset `name` stands for, as `eval.noise` holds them ({type: [levels]}).

    Raises:
        HarnessInputError: no such preset (the message names the known ones).
    """
    preset = NOISE_PRESETS.get(name)
    if preset is None:
        raise HarnessInputError(
            f"unknown noise preset {name!r}; expected a mapping {{type: [levels]}} or a preset: "
            f"{', '.join(list_noise_presets())}"
        )
    return preset.expand()
