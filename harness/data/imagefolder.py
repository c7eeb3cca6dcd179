"""`imagefolder`: a researcher's own images, read from `dataset.root`.

Layout (torchvision's `ImageFolder`): one sub-folder of images per class, the class names
sorted alphabetically giving the labels 0..K-1. Either

* `<root>/train/<class>/*` and `<root>/test/<class>/*`: an official test split, returned as
  `test_x` / `test_y`. The labels come from the classes under `train/`; a class folder under
  `test/` that `train/` lacks is an error, one that `test/` lacks simply has no test images.
  Other folders beside `train/` and `test/` (a `val/`, say) are ignored, since the harness
  carves the validation split out of the training images itself. Or
* `<root>/<class>/*` with no `train/` or `test/` folder: a single pool, returned with
  `test_x=None`; the harness carves a seeded stratified test split out of it (the entry never
  splits). A flat layout therefore cannot name a class `train` or `test`.

`train/` without `test/` (or the reverse) is an error. Hidden entries (names starting with
`.`, such as `.ipynb_checkpoints`) are ignored everywhere. Images are the files directly in a
class folder whose extension is one of `_EXTENSIONS` (case-insensitive); other files and
nested folders are ignored. Files are sorted by name within a class, so the order, and with
it the harness's split, is the same on every machine.

Decoding is Pillow's plain `Image.open` (the first frame of an animated GIF or a multi-page
TIFF; the EXIF orientation is not applied). Channels are read from the data: if every image is
greyscale (modes `1`, `L`, `LA`, `I`, `I;16*`, `F`, or a palette whose colours are all grey)
the arrays have 1 channel, otherwise 3 (RGB; a greyscale image among colour ones has its grey
copied into all three channels). Alpha is dropped, not composited. 16-bit greyscale is scaled
to 8 bits (65535 -> 255); `I` and `F` images are clipped to 0..255, as Pillow's `convert` does.

With `dataset.image_size` set, every image is resized to exactly (H, W) with bilinear
interpolation as it is read, hence `sized=True`; without it, all images must already share one
size. `dataset.download` does not apply: there is nothing to download.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from PIL import Image

from harness.data.entry import DatasetEntry, RawArrays
from harness.errors import HarnessInputError

_NAME = "dataset 'imagefolder'"
_LAYOUT = "one sub-folder of images per class (or train/ and test/ folders holding them)"
_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "F"})  # and the I;16 family, see _is_grey_mode
# What Pillow raises for a file it cannot identify or decode (UnidentifiedImageError is an
# OSError). Anything else is a bug and propagates as is.
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _checked_root(root: str | None) -> str:
    """Returns `root` if it is an existing folder."""
    if root is None:
        raise HarnessInputError(f"{_NAME} reads your images: set dataset.root to a folder with {_LAYOUT}")
    if not os.path.exists(root):
        raise HarnessInputError(f"{_NAME}: dataset.root {root} does not exist; set it to a folder with {_LAYOUT}")
    if not os.path.isdir(root):
        raise HarnessInputError(f"{_NAME}: dataset.root {root} is not a folder; set it to a folder with {_LAYOUT}")
    return root


def _split_dirs(root: str) -> tuple[str, str | None]:
    """Returns (training folder, test folder or None): `root`'s train/ and test/, or `root` itself."""
    train, test = os.path.join(root, "train"), os.path.join(root, "test")
    has_train, has_test = os.path.isdir(train), os.path.isdir(test)
    if has_train != has_test:
        there, missing = ("train", "test") if has_train else ("test", "train")
        raise HarnessInputError(
            f"{_NAME}: {root} has a {there}/ folder but no {missing}/ folder; add {os.path.join(root, missing)} "
            "with class sub-folders, or put the class folders directly under dataset.root"
        )
    return (train, test) if has_train else (root, None)


