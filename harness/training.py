"""Loop phases shared by every method: batching, one epoch, evaluation.

Data are tensors already on the trial's device (`harness.data.DataSplits`), so batching is
slicing by a shuffled index, or with `dataset.loader: stream` batches read by a DataLoader
(`harness.data.stream`): the same batches either way. Networks take images in [0, 1] (their
encoder normalises them). Neuron state is reset after every batch.

`Fitting` is the one training loop body: the optimiser, its schedule and the data-order
generator of one network, stepped an epoch at a time. Students (KD, direct), the conversion
baseline's ANN and the ANN teacher all train through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from harness.config.sections import TrainConfig
from harness.contract import noise_metric
from harness.data.augment import AugmentFn, create_augmentation
from harness.data.splits import Corruption
from harness.data.stream import Images, batches_of
from harness.errors import HarnessInputError, PluginError, TrialFailed
from harness.noise import apply_noise

LossFn = Callable[[Tensor, Tensor], Tensor]
"""Maps (images in [0, 1], labels) to a scalar loss; it runs the network(s) itself."""

BatchHook = Callable[[int, int], None]
"""Called after every training step with (batches done in this epoch, batches in the epoch).
It sees counts only, never a tensor, so it adds no host sync and changes no result."""

# How often the running loss is checked for NaN: a host sync every batch would stall a GPU.
_NAN_CHECK_EVERY = 20

_BATCH_HOOK: ContextVar[BatchHook | None] = ContextVar("harness_batch_hook", default=None)


@contextmanager
def batch_hook(hook: BatchHook | None) -> Iterator[None]:
    """Makes `hook` the per-batch hook of every `Fitting.epoch` run inside the block that is
    not given one (methods call `Fitting.epoch` themselves; `harness.trial.train` uses this to
    show progress without their knowing). `None` turns the hook off inside the block."""
    token = _BATCH_HOOK.set(hook)
    try:
        yield
    finally:
        _BATCH_HOOK.reset(token)


_AUTOCAST: ContextVar[torch.dtype | None] = ContextVar("harness_autocast", default=None)

PRECISIONS = ("fp32", "bf16")


@contextmanager
def precision(name: str, device: torch.device) -> Iterator[None]:
    """`train.precision` for every training step and evaluation pass inside the block.

    `fp32` changes nothing. `bf16` runs each forward pass (and so its backward) under CUDA
    autocast to bfloat16: convolutions and matrix products in bf16, losses and softmaxes in fp32
    (autocast's own lists), no gradient scaler (bf16 has fp32's range). Spiking neurons keep
    their membranes in fp32 whatever their input's dtype (`harness.models.lif_cpu.FastLIFNode`,
    the converted IF neuron), since a bf16 sum over T drifts. Logits are returned in fp32.

    Raises:
        HarnessInputError: `bf16` on a device that is not CUDA.
    """
    if name == "bf16" and device.type != "cuda":
        raise HarnessInputError(f"train.precision: bf16 is autocast on CUDA; this trial runs on {device.type}")
    token = _AUTOCAST.set(torch.bfloat16 if name == "bf16" else None)
    try:
        yield
    finally:
        _AUTOCAST.reset(token)


@contextmanager
def full_precision() -> Iterator[None]:
    """fp32 inside the block whatever `precision` says (the cached teacher is measured once, in fp32)."""
    token = _AUTOCAST.set(None)
    try:
        yield
    finally:
        _AUTOCAST.reset(token)


def autocast() -> torch.autocast:
    """The autocast block of the enclosing `precision` (disabled for fp32)."""
    dtype = _AUTOCAST.get()
    return torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """CPU index tensors of a random permutation of `range(n)`, `batch_size` at a time: the
    whole epoch's order, drawn before any batch is read (so streaming workers can read ahead)."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def make_optimizer(
    params: list[nn.Parameter], cfg: TrainConfig, optimizer: str | None = None, lr: float | None = None
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum), Adam or AdamW; `optimizer`/`lr` override `train.*` (teachers)."""
    optimizer = optimizer or cfg.optimizer
    lr = cfg.lr if lr is None else lr
    if optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
        )
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-batch cosine decay to zero over the run, or a constant rate."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class Fitting:
    """The optimiser, learning-rate schedule and data-order generator of one training run.

    Args:
        modules: Everything that trains together (a network, KD adapters).
        train: The shared optimisation settings (`train.*`).
        epochs: Length of the run (the cosine schedule decays over all of it).
        samples: Training samples per epoch.
        seed: Seed of the data order and augmentation (`train.augment`, `harness.data.augment`).
        optimizer, lr: Override `train.optimizer` / `train.lr` (the teacher's own).
        owner: Who computes the loss, for messages (`method 'kd' (entry point ... of ...)`).

    The loss of the run's first batch is checked once: a scalar tensor (else `PluginError`,
    bad input) and finite before any step (else `TrialFailed` saying so), before the NaN guard
    that watches the running loss.
    """

    def __init__(
        self,
        modules: list[nn.Module],
        train: TrainConfig,
        *,
        epochs: int,
        samples: int,
        seed: int,
        optimizer: str | None = None,
        lr: float | None = None,
        owner: str = "the network's loss",
    ) -> None:
        self.modules = modules
        self.train = train
        self.owner = owner
        self.checked = False  # whether the first batch's loss was checked (`check_first_loss`)
        params = [p for module in modules for p in module.parameters()]
        self.optimizer = make_optimizer(params, train, optimizer, lr)
        self.schedule = make_schedule(self.optimizer, train, epochs * -(-samples // train.batch_size))
        self.generator = torch.Generator().manual_seed(seed)
        self.augment = create_augmentation(train.augment)

    def epoch(self, loss_fn: LossFn, x: Images, y: Tensor, epoch: int, on_batch: BatchHook | None = None) -> float:
        """One pass over (`x`, `y`) with `loss_fn`; returns the mean loss. `on_batch` (default:
        the hook of an enclosing `batch_hook` block, if any) runs after every step."""
        return train_one_epoch(
            self.modules,
            self.optimizer,
            self.schedule,
            x,
            y,
            loss_fn if self.checked else self._checking(loss_fn),
            batch_size=self.train.batch_size,
            generator=self.generator,
            augment=self.augment,
            epoch=epoch,
            on_batch=on_batch if on_batch is not None else _BATCH_HOOK.get(),
        )

    def _checking(self, loss_fn: LossFn) -> LossFn:
        """`loss_fn`, its first result checked (`check_first_loss`)."""

        def first(images: Tensor, labels: Tensor) -> Tensor:
            loss = loss_fn(images, labels)
            if not self.checked:
                check_first_loss(loss, self.owner)
                self.checked = True
            return loss

        return first

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser, schedule and generator: enough to continue after a restart."""
        return {
            "modules": [module.state_dict() for module in self.modules],
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what `state_dict` returned."""
        for module, saved in zip(self.modules, state["modules"], strict=True):
            module.load_state_dict(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])


def train_one_epoch(
    modules: list[nn.Module],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    x: Images,
    y: Tensor,
    loss_fn: LossFn,
    *,
    batch_size: int,
    generator: torch.Generator,
    augment: AugmentFn,
    epoch: int,
    on_batch: BatchHook | None = None,
) -> float:
    """One pass over the training split; returns the mean loss.

    Args:
        modules: Everything that trains (network, adapters); put in train mode and reset
            (spiking state) after every batch.
        optimizer, schedule: Stepped once per batch.
        x, y: Training images in [0, 1] and labels, on the device.
        loss_fn: (images, labels) -> scalar loss.
        batch_size: Samples per step.
        generator: Drives shuffling and augmentation (seeded by the trial).
        augment: The augmentation policy, applied to every batch with `generator`.
        epoch: For the NaN message.
        on_batch: Called after every step with (batches done, batches in the epoch); progress
            display only (it gets no tensor and changes nothing the loop computes).

    Raises:
        TrialFailed: the loss became NaN or infinite.
    """
    for module in modules:
        module.train()
    total = torch.zeros((), device=y.device)
    batches = 0
    steps = -(-len(x) // batch_size)
    order = shuffled_batches(len(x), batch_size, generator)
    for index, batch in zip(order, batches_of(x, order), strict=True):
        images = augmented(augment, batch, generator)
        with autocast():
            loss = loss_fn(images, y[index.to(y.device)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        for module in modules:
            functional.reset_net(module)
        total += loss.detach()
        batches += 1
        if batches % _NAN_CHECK_EVERY == 0:
            _check_finite(total, epoch, batches)
        if on_batch is not None:
            on_batch(batches, steps)
    _check_finite(total, epoch, batches)
    return total.item() / max(1, batches)


def augmented(augment: AugmentFn, batch: Tensor, generator: torch.Generator) -> Tensor:
    """`augment` of a batch of images `[B, C, H, W]`, or of event frames `[B, T, C, H, W]`,
    whose T frames of a sample get one and the same transform (a crop moves the whole stream)."""
    if batch.dim() == 4:
        return augment(batch, generator)
    b, t, c, h, w = batch.shape
    return augment(batch.reshape(b, t * c, h, w), generator).reshape(b, t, c, h, w)


def check_first_loss(loss: object, owner: str) -> None:
    """A loss is a scalar tensor, finite on the first batch (before any step could blow it up).

    Raises:
        PluginError: not a scalar tensor (the loss function is wrong: bad input).
        TrialFailed: NaN or infinite before the first step.
    """
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        got = f"shape {list(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise PluginError(f"{owner}: the loss must be a scalar tensor, got {got}")
    if not math.isfinite(loss.item()):
        raise TrialFailed(f"{owner}: the loss of the first batch is {loss.item()} before any training step")


def _check_finite(total: Tensor, epoch: int, batch: int) -> None:
    if not math.isfinite(total.item()):
        raise TrialFailed(
            f"loss became NaN or infinite in epoch {epoch} (by batch {batch}); lower train.lr or check the data"
        )


@torch.inference_mode()
def predict_steps(
    model: nn.Module,
    x: Images,
    *,
    time_steps: int,
    batch_size: int,
    before_batch: Callable[[int], None] | None = None,
    corrupt: Corruption | None = None,
) -> Tensor:
    """Per-step logits `[T, N, K]` of a (spiking) network, state reset after each batch.

    `before_batch(size)` runs before each forward pass (op counters need the batch size);
    `corrupt(images, start)` transforms each batch first (`start`: the index of its first sample).
    """
    model.eval()
    outputs = []
    for start in range(0, len(x), batch_size):
        images = x[start : start + batch_size]
        if corrupt is not None:
            images = corrupt(images, start)
        if before_batch is not None:
            before_batch(len(images))
        with autocast():
            outputs.append(model(images, time_steps).float())
        functional.reset_net(model)
    return torch.cat(outputs, dim=1)


def cumulative_accuracy(step_logits: Tensor, y: Tensor) -> Tensor:
    """Accuracy at every t of one run: prediction at t = mean of the first t steps' logits.

    The network is causal and starts from reset, so the value at t equals a separate run
    with T = t; the whole time-step curve costs one run at T_max.
    """
    cumulative = step_logits.cumsum(dim=0)  # argmax of the sum = argmax of the mean
    return (cumulative.argmax(dim=-1) == y.unsqueeze(0)).float().mean(dim=1)


def predicted_classes(
    model: nn.Module,
    x: Images,
    *,
    time_steps: int,
    batch_size: int,
    corrupt: Corruption | None = None,
) -> Tensor:
    """The class of the time-averaged logits at `time_steps` for every image (as `corrupt`
    leaves it, if given), `[N]` on the images' device."""
    steps = predict_steps(model, x, time_steps=time_steps, batch_size=batch_size, corrupt=corrupt)
    return steps.sum(dim=0).argmax(dim=-1)  # argmax of the sum = argmax of the mean


def accuracy(
    model: nn.Module,
    x: Images,
    y: Tensor,
    *,
    time_steps: int,
    batch_size: int,
    corrupt: Corruption | None = None,
) -> float:
    """Accuracy (fraction) of the time-averaged logits at `time_steps` (of the images as
    `corrupt` leaves them, if given)."""
    predicted = predicted_classes(model, x, time_steps=time_steps, batch_size=batch_size, corrupt=corrupt)
    return (predicted == y).float().mean().item()


def noise_accuracies(
    model: nn.Module,
    x: Images,
    y: Tensor,
    noise: Mapping[str, Sequence[float]],
    *,
    prefix: str,
    time_steps: int,
    batch_size: int,
    corruption: Callable[[str, float], Corruption] | None = None,
    predictions: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Accuracy of `model` on `x` corrupted by every (type, level) of `noise`, keyed
    `<prefix><type>/<level>` (and, into `predictions` if given, the class predicted for every
    image under the same key). Corruptions are seeded per (type, level, sample index), so every
    model evaluated this way sees the same corrupted images, batch by batch (a streamed split is
    never corrupted whole). `corruption(type, level)` says how a batch is corrupted: the test
    split's own (`DataSplits.corruption`, which event data need), or by default
    `harness.noise.apply_noise` on the images."""
    if corruption is None:

        def corruption(kind: str, level: float) -> Corruption:
            return lambda images, start: apply_noise(images, kind, level, start_index=start)

    metrics = {}
    for kind, levels in noise.items():
        for level in levels:
            key = noise_metric(kind, level, prefix)
            predicted = predicted_classes(
                model, x, time_steps=time_steps, batch_size=batch_size, corrupt=corruption(kind, level)
            )
            metrics[key] = (predicted == y).float().mean().item()
            if predictions is not None:
                predictions[key] = predicted.cpu()
    return metrics
