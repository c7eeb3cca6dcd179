"""What a dataset is: a registered `DatasetEntry` that loads `RawArrays`, and its settings.

Adding a dataset is one entry point in the group `snn_kd_harness.datasets` naming a
`DatasetEntry` whose `load` returns `RawArrays` (uint8 images plus the divisor that maps them
to `[0, 1]`); the built-ins (`harness.data.shipped`, `harness.data.torchvision_sets`) register
the same way. `DATASETS` holds them by name.

`DatasetConfig` is the trial's `dataset.*` section. It lives here, beside the registry whose
names it checks, rather than with the core sections in `harness.config.sections`: the loader
(`harness.data.splits`) validates its own arguments with it, and the core sections build on the
data package, never the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from harness.config.base import Section, registered
from harness.registry import GROUP_PREFIX, Registry


@dataclass(frozen=True, eq=False)
class EventSource:
    """The raw events behind a `frames` entry's counts, so that event-domain noises
    (`harness.noise.events`) corrupt the events of a test sample and bin them again.

    Attributes:
        read: `read(test, indices)`: the structured events (x, y, t, p) of those samples of
            the test pool (`test` True: `test_x`'s samples) or of the train pool (`x`'s).
        bin: Events of several samples -> counts `[N, T, C, H, W]`, exactly as the entry binned
            its arrays (so level 0 gives the clean frames back).
        sensor_size: The sensor's (W, H, polarities), as tonic gives it.
    """

    read: Callable[[bool, np.ndarray], list[np.ndarray]]
    bin: Callable[[list[np.ndarray]], np.ndarray]
    sensor_size: tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class RawArrays:
    """What a dataset entry's `load` returns, before splitting.

    Attributes:
        x: uint8 images `[N, C, H, W]`: the pool to split (shipped sets) or the official
            train set (torchvision sets). An entry with `frames` gives event counts binned in
            time instead, uint8 or uint16 `[N, T, C, H, W]` (C = 2 polarities).
        y: int64 labels `[N]`.
        test_x: uint8 official test images, or None when the test split is carved out
            of `x`.
        test_y: int64 official test labels, or None.
        num_classes: Number of classes.
        scale: Divisor that maps the uint8 values to `[0, 1]` (255 for 8-bit images; 1 for
            event counts, which the `events` encoding normalises).
        events: For event data, the raw events behind the counts (event-domain noises).
    """

    x: np.ndarray
    y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    num_classes: int
    scale: float
    events: EventSource | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset.

    Attributes:
        load: `load(root, download) -> RawArrays`; may raise HarnessInputError. With `sized`,
            `load(root, download, image_shape)`, where `image_shape` is `dataset.image_size`
            as `(H, W)` or None (the files' own size).
        check: `check(root, download)`; cheap, reads no data, and raises
            HarnessInputError with a one-line message when the files are missing (and
            `download` is False) or a required root is None.
        needs_root: Whether the dataset reads files under `dataset.root`.
        sized: Whether `load` itself brings images to `dataset.image_size` (a folder of
            images of many sizes must be resized as it is read). Otherwise the harness
            resizes the arrays `load` returns when `dataset.image_size` is set.
        augment: The augmentation policy the literature trains this dataset with, which
            `train.augment: auto` selects (`harness.data.augment`).
        frames: Whether the samples are event streams binned into frames: `load(root,
            download, time_bins)` returns `[N, T, C, H, W]` counts with T = `time_bins` (the
            trial's `snn.time_steps`), which students take as their T steps.
        encoding: The input encoding `encoding.name: auto` selects: `direct` for images,
            `events` for frames (`harness.models.encoders`).
        test_fraction: The stratified test split the harness holds out of a set without an
            official one (0.2; the CIFAR10-DVS convention is 0.1).
    """

    load: Callable[..., RawArrays]
    check: Callable[[str | None, bool], None]
    needs_root: bool
    sized: bool = False
    augment: str = "shift"
    frames: bool = False
    encoding: str = "direct"
    test_fraction: float = 0.2

    def read(
        self, root: str | None, download: bool, image_shape: tuple[int, int] | None, time_bins: int | None
    ) -> RawArrays:
        """`load`, given `image_shape` if the entry is `sized` (else the caller resizes) and
        `time_bins` if it gives `frames`."""
        if self.frames:
            return self.load(root, download, time_bins)
        return self.load(root, download, image_shape) if self.sized else self.load(root, download)


def check_dataset_entry(name: str, entry: Any) -> None:
    """`DATASETS`' check: a `DatasetEntry`."""
    if not isinstance(entry, DatasetEntry):
        raise TypeError(f"expected a harness.data.DatasetEntry, got {entry!r}")


DATASETS: Registry[DatasetEntry] = Registry(GROUP_PREFIX + "datasets", "dataset", check_dataset_entry)


class DatasetConfig(Section):
    """`dataset.*`: which data the trial uses; splits depend on `split_seed` only (`harness.data.splits`)."""

    name: str = "mnist-5k"
    root: str | None = None
    download: bool = False
    val_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    split_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    # The images' (height, width) after resizing, or None for the files' own size; an int
    # means a square. Images need not be square.
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    # How the images are held (`harness.data.stream`): the same numbers either way.
    loader: Literal["auto", "tensor", "stream"] = "auto"
    workers: Annotated[int, Field(ge=0)] = 0

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return registered(DATASETS, name)

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_from_int(cls, size: Any) -> Any:
        if isinstance(size, int) and not isinstance(size, bool):
            return (size, size)
        return size


def list_datasets() -> list[str]:
    """Returns the registered dataset names, sorted."""
    return DATASETS.names()


def normalise_root(entry: DatasetEntry, root: str | os.PathLike[str] | None) -> str | None:
    """Returns an absolute root for entries that read files, None for the others."""
    if not entry.needs_root or root is None:
        return None
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def check_dataset(name: str, root: str | os.PathLike[str] | None = None, download: bool = False) -> None:
    """Checks, without loading anything, that a dataset can be loaded.

    Args:
        name: A registered dataset name.
        root: Folder holding the dataset files (required by the torchvision sets).
        download: Whether missing files may be downloaded.

    Raises:
        HarnessInputError: Unknown name, missing root, or missing files (with
            `download` False).
    """
    entry = DATASETS.get(name)
    entry.check(normalise_root(entry, root), bool(download))
