"""Event streams binned into frames, and the on-disk cache of binned frames.

Binning (`bin_events`): tonic's `ToFrame(sensor_size, n_time_bins=T)` on one sample, as
float32 counts `[T, 2, H, W]`. tonic's bins are T windows of `(t_max - t_min) // T` µs from
t_min, each half-open, so the events at t_max (and any after t_min + T * window) are not
counted, and a sample spanning fewer than T µs gives all zeros; an empty sample gives zeros.
Counts are not clipped.

Cache (`FrameCache`, `cached_frames`): the stacked counts `[N, T, 2, H, W]` of a split, one
`.npy` file per key, named by the SHA-256 of the key as sorted JSON. The key
(`frame_cache_key`) holds the dataset name, root, split, T, the binning method
(`BINNING`) and a digest of the source files' paths, sizes and mtimes (`source_digest`),
so a different T, binning or a changed file gives another file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import write_atomically, write_text_atomically

# The binning method as named in cache keys: change it (or the binning) and old caches miss.
BINNING = "tonic.ToFrame(n_time_bins)"


def _check_sensor(sensor_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(int(s) for s in sensor_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"sensor_size must be (W, H, P) with positive sizes, got {sensor_size!r}")
    return size  # type: ignore[return-value]


def bin_events(events: np.ndarray, sensor_size: Sequence[int], time_steps: int) -> np.ndarray:
    """One sample's events as float32 counts `[T, P, H, W]` (P = 2 polarity channels).

    tonic's `ToFrame(sensor_size=sensor_size, n_time_bins=time_steps)`: T half-open windows
    of `(t_max - t_min) // T` µs from the first event's time, so the events at t_max (and
    any after t_min + T * window) are not counted, and a sample spanning less than T µs
    gives zeros. Events not sorted by t are sorted first (tonic's bins assume it). An empty
    sample gives zeros (tonic's own answer for it is `[T, P, W, H]` float64). The counts
    are not clipped (binary frames are the caller's choice).

    Raises:
        ValueError: `time_steps` < 1, or an event outside the sensor.
    """
    width, height, polarities = _check_sensor(sensor_size)
    if isinstance(time_steps, bool) or int(time_steps) != time_steps or time_steps < 1:
        raise ValueError(f"time_steps must be a positive integer, got {time_steps!r}")
    time_steps = int(time_steps)
    shape = (time_steps, polarities, height, width)
    if len(events) == 0:
        return np.zeros(shape, dtype=np.float32)
    for axis, size in (("x", width), ("y", height), ("p", polarities)):
        values = events[axis].astype(np.int64)
        if values.min() < 0 or values.max() >= size:
            raise ValueError(f"event {axis} outside the sensor {tuple(sensor_size)}: [{values.min()}, {values.max()}]")
    t = events["t"]
    if np.any(t[1:] < t[:-1]):
        events = events[np.argsort(t, kind="stable")]
    from tonic.transforms import ToFrame

    frames = ToFrame(sensor_size=(width, height, polarities), n_time_bins=time_steps)(events)
    if frames.shape != shape:  # tonic's frames are (T, P, H, W); anything else is a tonic change
        raise RuntimeError(f"tonic.ToFrame returned shape {frames.shape}, expected {shape}")
    return frames.astype(np.float32)


def bin_samples(samples: Iterable[np.ndarray], sensor_size: Sequence[int], time_steps: int) -> np.ndarray:
    """`bin_events` of each sample, stacked as uint16 counts `[N, T, P, H, W]` (tonic counts in
    int16, so every count fits): what a `FrameCache`'s `make` returns."""
    frames = [bin_events(s, sensor_size, time_steps).astype(np.uint16) for s in samples]
    width, height, polarities = _check_sensor(sensor_size)
    if not frames:
        return np.zeros((0, int(time_steps), polarities, height, width), dtype=np.uint16)
    return np.stack(frames)


def source_digest(root: str | os.PathLike[str], files: Iterable[str]) -> str:
    """SHA-256 of the files' paths (relative to `root`, in order), sizes and mtimes (ns):
    cheap (no file is read), and different once a file is replaced, added or removed."""
    digest = hashlib.sha256()
    for name in files:
        stat = os.stat(os.path.join(os.fspath(root), name))
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def frame_cache_key(
    name: str, root: str | os.PathLike[str], split: str, time_steps: int, sources: str
) -> dict[str, Any]:
    """The `FrameCache` key of one split's frames (`sources`: its `source_digest`)."""
    return {
        "dataset": name,
        "root": os.path.abspath(os.path.expanduser(os.fspath(root))),
        "split": split,
        "time_steps": int(time_steps),
        "binning": BINNING,
        "sources": sources,
    }


_STORED = (np.dtype(np.uint8), np.dtype(np.uint16))


@dataclass(frozen=True)
class FrameCache:
    """Binned frames on disk under `folder`: one `<sha256 of the key>.npy` per key.

    The file is `np.save` of the stacked counts `[N, T, P, H, W]`, as uint8 when every
    count is at most 255 and as uint16 otherwise (exact, as float16 would not be above
    2048), loaded with `allow_pickle=False`; `<sha256>.json` beside it holds the key, for
    people only (never read). Files are written atomically (a temporary file in the same
    folder, then `os.replace`), so a reader never sees a half-written one; a file that
    does not load, or loads with another dtype or a shape that does not fit the key, is
    rebuilt.
    """

    folder: Path

    def path(self, key: dict[str, Any]) -> Path:
        """The cache file of `key` (whose values must be JSON: str, int, float, bool, None)."""
        text = json.dumps(key, sort_keys=True, separators=(",", ":"))
        return Path(self.folder) / f"{hashlib.sha256(text.encode()).hexdigest()}.npy"

    def get(self, key: dict[str, Any], make: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached counts of `key`; the first time, `make()`'s, written to disk.

        Returns:
            The counts `[N, T, P, H, W]` as stored: uint8 or uint16 (cast to float per batch).

        Raises:
            ValueError: `make()` returned something that is not 5-D non-negative integer counts
                up to 65535.
        """
        path = self.path(key)
        cached = _load(path, key)
        if cached is not None:
            return cached
        frames = _compact(make())
        _check_shape(frames, key)
        write_atomically(path, lambda scratch: _save(scratch, frames))
        write_text_atomically(path.with_suffix(".json"), json.dumps(key, sort_keys=True, indent=1) + "\n")
        return frames


def cached_frames(cache_dir: str | os.PathLike[str], key: dict[str, Any], make: Callable[[], np.ndarray]) -> np.ndarray:
    """`FrameCache(cache_dir).get(key, make)`."""
    return FrameCache(Path(cache_dir)).get(key, make)


def _check_shape(frames: np.ndarray, key: dict[str, Any]) -> None:
    steps = key.get("time_steps")
    if frames.ndim != 5 or (steps is not None and frames.shape[1] != steps):
        raise ValueError(f"frames must be [N, T={steps}, P, H, W], got shape {frames.shape}")


def _compact(frames: Any) -> np.ndarray:
    """Counts as uint8 when they all fit, uint16 otherwise; ValueError if they are not counts."""
    frames = np.asarray(frames)
    if frames.dtype.kind not in "biuf":
        raise ValueError(f"frames must be numeric counts, got dtype {frames.dtype}")
    if frames.size == 0:
        return frames.astype(np.uint8)
    low, high = frames.min(), frames.max()
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"frames must be counts in [0, 65535], got values in [{low}, {high}]")
    if frames.dtype.kind == "f" and not np.array_equal(frames, np.round(frames)):
        raise ValueError("frames must be integer counts, got fractions")
    return frames.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16, copy=False)


def _load(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The cached array, or None when absent or damaged (truncated, another dtype or shape)."""
    if not path.is_file():
        return None
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(frames, np.ndarray) or frames.dtype not in _STORED:
        return None
    try:
        _check_shape(frames, key)
    except ValueError:
        return None
    return frames


def _save(path: Path, frames: np.ndarray) -> None:
    with path.open("wb") as file:  # a file object: np.save would add ".npy" to a path
        np.save(file, frames, allow_pickle=False)