def _class_names(folder: str) -> list[str]:
    """Returns the sorted, non-hidden sub-folder names of `folder`; at least one."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise HarnessInputError(
            f"{_NAME}: no class sub-folders in {folder}; set dataset.root to a folder with {_LAYOUT}"
        )
    return names


def _classes(train_dir: str, test_dir: str | None) -> list[str]:
    """Returns the class names (the labels' order), checking the test classes against them."""
    classes = _class_names(train_dir)
    if len(classes) < 2:
        raise HarnessInputError(
            f"{_NAME}: {train_dir} holds only one class folder ({classes[0]}); classification needs at least 2"
        )
    if test_dir is not None:
        unknown = sorted(set(_class_names(test_dir)) - set(classes))
        if unknown:
            raise HarnessInputError(
                f"{_NAME}: {test_dir} has class folders that {train_dir} lacks: {', '.join(unknown)}; "
                "every test class needs training images"
            )
    return classes


def _check(root: str | None, download: bool) -> None:
    """Checks the folder layout, opening no image; `download` is ignored (nothing to download)."""
    _classes(*_split_dirs(_checked_root(root)))


def _image_files(folder: str) -> list[str]:
    """Returns the image paths directly in a class folder, sorted by name; at least one."""
    names = sorted(
        e.name
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in _EXTENSIONS
    )
    if not names:
        raise HarnessInputError(
            f"{_NAME}: class folder {folder} holds no images ({' '.join(sorted(_EXTENSIONS))}); "
            "add images to it or remove it"
        )
    return [os.path.join(folder, name) for name in names]


def _listing(split_dir: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """Returns (paths, labels) of the images of the classes present under `split_dir`."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        if os.path.isdir(folder):
            files = _image_files(folder)
            paths += files
            labels += [label] * len(files)
    return paths, labels


def _is_grey_mode(mode: str) -> bool:
    return mode in _GREY_MODES or mode.startswith("I;16")


def _grey_or_rgb(img: Image.Image) -> Image.Image:
    """Returns the image in mode `L` (greyscale) or `RGB` (colour), alpha dropped."""
    if img.mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits rather than clip
        wide = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if _is_grey_mode(img.mode):
        return img.convert("L")
    rgb = img.convert("RGB")
    if img.mode in ("P", "PA"):  # a palette of greys only is greyscale
        r, g, b = (np.asarray(band) for band in rgb.split())
        if np.array_equal(r, g) and np.array_equal(g, b):
            return Image.fromarray(r)
    return rgb


def _read(path: str, image_shape: tuple[int, int] | None) -> np.ndarray:
    """Returns one image as uint8 `[H, W, C]`, C being 1 or 3, resized to `image_shape` if given."""
    try:
        with Image.open(path) as opened:
            img = _grey_or_rgb(opened)
    except _READ_ERRORS as err:
        raise HarnessInputError(
            f"{_NAME}: cannot read image {path} ({_one_line(err)}); replace or remove the file"
        ) from err
    if image_shape is not None:
        height, width = image_shape
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _stack(images: list[np.ndarray], paths: list[str], root: str) -> np.ndarray:
    """Stacks `[H, W, C]` images into uint8 `[N, C, H, W]`: 3 channels if any image has them."""
    size = images[0].shape[:2]
    for image, path in zip(images, paths, strict=True):
        if image.shape[:2] != size:
            a, b = os.path.relpath(paths[0], root), os.path.relpath(path, root)
            raise HarnessInputError(
                f"{_NAME}: images under {root} have different sizes (e.g. {a} is {size[0]}x{size[1]}, "
                f"{b} is {image.shape[0]}x{image.shape[1]}); set dataset.image_size to an int or [H, W] to resize them"
            )
    shape = (*size, max(image.shape[2] for image in images))
    return np.ascontiguousarray(np.stack([np.broadcast_to(image, shape).transpose(2, 0, 1) for image in images]))


def _load(root: str | None, download: bool, image_shape: tuple[int, int] | None) -> RawArrays:
    """Reads the images under `root`; `download` is ignored (there is nothing to download)."""
    root = _checked_root(root)
    train_dir, test_dir = _split_dirs(root)
    classes = _classes(train_dir, test_dir)
    paths, labels = _listing(train_dir, classes)
    n_train = len(paths)
    if test_dir is not None:
        test_paths, test_labels = _listing(test_dir, classes)
        paths, labels = paths + test_paths, labels + test_labels
    # Both splits are stacked together, so that they share one size and one channel count.
    x = _stack([_read(path, image_shape) for path in paths], paths, root)
    y = np.asarray(labels, dtype=np.int64)
    has_test = test_dir is not None
    return RawArrays(
        x=x[:n_train] if has_test else x,
        y=y[:n_train] if has_test else y,
        test_x=np.ascontiguousarray(x[n_train:]) if has_test else None,
        test_y=y[n_train:] if has_test else None,
        num_classes=len(classes),
        scale=255.0,
    )


# Registered in pyproject.toml (entry-point group snn_kd_harness.datasets).
IMAGEFOLDER = DatasetEntry(load=_load, check=_check, needs_root=True, sized=True, augment="crop_flip")
