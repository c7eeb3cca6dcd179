"""The streaming path: a split's images read batch by batch through a torch DataLoader.

`dataset.loader` chooses how a trial holds its images:

- `tensor`: every split is one float32 tensor on the trial's device (`harness.data.splits`);
  batching is slicing, with no copies and no workers. Fastest for sets that fit.
- `stream`: every split is a `StreamedImages`: the dataset's uint8 arrays stay in host memory,
  shared by the splits (no float copy of the set is made), and batches go to the device as
  uint8 and become float32 there. Training batches come through a `torch.utils.data.DataLoader`
  with `dataset.workers` worker processes, pinned memory on CUDA and two batches prefetched
  per worker; evaluation reads its slices directly.
- `auto` (the default): `tensor`, unless the float32 splits would take more than half of the
  device's free memory (CUDA: `torch.cuda.mem_get_info`; CPU: `MemAvailable` of
  /proc/meminfo), then `stream`.

Both paths give the same numbers: the batches hold the same samples in the same order (the
order is drawn from the trial's data-order generator before any batch is read), the uint8 to
float32 division is the same exact operation, augmentation draws from the same generator, and
the noise is seeded per test sample (`harness.noise.apply_noise`, by the sample's index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

TENSOR, STREAM, AUTO = "tensor", "stream", "auto"
LOADERS = (AUTO, TENSOR, STREAM)

# Float32 splits may take at most this share of the device's free memory under `auto`.
AUTO_MEMORY_SHARE = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class StreamedImages:
    """One split's images, read on demand: `rows` of the read-only uint8 `pool` `[N, C, H, W]`.

    It answers what the loop phases ask of a split's images: `len`, `shape`, `device`, and
    `images[key]` (a slice, or an index tensor or array of positions within the split), which
    returns float32 images in [0, 1] on `device`. `batches(order)` streams training batches
    through a DataLoader.
    """

    pool: np.ndarray
    rows: np.ndarray
    scale: float
    device: torch.device
    workers: int = 0

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.pool.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | Tensor | np.ndarray | Sequence[int]) -> Tensor:
        return self.to_device(self.read(key))

    def read(self, key: slice | Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """The uint8 images at `key` (positions within the split), on the CPU."""
        if isinstance(key, Tensor):
            key = key.cpu().numpy()
        # Fancy indexing copies: the batch never shares memory with the read-only pool.
        return torch.from_numpy(np.ascontiguousarray(self.pool[self.rows[key]]))

    def to_device(self, images: Tensor) -> Tensor:
        """uint8 images to float32 in [0, 1] on the split's device (the same division as the
        tensor path's)."""
        return images.to(self.device, non_blocking=True).to(torch.float32).div_(self.scale)

    def to(self, device: str | torch.device) -> StreamedImages:
        """The same images, delivered to `device`."""
        return dataclasses.replace(self, device=torch.device(device))

    def batches(self, order: Sequence[Tensor]) -> Iterator[Tensor]:
        """The batches of `order` (CPU index tensors of positions), in that order, read by
        `workers` DataLoader processes (pinned on CUDA) and delivered as float32 on the device."""
        loader = torch.utils.data.DataLoader(
            _Batches(self),
            sampler=[index.tolist() for index in order],
            batch_size=None,  # each sampler item is a whole batch, read with one fancy index
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.workers else None,
        )
        for images in loader:
            yield self.to_device(images)


Images = Tensor | StreamedImages
"""A split's images as the loop phases see them."""


class _Batches(torch.utils.data.Dataset):
    """A map-style dataset whose items are whole batches: `dataset[list of positions]`."""

    def __init__(self, images: StreamedImages) -> None:
        self.images = images

    def __getitem__(self, positions: Any) -> Tensor:
        return self.images.read(np.asarray(positions, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.images)


def batches_of(x: Tensor | StreamedImages, order: Sequence[Tensor]) -> Iterator[Tensor]:
    """The images of each index tensor of `order` (CPU), in order, on `x`'s device."""
    if isinstance(x, StreamedImages):
        yield from x.batches(order)
        return
    for index in order:
        yield x[index.to(x.device)]


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` now (CUDA: the driver's figure; CPU: MemAvailable, or 0 when
    it cannot be read, which keeps `auto` on the tensor path)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def choose_loader(loader: str, float_bytes: int, device: torch.device) -> str:
    """`tensor` or `stream`: `loader` itself unless it is `auto` (see the module docstring)."""
    if loader != AUTO:
        return loader
    free = free_memory(device)
    return STREAM if free and float_bytes > AUTO_MEMORY_SHARE * free else TENSOR
