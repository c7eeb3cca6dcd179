"""The raw arrays of each dataset, read once per process, and the digests that name them.

The raw arrays are cached per process (`functools.lru_cache` on `(name, root, image_shape)`), so repeated
trials in one process do not re-read files (files changed on disk during a process are
therefore not seen). The cached arrays are read-only, and `harness.data.splits` copies what it
takes from them, so callers cannot corrupt the cache.

Digests: a SHA-256 of a dataset's arrays as loaded (`raw_digest`), and per split one of that
digest and the split's sample indices (`split_digest`): equal digests, the same images and
labels (the MLflow dataset inputs of every run).

Resizing (`dataset.image_size`): an entry that is `sized` resizes as it reads; the arrays of
any other are resized here, bilinearly with antialiasing (as `torchvision.transforms.Resize`
does on tensors), and rounded back to uint8, once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.entry import DATASETS, RawArrays

ImageShape = tuple[int, int]


@functools.lru_cache(maxsize=16)
def cached_raw(
    name: str, root: str | None, image_shape: ImageShape | None = None, time_bins: int | None = None
) -> RawArrays:
    """Loads (once per process), resizes to `image_shape` (height, width) if given, and freezes
    the raw arrays of a dataset (event sets: binned into `time_bins` frames)."""
    entry = DATASETS.get(name)
    raw = entry.read(root, False, image_shape, time_bins)
    if image_shape is not None and not entry.sized:
        raw = dataclasses.replace(
            raw,
            x=resized(raw.x, image_shape),
            test_x=None if raw.test_x is None else resized(raw.test_x, image_shape),
        )
    for array in (raw.x, raw.y, raw.test_x, raw.test_y):
        if array is not None:
            array.flags.writeable = False
    return raw


def resized(images: np.ndarray, shape: ImageShape, chunk: int = 4096) -> np.ndarray:
    """uint8 images `[N, C, H, W]` resized to `shape`, bilinearly with antialiasing (unchanged
    if already that size); in chunks, so no float copy of a whole large set is made."""
    if images.ndim != 4 or tuple(images.shape[2:]) == tuple(shape):
        return images
    out = np.empty((len(images), images.shape[1], *shape), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).float()
        block = F.interpolate(block, size=shape, mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


@functools.lru_cache(maxsize=16)
def raw_digest(name: str, root: str | None, image_shape: ImageShape | None = None, time_bins: int | None = None) -> str:
    """SHA-256 of a dataset's arrays as loaded (once per process, like the arrays)."""
    raw = cached_raw(name, root, image_shape, time_bins)
    digest = hashlib.sha256(name.encode())
    for array in (raw.x, raw.y, raw.test_x, raw.test_y):
        if array is not None:
            digest.update(str(array.shape).encode())
            digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def split_digest(raw: str, part: str, index: np.ndarray) -> str:
    """SHA-256 of a dataset's digest, the split's name and its sample indices."""
    digest = hashlib.sha256(f"{raw}/{part}".encode())
    digest.update(np.ascontiguousarray(index, dtype=np.int64).tobytes())
    return digest.hexdigest()
