"""Tests of the `imagefolder` entry (harness.data.imagefolder) on image files written with Pillow."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.entry import RawArrays
from harness.data.imagefolder import IMAGEFOLDER
from harness.errors import HarnessInputError

# Written in an unsorted order: the labels must still follow the sorted names.
CLASSES = ["cat", "ant", "bee"]
FILES = ["d.png", "b.png", "c.png", "a.png"]
H, W = 6, 10


def _write(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Saves `pixels` (mode from the dtype and shape: L, LA, RGB, RGBA, I;16) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _pixels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _folder(root: Path, channels: int, seed: int = 0, shape: tuple[int, int] = (H, W)) -> dict[str, list[np.ndarray]]:
    """Writes CLASSES x FILES PNGs under `root`; returns each class's images in file-name order."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for name in CLASSES:
        by_file = {f: _write(root / name / f, _pixels(rng, (*shape, 3) if channels == 3 else shape)) for f in FILES}
        written[name] = [by_file[f] for f in sorted(FILES)]
    return written


def _nchw(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([im.transpose(2, 0, 1) if im.ndim == 3 else im[None] for im in images])


def _load(root: Path, shape: tuple[int, int] | None = None) -> RawArrays:
    return IMAGEFOLDER.load(str(root), False, shape)


def test_entry_flags() -> None:
    assert IMAGEFOLDER.needs_root and IMAGEFOLDER.sized


def test_rgb_pool_labels_follow_sorted_names_and_pixels_round_trip(tmp_path: Path) -> None:
    written = _folder(tmp_path, channels=3)
    raw = _load(tmp_path)
    assert raw.x.dtype == np.uint8 and raw.x.shape == (12, 3, H, W) and raw.x.flags.c_contiguous
    assert raw.y.dtype == np.int64 and raw.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert raw.test_x is None and raw.test_y is None
    assert raw.num_classes == 3 and raw.scale == 255.0
    expected = _nchw([im for name in sorted(CLASSES) for im in written[name]])
    np.testing.assert_array_equal(raw.x, expected)


def test_greyscale_pool_has_one_channel(tmp_path: Path) -> None:
    written = _folder(tmp_path, channels=1)
    raw = _load(tmp_path)
    assert raw.x.shape == (12, 1, H, W)
    np.testing.assert_array_equal(raw.x, _nchw([im for name in sorted(CLASSES) for im in written[name]]))


def test_one_colour_image_makes_all_three_channels(tmp_path: Path) -> None:
    written = _folder(tmp_path, channels=1)
    colour = _write(tmp_path / "bee" / "e.png", _pixels(np.random.default_rng(5), (H, W, 3)))
    raw = _load(tmp_path)
    assert raw.x.shape == (13, 3, H, W)
    first_grey = raw.x[0]  # ant/a.png
    assert (first_grey == written["ant"][0][None]).all()
    np.testing.assert_array_equal(raw.x[8], colour.transpose(2, 0, 1))  # bee/e.png, after bee's a..d


@pytest.mark.parametrize(
    ("mode", "pixels", "channels", "expected"),
    [
        ("LA", np.dstack([np.full((H, W), 7, np.uint8), np.zeros((H, W), np.uint8)]), 1, 7),
        ("RGBA", np.dstack([np.full((H, W, 3), 9, np.uint8), np.zeros((H, W), np.uint8)]), 3, 9),
        ("I;16", np.full((H, W), 30000, np.uint16), 1, 117),  # scaled (30000 / 257), not clipped
    ],
)
def test_alpha_dropped_and_16_bit_scaled(
    tmp_path: Path, mode: str, pixels: np.ndarray, channels: int, expected: int
) -> None:
    for name in ("a", "b"):
        _write(tmp_path / name / "x.png", pixels)
    with Image.open(tmp_path / "a" / "x.png") as written:
        assert written.mode == mode
    raw = _load(tmp_path)
    assert raw.x.shape == (2, channels, H, W) and (raw.x == expected).all()


def test_palette_of_greys_is_greyscale_and_of_colours_is_rgb(tmp_path: Path) -> None:
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(grey).convert("P").save(tmp_path / name / "x.gif")
    raw = _load(tmp_path)
    assert raw.x.shape == (2, 1, H, W)
    np.testing.assert_array_equal(raw.x[0, 0], grey)
    Image.fromarray(_pixels(np.random.default_rng(1), (H, W, 3))).convert("P").save(tmp_path / "b" / "y.gif")
    assert _load(tmp_path).x.shape == (3, 3, H, W)


def test_resize_to_a_non_square_shape(tmp_path: Path) -> None:
    _folder(tmp_path, channels=3)
    odd = _write(tmp_path / "ant" / "odd.png", _pixels(np.random.default_rng(2), (8, 3, 3)))
    raw = _load(tmp_path, (5, 9))
    assert raw.x.shape == (13, 3, 5, 9)
    resized = np.asarray(Image.fromarray(odd).resize((9, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(raw.x[4], resized.transpose(2, 0, 1))  # ant/odd.png, after ant's a..d


def test_different_sizes_without_image_size(tmp_path: Path) -> None:
    _folder(tmp_path, channels=3)
    _write(tmp_path / "bee" / "big.png", _pixels(np.random.default_rng(3), (7, 4, 3)))
    match = re.escape(f"images under {tmp_path} have different sizes (e.g. ant/a.png is 6x10, bee/big.png is 7x4)")
    with pytest.raises(HarnessInputError, match=match + r".*set dataset\.image_size"):
        _load(tmp_path)


def test_train_and_test_folders(tmp_path: Path) -> None:
    train = _folder(tmp_path / "train", channels=3, seed=1)
    rng = np.random.default_rng(9)
    test = [_write(tmp_path / "test" / name / "t.png", _pixels(rng, (H, W, 3))) for name in ("bee", "cat")]
    raw = _load(tmp_path)
    assert raw.x.shape == (12, 3, H, W) and raw.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(raw.x, _nchw([im for name in sorted(CLASSES) for im in train[name]]))
    assert raw.test_x is not None and raw.test_y is not None
    assert raw.test_y.dtype == np.int64 and raw.test_y.tolist() == [1, 2]  # ant has no test images
    np.testing.assert_array_equal(raw.test_x, _nchw(test))
    assert raw.num_classes == 3


def test_test_class_missing_from_train(tmp_path: Path) -> None:
    _folder(tmp_path / "train", channels=3)
    _write(tmp_path / "test" / "dog" / "t.png", _pixels(np.random.default_rng(0), (H, W, 3)))
    with pytest.raises(HarnessInputError, match=r"class folders that .* lacks: dog"):
        IMAGEFOLDER.check(str(tmp_path), False)
    with pytest.raises(HarnessInputError, match=r"lacks: dog"):
        _load(tmp_path)


@pytest.mark.parametrize(("present", "missing"), [("train", "test"), ("test", "train")])
def test_train_without_test_or_the_reverse(tmp_path: Path, present: str, missing: str) -> None:
    _folder(tmp_path / present, channels=3)
    match = re.escape(f"has a {present}/ folder but no {missing}/ folder; add {tmp_path / missing}")
    with pytest.raises(HarnessInputError, match=match):
        IMAGEFOLDER.check(str(tmp_path), False)
    with pytest.raises(HarnessInputError, match=match):
        _load(tmp_path)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    _folder(tmp_path, channels=3)
    bad = tmp_path / "cat" / "x.png"
    bad.write_bytes(b"this is not a PNG file")
    IMAGEFOLDER.check(str(tmp_path), False)  # check opens no image
    with pytest.raises(HarnessInputError, match=re.escape(f"cannot read image {bad} (")):
        _load(tmp_path)


def test_non_image_and_hidden_entries_are_ignored(tmp_path: Path) -> None:
    _folder(tmp_path, channels=3)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "ant" / ".hidden.png").write_bytes(b"garbage")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "README.md").write_text("my data")
    upper = _write(tmp_path / "ant" / "e.PNG", _pixels(np.random.default_rng(4), (H, W, 3)))
    raw = _load(tmp_path)
    assert raw.x.shape == (13, 3, H, W) and raw.num_classes == 3
    np.testing.assert_array_equal(raw.x[4], upper.transpose(2, 0, 1))  # ant: a..d, then e.PNG


def test_class_folder_without_images(tmp_path: Path) -> None:
    _folder(tmp_path, channels=3)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images yet")
    with pytest.raises(HarnessInputError, match=re.escape(f"class folder {tmp_path / 'dog'} holds no images")):
        _load(tmp_path)


def test_a_single_class(tmp_path: Path) -> None:
    _write(tmp_path / "only" / "a.png", _pixels(np.random.default_rng(0), (H, W)))
    with pytest.raises(HarnessInputError, match=r"only one class folder \(only\); classification needs at least 2"):
        IMAGEFOLDER.check(str(tmp_path), False)


def test_check_accepts_a_good_folder(tmp_path: Path) -> None:
    _folder(tmp_path, channels=1)
    IMAGEFOLDER.check(str(tmp_path), False)
    IMAGEFOLDER.check(str(tmp_path), True)  # download does not apply


def test_check_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(HarnessInputError, match=r"reads your images: set dataset\.root to a folder"):
        IMAGEFOLDER.check(None, False)
    with pytest.raises(HarnessInputError, match=r"set dataset\.root"):
        IMAGEFOLDER.load(None, False, None)
    missing = tmp_path / "nowhere"
    with pytest.raises(HarnessInputError, match=re.escape(f"dataset.root {missing} does not exist")):
        IMAGEFOLDER.check(str(missing), False)
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"")
    with pytest.raises(HarnessInputError, match=re.escape(f"dataset.root {a_file} is not a folder")):
        IMAGEFOLDER.check(str(a_file), False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessInputError, match=re.escape(f"no class sub-folders in {empty}")):
        IMAGEFOLDER.check(str(empty), False)
