"""`shapes`: a generated dataset of 1,600 greyscale 16x16 images of four shapes (it ships: no files).

Classes: 0 disc, 1 square outline, 2 cross, 3 triangle. Each image has one shape of random size,
position and brightness on a faintly noisy background, drawn by numpy from a fixed seed, so
every process (and every Ray worker) generates exactly the same images. The harness carves a
stratified test split out of this one pool, as for its own shipped sets.
"""

from __future__ import annotations

import numpy as np

from harness.data import DatasetEntry, RawArrays

SIZE = 16
PER_CLASS = 400
CLASSES = 4
SEED = 20261201


def _shape(kind: int, rng: np.random.Generator) -> np.ndarray:
    """One shape's mask on a SIZE x SIZE canvas."""
    r = rng.uniform(3.0, 6.0)
    cy, cx = rng.uniform(r, SIZE - r, size=2)
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dy, dx = y - cy, x - cx
    if kind == 0:  # disc
        return dy**2 + dx**2 <= r**2
    if kind == 1:  # square outline
        inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
        return inside & ~((np.abs(dy) <= r - 1.5) & (np.abs(dx) <= r - 1.5))
    if kind == 2:  # cross
        return ((np.abs(dy) <= 1.0) & (np.abs(dx) <= r)) | ((np.abs(dx) <= 1.0) & (np.abs(dy) <= r))
    return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)  # triangle, apex up


def generate() -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 1, SIZE, SIZE] and int64 labels [N], the same on every call."""
    rng = np.random.default_rng(SEED)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    images = np.empty((len(labels), 1, SIZE, SIZE), dtype=np.uint8)
    for i, kind in enumerate(labels):
        background = rng.normal(30.0, 12.0, size=(SIZE, SIZE))
        brightness = rng.uniform(140.0, 255.0)
        canvas = np.where(_shape(int(kind), rng), brightness, background)
        images[i, 0] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _load(root: str | None, download: bool) -> RawArrays:
    x, y = generate()
    return RawArrays(x=x, y=y, test_x=None, test_y=None, num_classes=CLASSES, scale=255.0)


def _check(root: str | None, download: bool) -> None:
    """Generated: nothing to find on disk."""


SHAPES = DatasetEntry(load=_load, check=_check, needs_root=False)
