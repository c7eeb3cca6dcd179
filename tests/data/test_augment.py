"""The augmentation policies of `harness.data.augment`: each does what it says (the flip flips,
the crop stays within its padding, cutout zeroes one square), is reproducible under its seed,
and `train.augment: auto` resolves to the dataset's own policy."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from harness.config.resolve import trial_config
from harness.config.sections import TrainConfig
from harness.data.augment import (
    AUGMENTATIONS,
    create_augmentation,
    crop_flip,
    crop_padding,
    cutout,
    flip_horizontally,
    list_augmentations,
    none,
    shift,
    translate,
)
from harness.errors import HarnessInputError


def test_the_builtin_policies_are_registered_by_their_yaml_names() -> None:
    assert {"none", "shift", "crop_flip", "cutout"} <= set(list_augmentations())
    assert AUGMENTATIONS.get("crop_flip") is crop_flip
    with pytest.raises(HarnessInputError, match="unknown augmentation policy 'mixup'"):
        create_augmentation("mixup")


def test_translate_keeps_the_shape_and_zero_shift_is_the_identity() -> None:
    x = torch.rand(5, 3, 6, 7)
    shifted = translate(x, torch.Generator().manual_seed(0), max_shift=2)
    assert shifted.shape == x.shape
    assert translate(x, torch.Generator().manual_seed(0), max_shift=0) is x


def _offsets(seed: int, batch: int, max_shift: int) -> Tensor:
    """The offsets `translate` draws first from a generator seeded `seed` (row, col per image)."""
    return torch.randint(0, 2 * max_shift + 1, (2, batch), generator=torch.Generator().manual_seed(seed))


def test_translate_moves_a_known_image_by_the_drawn_offset_with_zero_padding() -> None:
    # Find a seed whose draw is offset (row 0, col 2) with max_shift 1: the image moves one row
    # down and one column left (out[i, j] = x[i - 1, j + 1]).
    seed = next(s for s in range(1000) if _offsets(s, 1, 1)[:, 0].tolist() == [0, 2])
    image = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])[None, None]
    expected = torch.tensor([[0.0, 0.0, 0.0], [2.0, 3.0, 0.0], [5.0, 6.0, 0.0]])[None, None]
    assert torch.equal(translate(image, torch.Generator().manual_seed(seed), max_shift=1), expected)


def test_translate_moves_every_image_and_channel_by_its_own_offset() -> None:
    x = torch.arange(4 * 2 * 5 * 5, dtype=torch.float32).reshape(4, 2, 5, 5) + 1
    offsets = _offsets(7, 4, 2)
    shifted = translate(x, torch.Generator().manual_seed(7), max_shift=2)
    for b in range(4):
        dy, dx = int(offsets[0, b]) - 2, int(offsets[1, b]) - 2  # out[i, j] = x[i + dy, j + dx]
        for i in range(5):
            for j in range(5):
                inside = 0 <= i + dy < 5 and 0 <= j + dx < 5
                want = x[b, :, i + dy, j + dx] if inside else torch.zeros(2)
                assert torch.equal(shifted[b, :, i, j], want), (b, i, j)
    assert len({tuple(offsets[:, b].tolist()) for b in range(4)}) > 1  # the images did not all move alike


def test_none_returns_the_images_unchanged() -> None:
    x = torch.rand(3, 1, 4, 4)
    assert none(x, torch.Generator().manual_seed(0)) is x


def test_shift_uses_one_pixel_below_16_and_two_from_16() -> None:
    def reach(size: int) -> int:
        # A single bright pixel in the centre moves by at most the policy's shift.
        x = torch.zeros(200, 1, size, size)
        x[:, 0, size // 2, size // 2] = 1.0
        moved = shift(x, torch.Generator().manual_seed(0)).argmax(dim=-1).amax(dim=-1).squeeze(1)
        return int((moved - size // 2).abs().max())

    assert reach(8) == 1 and reach(28) == 2


def test_flip_mirrors_about_half_the_images_exactly() -> None:
    x = torch.rand(400, 2, 3, 5)
    flipped = flip_horizontally(x, torch.Generator().manual_seed(1))
    mirrored = torch.tensor([torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x, strict=True)])
    kept = torch.tensor([torch.equal(f, i) for f, i in zip(flipped, x, strict=True)])
    assert bool((mirrored ^ kept).all())  # each image is either itself or its mirror
    assert 160 < int(mirrored.sum()) < 240  # p = 1/2


def test_crop_flip_pads_by_an_eighth_of_the_short_side_and_stays_within_it() -> None:
    assert crop_padding(torch.zeros(1, 3, 32, 32)) == 4
    assert crop_padding(torch.zeros(1, 1, 8, 8)) == 1
    assert crop_padding(torch.zeros(1, 3, 20, 28)) == 3
    # A bright column in the middle of a 32x32 image ends up within 4 pixels of where it was,
    # or of its mirror image, never further; and every offset up to 4 occurs.
    x = torch.zeros(500, 1, 32, 32)
    x[:, 0, :, 10] = 1.0
    out = crop_flip(x, torch.Generator().manual_seed(2))
    column = out.sum(dim=-2).argmax(dim=-1).squeeze(1)  # where the column went
    distance = torch.minimum((column - 10).abs(), (column - 21).abs())  # 21: the mirror of 10
    assert int(distance.max()) == 4
    assert set((column - 10).tolist()) | set((column - 21).tolist()) >= set(range(-4, 5))


def test_cutout_zeroes_one_square_of_half_the_short_side_clipped_at_the_border() -> None:
    x = torch.ones(300, 1, 16, 16)
    out = cutout(x, torch.Generator().manual_seed(3))
    # crop_flip's zero padding also darkens borders; inside the 2-pixel padding ring only the
    # hole is dark: at most an 8x8 square, exactly 8x8 when the centre is far from the border.
    interior = out[:, 0, 2:14, 2:14]
    dark = (interior == 0).sum(dim=(-2, -1))
    assert int(dark.max()) == 64 and int(dark.min()) >= 0
    assert bool((out[:, :, 2:14, 2:14] == 0).any(dim=(1, 2, 3)).float().mean() > 0.5)


@pytest.mark.parametrize("policy", [shift, crop_flip, cutout])
def test_every_policy_is_reproducible_under_its_seed_and_varies_with_it(policy) -> None:
    x = torch.rand(16, 3, 12, 10)
    first = policy(x, torch.Generator().manual_seed(5))
    assert torch.equal(first, policy(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, policy(x, torch.Generator().manual_seed(6)))
    assert first.shape == x.shape and first.dtype == x.dtype


def test_auto_resolves_to_the_dataset_default_and_an_explicit_policy_is_kept() -> None:
    assert trial_config({"dataset.name": "digits"}).train.augment == "shift"
    assert trial_config({"dataset.name": "cifar10"}).train.augment == "crop_flip"
    assert trial_config({"dataset.name": "digits", "train.augment": "cutout"}).train.augment == "cutout"
    assert trial_config({}).flat()["train.augment"] == "shift"  # what MLflow records is the name


def test_an_unknown_policy_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="unknown augmentation policy"):
        TrainConfig(augment="mixup")
    assert TrainConfig().augment == "auto"
