"""Train / validation / test tensors of a registered dataset, split by `split_seed` alone.

By default every dataset is loaded whole into tensors on the trial's device (no DataLoader, no
workers): images are float32 `[N, C, H, W]` in `[0, 1]`, labels int64 `[N]`. With
`dataset.loader: stream` (or `auto` for a set too large for the device) the images are read batch
by batch instead (`harness.data.stream`); the splits are the same either way.

Splits:
    The split depends only on `split_seed` (and `val_fraction`), never on a trial's seed, so
    every trial and every method of a run evaluates on the same held-out test set.

    * Sets without an official test split (`digits`, `mnist-5k`): a stratified 20% test split
      (`train_test_split(..., test_size=0.2, stratify=y, random_state=split_seed)`), then
      `val_fraction` of the remainder, again stratified with `random_state=split_seed`, as
      validation; the rest is train. The test split does not depend on `val_fraction`.
    * Sets with one (the torchvision sets): the official test set is the test split;
      `val_fraction` of the official train set (stratified, `random_state=split_seed`) is
      validation; the rest is train.

    Within each split the samples keep the dataset's original order. `val_fraction` must lie
    in (0, 0.5]. The per-channel `mean` / `std` (`harness.data.stats`) are those of the train
    split, for input normalisation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor

from harness.config.base import describe_error, fields_of
from harness.data.cache import cached_raw, raw_digest, split_digest
from harness.data.entry import DATASETS, DatasetConfig, EventSource, RawArrays, normalise_root
from harness.data.stats import channel_stats
from harness.data.stream import STREAM, StreamedImages, choose_loader
from harness.errors import HarnessInputError
from harness.noise import apply_noise
from harness.noise.events import apply_event_noise

#: Fraction of the shipped (single-pool) datasets held out as the test split
#: (`DatasetEntry.test_fraction`'s default).
SHIPPED_TEST_FRACTION = 0.2


Corruption = Callable[[Tensor, int], Tensor]
"""Maps (a batch of test inputs, the test index of its first sample) to the batch as evaluated."""


@dataclass(frozen=True, eq=False)
class TestEvents:
    """The raw events of an event set's test split, for event-domain noises.

    Attributes:
        source: The entry's events and binning (`harness.data.EventSource`).
        from_test_pool: Whether the test split is the entry's official test pool (`test_x`).
        index: The test split's sample indices in that pool, in test order.
        scale: The counts' divisor (as for the clean frames).
    """

    source: EventSource
    from_test_pool: bool
    index: np.ndarray
    scale: float

    def corrupted(self, noise: str, level: float, start: int, count: int, device: torch.device) -> Tensor:
        """Test samples `start .. start + count` with their events corrupted, binned again."""
        events = self.source.read(self.from_test_pool, self.index[start : start + count])
        noisy = apply_event_noise(events, noise, level, self.source.sensor_size, start_index=start)
        frames = torch.from_numpy(np.ascontiguousarray(self.source.bin(noisy)))
        return frames.to(device).to(torch.float32).div_(self.scale)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train / validation / test tensors of one dataset.

    Compared by identity (`eq=False`): the fields are tensors.

    Attributes:
        name: The registry name of the dataset.
        train_x: float32 images `[N, C, H, W]` in `[0, 1]` (a tensor on the device, or with
            `dataset.loader: stream` a `StreamedImages` that reads them batch by batch,
            `harness.data.stream`); likewise `val_x`, `test_x`.
        train_y: int64 labels `[N]` in `[0, num_classes)`; likewise `val_y`, `test_y`.
        num_classes: Number of classes.
        mean: Per-channel mean of `train_x` (the direct encoding normalises with it).
        std: Per-channel (population) standard deviation of `train_x`.
        digests: Per split (`train`, `val`, `test`), a SHA-256 of the dataset's files as read
            and of the split's sample indices: equal digests, the same images and labels.
        loader: How the images are held: `tensor` or `stream` (`dataset.loader`, `auto` decided).
        test_events: For event data, the test split's raw events (`corruption`).
    """

    name: str
    train_x: Tensor | StreamedImages
    train_y: Tensor
    val_x: Tensor | StreamedImages
    val_y: Tensor
    test_x: Tensor | StreamedImages
    test_y: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    digests: dict[str, str] = dataclasses.field(default_factory=dict)
    loader: str = "tensor"
    test_events: TestEvents | None = None

    def corruption(self, noise: str, level: float) -> Corruption:
        """How (noise, level) corrupts the test split, a batch at a time, seeded per test sample:
        images through `harness.noise.apply_noise`; event data by corrupting each sample's raw
        events (`harness.noise.events`) and binning them again."""
        events = self.test_events
        if events is None:
            return lambda images, start: apply_noise(images, noise, level, start_index=start)
        return lambda images, start: events.corrupted(noise, level, start, len(images), images.device)

    @property
    def in_channels(self) -> int:
        """Channels C of one image (of one frame, for event data)."""
        return int(self.train_x.shape[-3])

    @property
    def image_shape(self) -> tuple[int, int]:
        """Image (height, width): what every model family is built for; not necessarily square."""
        return (int(self.train_x.shape[-2]), int(self.train_x.shape[-1]))

    @property
    def time_bins(self) -> int | None:
        """Frames per sample of event data (`[N, T, C, H, W]`); None for images."""
        return int(self.train_x.shape[1]) if len(self.train_x.shape) == 5 else None

    def to(self, device: str | torch.device) -> DataSplits:
        """Returns a copy with all tensors moved to `device`."""
        moved = {
            field: getattr(self, field).to(device)
            for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return dataclasses.replace(self, **moved)


def _stratified_split(
    name: str, index: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits `index` into sorted (kept, held out) parts, stratified on `y`."""
    from sklearn.model_selection import train_test_split

    try:
        kept, held = train_test_split(index, test_size=fraction, stratify=y[index], random_state=seed, shuffle=True)
    except ValueError as err:
        message = " ".join(str(err).split())
        raise HarnessInputError(
            f"dataset {name!r}: cannot make a stratified split of {len(index)} samples "
            f"with fraction {fraction}: {message}"
        ) from err
    return np.sort(kept), np.sort(held)


def _images(x: np.ndarray, index: np.ndarray, scale: float) -> Tensor:
    # Fancy indexing copies, so the read-only cache is never shared with the caller.
    return torch.from_numpy(np.ascontiguousarray(x[index])).to(torch.float32).div_(scale)


def _labels(y: np.ndarray, index: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(y[index], dtype=np.int64))


def _validate_raw(name: str, raw: RawArrays, frames: bool) -> None:
    dtypes, ndim = ((np.uint8, np.uint16), 5) if frames else ((np.uint8,), 4)
    for label, x, y in (("train", raw.x, raw.y), ("test", raw.test_x, raw.test_y)):
        if x is None:
            continue
        if x.dtype not in dtypes or x.ndim != ndim or y is None or len(y) != len(x):
            raise HarnessInputError(
                f"dataset {name!r}: unexpected {label} arrays "
                f"(images {x.dtype} {tuple(x.shape)}, labels {None if y is None else len(y)})"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= raw.num_classes):
            raise HarnessInputError(
                f"dataset {name!r}: {label} labels outside [0, {raw.num_classes}); the files may be corrupted"
            )


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    loader: str = "auto",
    workers: int = 0,
    time_bins: int | None = None,
    device: str | torch.device = "cpu",
) -> DataSplits:
    """Loads a registered dataset as train / validation / test tensors.

    The split depends only on `split_seed` and `val_fraction` (see the module docstring).

    Args:
        name: A registered dataset name (see `list_datasets()`).
        root: Folder holding the dataset files; required by the torchvision sets.
        download: Whether the torchvision sets may download missing files.
        val_fraction: Fraction of the training pool held out for validation, in (0, 0.5].
        split_seed: Seed of the stratified splits.
        image_size: Resize every image to (height, width), or a square of that side; None
            keeps the files' own size (`harness.data.cache`).
        loader, workers: `tensor`, `stream` or `auto`, and the DataLoader's worker processes
            when streaming (`harness.data.stream`).
        time_bins: Frames per sample of an event set (a trial's `snn.time_steps`).
        device: Device of the returned tensors.

    Returns:
        The splits, with per-channel mean/std of the train split.

    Raises:
        HarnessInputError: Unknown name, bad `val_fraction` / `split_seed`, missing root or
            files, or files torchvision cannot read.
    """
    try:
        config = DatasetConfig(
            name=name,
            root=None if root is None else os.fspath(root),
            download=download,
            val_fraction=val_fraction,
            split_seed=split_seed,
            image_size=image_size,
            loader=loader,
            workers=workers,
        )
    except ValidationError as exc:
        key, message = describe_error(exc.errors()[0], fields_of(DatasetConfig))
        raise HarnessInputError(f"dataset.{key}: {message}") from None
    return load_splits(config, device, time_bins)


def load_splits(config: DatasetConfig, device: str | torch.device = "cpu", time_bins: int | None = None) -> DataSplits:
    """`load_dataset` for a validated `dataset.*` section (what a trial reads); an event set is
    binned into `time_bins` frames (the trial's `snn.time_steps`).

    Raises:
        HarnessInputError: missing root or files, or files the dataset's entry cannot read.
    """
    name, root, download = config.name, config.root, config.download
    val_fraction, split_seed = config.val_fraction, config.split_seed
    entry = DATASETS.get(name)
    if entry.frames and (time_bins is None or time_bins < 1):
        raise HarnessInputError(f"dataset {name!r} holds event streams: give the frames per sample (time_bins)")
    root_key = normalise_root(entry, root)
    entry.check(root_key, bool(download))
    if download:
        try:
            entry.check(root_key, False)
        except HarnessInputError:
            # Fetch the files once; the cached read below then finds them on disk.
            entry.read(root_key, True, config.image_size, time_bins)
    time_bins = time_bins if entry.frames else None
    raw = cached_raw(name, root_key, config.image_size, time_bins)
    _validate_raw(name, raw, entry.frames)

    if raw.test_x is None:
        pool = np.arange(len(raw.y))
        pool, test_index = _stratified_split(name, pool, raw.y, entry.test_fraction, split_seed)
        train_index, val_index = _stratified_split(name, pool, raw.y, val_fraction, split_seed)
        test_pool, test_labels = raw.x, raw.y
    else:
        assert raw.test_y is not None
        train_index, val_index = _stratified_split(name, np.arange(len(raw.y)), raw.y, val_fraction, split_seed)
        test_index = np.arange(len(raw.test_y))
        test_pool, test_labels = raw.test_x, raw.test_y
    whole = raw_digest(name, root_key, config.image_size, time_bins)
    parts = {"train": train_index, "val": val_index, "test": test_index}
    device = torch.device(device)
    samples = sum(len(index) for index in parts.values())
    loader = choose_loader(config.loader, samples * int(np.prod(raw.x.shape[1:])) * 4, device)
    # Event counts are normalised by the `events` encoding, images by `direct` / `poisson`.

    def images(pool: np.ndarray, index: np.ndarray) -> Tensor | StreamedImages:
        if loader == STREAM:
            return StreamedImages(pool, index, raw.scale, device, config.workers)
        return _images(pool, index, raw.scale).to(device)

    mean, std = channel_stats(raw.x, train_index, raw.scale)
    return DataSplits(
        name=name,
        train_x=images(raw.x, train_index),
        train_y=_labels(raw.y, train_index).to(device),
        val_x=images(raw.x, val_index),
        val_y=_labels(raw.y, val_index).to(device),
        test_x=images(test_pool, test_index),
        test_y=_labels(test_labels, test_index).to(device),
        num_classes=raw.num_classes,
        mean=mean,
        std=std,
        digests={part: split_digest(whole, part, index) for part, index in parts.items()},
        loader=loader,
        test_events=None
        if raw.events is None
        else TestEvents(raw.events, raw.test_x is not None, test_index, raw.scale),
    )
