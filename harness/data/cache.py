"""The raw arrays of each dataset, read once per process, and the digests that name them.

The raw arrays are cached per process (`functools.lru_cache` on `(name, root)`), so repeated
trials in one process do not re-read files (files changed on disk during a process are
therefore not seen). The cached arrays are read-only, and `harness.data.splits` copies what it
takes from them, so callers cannot corrupt the cache.

Digests: a SHA-256 of a dataset's arrays as loaded (`raw_digest`), and per split one of that
digest and the split's sample indices (`split_digest`): equal digests, the same images and
labels (the MLflow dataset inputs of every run).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from harness.data.entry import DATASETS, RawArrays


@functools.lru_cache(maxsize=16)
def cached_raw(name: str, root: str | None) -> RawArrays:
    """Loads (once per process) and freezes the raw arrays of a dataset."""
    raw = DATASETS.get(name).load(root, False)
    for array in (raw.x, raw.y, raw.test_x, raw.test_y):
        if array is not None:
            array.flags.writeable = False
    return raw


@functools.lru_cache(maxsize=16)
def raw_digest(name: str, root: str | None) -> str:
    """SHA-256 of a dataset's arrays as loaded (once per process, like the arrays)."""
    raw = cached_raw(name, root)
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
