"""Event-camera datasets read with tonic: `nmnist`, `dvs-gesture`, `cifar10-dvs`.

The registered entries `NMNIST`, `DVS_GESTURE` and `CIFAR10_DVS` (at the end) give the harness
each set's frames (`DatasetEntry.frames`), binned into the trial's `snn.time_steps` bins and
cached on disk (`harness.data.frames`); the listing and reading they are made of come first. Each
dataset is read with its real tonic class (`tonic.datasets.NMNIST`,
`DVSGesture`, `CIFAR10DVS`): tonic lists the sample files and decodes each one, so the events
are tonic's structured arrays (fields x, y, t, p; t in microseconds) with tonic's own dtype.

Expected layout under `dataset.root` (tonic's own: `<root>/<tonic class name>/...`):

* `nmnist`: `<root>/NMNIST/Train/<digit>/*.bin` and `<root>/NMNIST/Test/<digit>/*.bin`, the
  original 40-bit records (byte 0 x, byte 1 y, bit 7 of byte 2 the polarity, the 23 bits
  left the timestamp in µs; a record with y == 240 is a timestamp overflow marker). The label
  is the last character of the folder name. Sensor (34, 34, 2), 10 classes.
* `dvs-gesture`: `<root>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy` and the
  same under `ibmGestureTest` (tonic's preprocessed release): each `.npy` an `[N, 4]` array of
  columns x, y, p, t with t in milliseconds (tonic multiplies it by 1000). The label is the
  file name. Sensor (128, 128, 2), 11 classes.
* `cifar10-dvs`: `<root>/CIFAR10DVS/<class name>/*.aedat4` (`airplane`, `automobile`, ...,
  `truck`), AEDAT 4 files, which tonic decodes with the `aedat` package (not a dependency
  of tonic itself; a dependency of this package). Sensor (128, 128, 2), 10 classes, and no
  official test split: `read_events` returns all samples as the train set and the harness holds
  out a fixed, seeded (`dataset.split_seed`), stratified 10 % test split, the 9:1 convention
  (`DatasetEntry.test_fraction`).

What counts as present: tonic itself checks, before it reads, that the downloaded archive
(`train.zip`, `ibmGestureTrain.tar.gz`, `CIFAR10DVS.zip`) is still there (present only, no
md5) and that at least 10,000 `.bin`, 100 `.npy` or 1,000 `.aedat4` files were extracted;
otherwise it downloads, and it has no switch to stop that. Here the tonic class is used
through a subclass of the same name (so tonic's folder is the same) whose presence check is
"the split's folder holds at least one sample file" and whose download raises a one-line
HarnessInputError unless `dataset.download: true`. So an extracted copy without its
archives, or a subset of the files, is read as it is; a download happens only when
allowed and when no sample file is there at all. The samples of a split are ordered by their
path (tonic's own listing is in file-system order for DVS Gesture and CIFAR10-DVS).

Binning into frames and the frame cache are `harness.data.frames`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.entry import DatasetEntry, EventSource, RawArrays
from harness.data.frames import FrameCache, bin_samples, frame_cache_key, source_digest
from harness.errors import HarnessInputError

__all__ = [
    "EVENT_DATASETS",
    "EventSet",
    "ListedSplit",
    "check_events",
    "list_events",
    "load_frames",
    "read_events",
]

# Errors tonic raises for missing, partial or corrupted files (the aedat decoder raises
# RuntimeError; an .aedat4 file outside a class folder is a KeyError). Anything else is a bug
# and propagates as is, except tonic's bare `Exception("there are no events in the AEDAT
# file")` (see `ListedSplit.decode`).
_READ_ERRORS = (RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError, EOFError, AssertionError)


@dataclass(frozen=True)
class _Spec:
    class_name: str  # the tonic class, and the folder under the root
    folders: tuple[str, ...]  # the split folders under <root>/<class_name> (train, test), or ("",)
    ext: str  # the sample files' suffix
    num_classes: int
    layout: str  # for messages

    @property
    def has_test(self) -> bool:
        return len(self.folders) == 2


_SPECS = {
    "nmnist": _Spec(
        "NMNIST", ("Train", "Test"), ".bin", 10, "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin"
    ),
    "dvs-gesture": _Spec(
        "DVSGesture",
        ("ibmGestureTrain", "ibmGestureTest"),
        ".npy",
        11,
        "DVSGesture/ibmGestureTrain/user*_*/<label>.npy and DVSGesture/ibmGestureTest/...",
    ),
    "cifar10-dvs": _Spec("CIFAR10DVS", ("",), ".aedat4", 10, "CIFAR10DVS/<class name>/*.aedat4"),
}
EVENT_DATASETS = tuple(sorted(_SPECS))


@dataclass(frozen=True, eq=False)
class EventSet:
    """One split of an event dataset, as tonic reads it.

    Attributes:
        events: One structured array per sample (fields x, y, t, p; t in µs, sorted as in
            the file), with the tonic class's dtype.
        labels: int64 labels `[N]`.
        sensor_size: `(W, H, 2)`, as tonic gives it.
        num_classes: Number of classes of the dataset.
        files: Each sample's file, relative to the root (POSIX separators), in the same order:
            what `source_digest` digests.
    """

    events: list[np.ndarray]
    labels: np.ndarray
    sensor_size: tuple[int, int, int]
    num_classes: int
    files: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.events)


def _spec(name: str) -> _Spec:
    try:
        return _SPECS[name]
    except KeyError:
        raise HarnessInputError(
            f"unknown event dataset {name!r}; expected one of {', '.join(EVENT_DATASETS)}"
        ) from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _has_file(folder: str, ext: str) -> bool:
    """Whether `folder` holds (at any depth) a file ending with `ext`; stops at the first."""
    for _, _, files in os.walk(folder):
        if any(f.endswith(ext) for f in files):
            return True
    return False


def _missing(name: str, spec: _Spec, folder: str) -> HarnessInputError:
    what = "folder not found" if not os.path.isdir(folder) else f"no *{spec.ext} files in it"
    return HarnessInputError(
        f"dataset {name!r}: files not found at {folder} ({what}); set dataset.root to the folder "
        f"that holds {spec.layout}, or set dataset.download: true to fetch them"
    )


def _absolute(root: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def check_events(name: str, root: str | os.PathLike[str] | None, download: bool) -> None:
    """Checks, without reading any event, that `read_events` can read a dataset.

    Raises:
        HarnessInputError: An unknown name; `root` None (names `dataset.root`); a root that is
            not a folder; `cifar10-dvs` without the `aedat` package; or, with `download`
            False, a split folder without any sample file (names the folder and
            `dataset.download: true`).
    """
    spec = _spec(name)
    if root is None:
        raise HarnessInputError(
            f"dataset {name!r} reads files from disk: set dataset.root to the folder that holds "
            f"{spec.layout} (or where it may be downloaded with dataset.download: true)"
        )
    root = _absolute(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise HarnessInputError(f"dataset {name!r}: dataset.root {root} is not a folder")
    if spec.ext == ".aedat4":
        import importlib.util

        if importlib.util.find_spec("aedat") is None:
            raise HarnessInputError(
                f"dataset {name!r}: tonic reads its .aedat4 files with the aedat package, which is "
                "not installed: pip install aedat"
            )
    if download:
        return
    for folder in spec.folders:
        path = os.path.join(root, spec.class_name, folder) if folder else os.path.join(root, spec.class_name)
        if not _has_file(path, spec.ext):
            raise _missing(name, spec, path)


@functools.cache
def _reader(name: str, download: bool) -> type:
    """The tonic class of `name`, with its presence check and download replaced (see the
    module docstring). Same class name, so tonic reads `<root>/<class name>` as usual."""
    import numpy.lib.recfunctions  # noqa: F401  (tonic's DVSGesture uses np.lib.recfunctions)
    import tonic.datasets

    spec = _SPECS[name]
    base = getattr(tonic.datasets, spec.class_name)

    def _check_exists(self: Any) -> bool:
        return _has_file(os.path.join(self.location_on_system, self.folder_name), spec.ext)

    def download_(self: Any) -> None:
        if not download:
            raise _missing(name, spec, os.path.join(self.location_on_system, self.folder_name).rstrip(os.sep))
        base.download(self)

    namespace = {"_check_exists": _check_exists, "download": download_, "__module__": __name__}
    return type(base.__name__, (base,), namespace)


def _plain(events: np.ndarray) -> np.ndarray:
    """The events with a plain dtype (the aedat decoder gives `p` a title, 'on')."""
    dtype = events.dtype
    if all(len(dtype.fields[n]) == 2 for n in dtype.names):
        return events
    plain = np.dtype([(n, dtype.fields[n][0]) for n in dtype.names])
    out = np.empty(events.shape, dtype=plain)
    for n in dtype.names:
        out[n] = events[n]
    return out


@dataclass(frozen=True, eq=False)
class ListedSplit:
    """One split of an event dataset as tonic lists it, before any file is decoded.

    Attributes:
        dataset: The tonic dataset instance (decodes sample `i` on `dataset[i]`).
        order: Its sample indices ordered by file path.
        files: Each sample's file relative to the root (POSIX separators), in `order`.
        labels: int64 labels `[N]` in `order` (tonic's `targets`: no file is read).
        sensor_size: `(W, H, 2)`, as tonic gives it.
        name: The dataset's name, for messages.
    """

    dataset: Any
    order: tuple[int, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    sensor_size: tuple[int, int, int]
    name: str

    def decode(self, positions: Iterable[int] | None = None) -> list[np.ndarray]:
        """The events (structured arrays x, y, t, p with a plain dtype) of the samples at
        `positions` in `order` (default: every sample, in order)."""
        events = []
        chosen = self.order if positions is None else [self.order[int(p)] for p in positions]
        for i in chosen:
            try:
                sample, _ = self.dataset[i]
            except Exception as err:
                # tonic's read_aedat4 raises a bare Exception for a file without events.
                if not isinstance(err, _READ_ERRORS) and type(err) is not Exception:
                    raise
                raise HarnessInputError(
                    f"dataset {self.name!r}: tonic could not read {self.dataset.data[i]}: {type(err).__name__}: "
                    f"{_one_line(err)}; fix or remove the file, or set dataset.root / dataset.download: true"
                ) from err
            events.append(_plain(np.asarray(sample)))
        return events


def _listed(dataset: Any, root: str, name: str, sensor_size: tuple[int, int, int]) -> ListedSplit:
    order = tuple(sorted(range(len(dataset.data)), key=lambda i: dataset.data[i]))
    return ListedSplit(
        dataset=dataset,
        order=order,
        files=tuple(Path(os.path.relpath(dataset.data[i], root)).as_posix() for i in order),
        labels=np.asarray([int(dataset.targets[i]) for i in order], dtype=np.int64),
        sensor_size=sensor_size,
        name=name,
    )


def list_events(
    name: str, root: str | os.PathLike[str] | None, download: bool
) -> tuple[ListedSplit, ListedSplit | None]:
    """An event dataset's train and test splits as its tonic class lists them (no file decoded).

    Args:
        name: `nmnist`, `dvs-gesture` or `cifar10-dvs`.
        root: `dataset.root`: the folder holding `<tonic class name>/...` (module docstring).
        download: Whether tonic may download (and extract) the files when none is there.

    Returns:
        `(train, test)`; for `cifar10-dvs`, `(all samples, None)`: the harness holds out its test
        split (`DatasetEntry.test_fraction`, 0.1, stratified, seeded by `dataset.split_seed`).

    Raises:
        HarnessInputError: What `check_events` raises, and files tonic cannot list.
    """
    spec = _spec(name)
    check_events(name, root, download)
    assert root is not None  # check_events raised otherwise
    root = _absolute(root)
    cls = _reader(name, bool(download))
    sensor_size = tuple(int(s) for s in cls.sensor_size)
    try:
        if spec.has_test:
            train = _listed(cls(root, train=True), root, name, sensor_size)
            return train, _listed(cls(root, train=False), root, name, sensor_size)
        return _listed(cls(root), root, name, sensor_size), None
    except _READ_ERRORS as err:
        raise HarnessInputError(
            f"dataset {name!r}: tonic could not read it under {root}: {type(err).__name__}: "
            f"{_one_line(err)}; fix the files, or set dataset.root / dataset.download: true"
        ) from err


def read_events(name: str, root: str | os.PathLike[str] | None, download: bool) -> tuple[EventSet, EventSet | None]:
    """`list_events`, every sample decoded: the splits' events (see `EventSet`)."""
    num_classes = _spec(name).num_classes

    def read(split: ListedSplit) -> EventSet:
        return EventSet(split.decode(), split.labels, split.sensor_size, num_classes, split.files)

    train, test = list_events(name, root, download)
    return read(train), None if test is None else read(test)


# --- the registered entries ---------------------------------------------------------------------

FRAME_CACHE_ENV = "HARNESS_FRAME_CACHE"


def frame_cache_folder(root: str) -> Path:
    """Where binned frames are cached: `$HARNESS_FRAME_CACHE`, else `<root>/.harness-frames`
    beside the data (one cache for every trial and worker that reads this root)."""
    return Path(os.environ.get(FRAME_CACHE_ENV) or os.path.join(root, ".harness-frames"))


def load_frames(name: str, root: str | None, download: bool, time_bins: int) -> RawArrays:
    """`name`'s splits binned into `time_bins` frames (`bin_samples`), from the frame cache when
    they were binned before (the files are then listed, not decoded), as `RawArrays` of counts
    `[N, T, 2, H, W]` (`scale` 1: the `events` encoding normalises them)."""
    train, test = list_events(name, root, download)
    assert root is not None  # list_events raised otherwise
    cache = FrameCache(frame_cache_folder(_absolute(root)))

    def frames(split: ListedSplit, part: str) -> np.ndarray:
        key = frame_cache_key(name, root, part, time_bins, source_digest(_absolute(root), split.files))
        return cache.get(key, lambda: bin_samples(split.decode(), split.sensor_size, time_bins))

    def read(from_test: bool, positions: np.ndarray) -> list[np.ndarray]:
        return (test if from_test and test is not None else train).decode(positions)

    return RawArrays(
        x=frames(train, "train"),
        y=train.labels,
        test_x=None if test is None else frames(test, "test"),
        test_y=None if test is None else test.labels,
        num_classes=_spec(name).num_classes,
        scale=1.0,
        events=EventSource(
            read=read,
            bin=lambda samples: bin_samples(samples, train.sensor_size, time_bins),
            sensor_size=train.sensor_size,
        ),
    )


def _entry(name: str, **capabilities: Any) -> DatasetEntry:
    return DatasetEntry(
        load=functools.partial(load_frames, name),
        check=functools.partial(check_events, name),
        needs_root=True,
        frames=True,
        encoding="events",
        **capabilities,
    )


# Registered in pyproject.toml (entry-point group snn_kd_harness.datasets). N-MNIST and DVS
# Gesture train without augmentation, as their papers do; CIFAR10-DVS with crop + flip
# (TET, Deng et al. 2022, flip and translate it), and a 9:1 split of its one pool.
NMNIST = _entry("nmnist", augment="none")
DVS_GESTURE = _entry("dvs-gesture", augment="none")
CIFAR10_DVS = _entry("cifar10-dvs", augment="crop_flip", test_fraction=0.1)
