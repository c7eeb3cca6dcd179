"""Numerical core of the ANN-to-SNN conversion baseline: QCFS training, BN folding, IF neurons.

Two variants share one conversion step (docs/ARCHITECTURE.md, "The science", conversion):

* QCFS (Bu et al., ICLR 2022): the ANN is trained with `QCFS` activations, the learned
  threshold lambda of each becomes the firing threshold of its IF neuron.
* Threshold balancing: a plain ReLU ANN; each threshold is the max or a percentile of that
  ReLU's outputs on training data (`activation_thresholds`).

`convert` folds every BatchNorm into the convolution before it and swaps each activation for
a `ConvertedIF` neuron (soft reset, membrane starting at half the threshold, spikes of value
theta so the next layer's weights stay as they are). Average pooling, global average pooling
and residual additions are linear and stay; max-pooling and other activations have no spiking
equivalent and are refused by `check_convertible` before any training, and so is a product of
two activations (`harness.efficiency.ActivationProduct`, a spiking transformer's attention): the
product of two spike trains is not linear in their firing rates, so the rates of a converted
network do not carry the ANN's product. Parameter-free modules (a plugin's containers and
reshapes, identity, dropout) pass through unchanged.

At low T a converted network's spike counts drift from its ANN's activations layer after layer;
`calibrate_membranes` corrects each channel's initial membrane on a few training images (the
conversion baseline's `conversion.calibration_images`), and `SignedIF` is the alternative that
takes early spikes back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from spikingjelly.activation_based import functional, neuron
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from harness.efficiency import ActivationProduct
from harness.errors import HarnessInputError
from harness.models.base import SpikingNetwork
from harness.models.encoders import Encoder
from harness.models.resnet import BasicBlock

# Thresholds below this (a ReLU that never fired on the calibration data) are raised to it.
_MIN_THRESHOLD = 1e-6

# Modules whose computation the converted network keeps as it is (all linear or containers).
_KEPT = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.BatchNorm1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Sequential,
    nn.ModuleDict,
    BasicBlock,
    SpikingNetwork,
    Encoder,  # the input encoding: not a layer of the network's computation
)

# Layers the converted network cannot keep: spiking neurons (the ANN is converted, not an SNN),
# max pooling (the max of spike trains is not the spike train of the max), and normalisations
# and attention that depend on the sample. Every activation of torch.nn but ReLU is refused too.
_REFUSED = (
    neuron.BaseNode,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.LocalResponseNorm,
)


class _FloorSTE(torch.autograd.Function):
    """floor in the forward pass, identity in the backward pass (straight-through)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation `clamp(floor(x L / lambda + 1/2) / L, 0, 1) * lambda`.

    Elementwise, so it works on any shape (`[T, B, ...]` included). The floor has a
    straight-through gradient; lambda (`threshold`) learns through the clip and the scaling.

    Args:
        levels: Quantisation levels L (the output takes L + 1 values 0, lambda/L, ..., lambda).
        init: Initial lambda. 8.0 is the value of Bu et al.'s code for CIFAR; it shrinks towards
            the activation range during training. Smaller values (2-4) train faster on short runs.
    """

    shift: float = 0.5
    """The shift phi inside the floor: 1/2 makes the expected conversion error zero with the IF
    membrane starting at theta / 2 (Bu et al.'s Theorem 2); 0 is a plain quantised clip (the
    conversion diagnosis in BENCHMARKS.md trains with it to measure what the shift buys)."""

    def __init__(self, levels: int, init: float = 8.0) -> None:
        super().__init__()
        if levels < 1 or init <= 0:
            raise HarnessInputError(f"QCFS needs levels >= 1 and a positive init, got levels={levels}, init={init}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """Applies h(x) elementwise."""
        steps = _FloorSTE.apply(x * self.levels / self.threshold + self.shift) / self.levels
        return torch.clamp(steps, 0.0, 1.0) * self.threshold

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold.item():.4g}"


def qcfs_factory(levels: int, init: float = 8.0) -> Callable[[], nn.Module]:
    """An activation factory for `create_model`: a fresh `QCFS(levels, init)` per layer."""
    return lambda: QCFS(levels, init)


class ConvertedIF(neuron.HalfThresholdIFNode):
    """Multi-step IF neuron of a converted network: input and output `[T, B, ...]`.

    Soft reset (the threshold is subtracted on a spike); the membrane starts at half the
    threshold, also after `functional.reset_net`. Spikes have the value theta, so the rate
    `output.mean(0)` approximates `clamp(x, 0, theta)` of a constant input x.

    Args:
        threshold: Firing threshold theta > 0 (QCFS lambda or a balanced ReLU threshold).
    """

    charge: Tensor | None
    """A per-channel charge added to the membrane before the first step (`calibrate_membranes`), or None."""

    def __init__(self, threshold: float) -> None:
        super().__init__(v_threshold=float(threshold), step_mode="m")
        self.charge = None

    def forward(self, x_seq: Tensor) -> Tensor:
        """Integrates `x_seq` over its first dimension from `initial_membrane` (in fp32, whatever
        autocast made of the input); returns `spike * theta` in the input's dtype."""
        return super().forward(x_seq.float()).mul_(self.v_threshold).to(x_seq.dtype)

    def initial_membrane(self, x: Tensor) -> Tensor:
        """The membrane before the first step, shaped like one step's input `x`: theta / 2, plus
        `charge` where calibrated."""
        v = torch.full_like(x, float(self.v_threshold) / 2)
        return v if self.charge is None else v.add_(self.charge)

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:  # type: ignore[override]
        """The IF dynamics over `[T, ...]` as three tensor operations a step: spikingjelly's
        `HalfThresholdIFNode` runs its reference kernel on the CPU, with surrogate machinery even
        under no_grad, and took 8 of a converted VGG-7's 17 s of evaluation per trial (cProfile of
        `harness train --method conversion`); the spikes are the same (tests against it)."""
        theta = float(self.v_threshold)
        v = self.initial_membrane(x_seq[0])
        spikes = torch.empty_like(x_seq)
        for t in range(len(x_seq)):  # in place: the loop is memory-bound
            v.add_(x_seq[t])
            torch.ge(v, theta, out=spikes[t])
            v.sub_(spikes[t], alpha=theta)
        self.v = v  # the state at the last step (reset to theta / 2 by `functional.reset_net`)
        return spikes


class SignedIF(ConvertedIF):
    """A `ConvertedIF` that also fires negative spikes, to take back spikes it fired too early
    (the signed neuron with memory of Wang et al., IJCAI 2022).

    An IF neuron whose input changes sign over time fires on the early positive part and cannot
    undo it when the negative part comes: its count exceeds the ANN's `relu` of the summed input
    (the unevenness error of Bu et al.). Layer after layer the excess grows; on mnist-5k a
    converted VGG-5 at T = 4 fell to 0.312 against its ANN's 0.961, and this neuron lifted it to
    0.821 (membrane calibration, the default, to 0.956: BENCHMARKS.md, section 11). This neuron
    keeps, after every step t, the count of spikes it has emitted equal to `clamp(round(sum of
    its inputs / theta), 0, t)`: the membrane integrates and fires +theta at `v >= theta` (soft
    reset) as `ConvertedIF` does, and fires -theta (adding theta back) when `v < 0` while its
    count is above 0. With inputs of one sign it spikes exactly as `ConvertedIF` does.
    """

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:  # type: ignore[override]
        theta = float(self.v_threshold)
        v = self.initial_membrane(x_seq[0])
        count = torch.zeros_like(x_seq[0])
        spikes = []
        for x in x_seq:
            v = v + x
            spike = (v >= theta).to(x.dtype) - ((v < 0) & (count > 0)).to(x.dtype)
            v = v - spike * theta
            count = count + spike
            spikes.append(spike)
        self.v = v  # the state at the last step (reset to theta / 2 by `functional.reset_net`)
        return torch.stack(spikes)


def _fold_pairs(seq: nn.Sequential) -> None:
    """Fuses each (Conv2d, BatchNorm2d) / (Linear, BatchNorm1d) neighbour pair of `seq` in place."""
    for i in range(len(seq) - 1):
        first, second = seq[i], seq[i + 1]
        if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
            seq[i], seq[i + 1] = fuse_conv_bn_eval(first, second), nn.Identity()
        elif isinstance(first, nn.Linear) and isinstance(second, nn.BatchNorm1d):
            seq[i], seq[i + 1] = fuse_linear_bn_eval(first, second), nn.Identity()


def fold_batchnorm(model: SpikingNetwork) -> SpikingNetwork:
    """A deep copy in eval mode with every BatchNorm folded into the convolution before it.

    Each Conv2d + BatchNorm2d (or Linear + BatchNorm1d) pair of a `SeqToANNContainer`, or of any
    other `nn.Sequential`, becomes one layer with a bias and the BatchNorm an `nn.Identity`; eval
    outputs are unchanged.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_pairs(module)
    return folded


def check_convertible(model: nn.Module) -> None:
    """Checks that every layer has a spiking equivalent; cheap, runs on an untrained model.

    Kept as they are: the linear layers and containers of `_KEPT`, and every module that holds
    no weights or buffers of its own and is not refused, so a plugin family's own containers and
    its parameter-free reshapes (`nn.Flatten`, `nn.Unflatten`, a `Reshape` of its own), identity
    and dropout (inactive in eval) pass through. Converted: ReLU and QCFS. Refused: `_REFUSED`,
    every other activation of `torch.nn`, a product of two activations (`ActivationProduct`:
    not linear in firing rates), and a module with weights of its own that the conversion does
    not know (its weights could not be carried over).

    Raises:
        HarnessInputError: names the first module path that cannot be converted (for
            example an `nn.MaxPool2d`, a Sigmoid/Tanh/GELU, a LIF activation, a LayerNorm or
            a spiking transformer's attention product).
    """
    for name, module in model.named_modules():
        reason = _refusal(module)
        if reason is not None:
            raise HarnessInputError(f"model layer '{name or type(model).__name__}' ({type(module).__name__}) {reason}")


_ADVICE = "for ANN-to-SNN conversion; use pool='avg' and ReLU or QCFS activations"


def _refusal(module: nn.Module) -> str | None:
    """Why `module` cannot be converted, or None when it can (`check_convertible`)."""
    if isinstance(module, (*_KEPT, nn.ReLU, QCFS)):
        return None
    if isinstance(module, ActivationProduct):
        return (
            "multiplies two activations: the product of two spike trains is not linear in their firing "
            "rates, so rate-based ANN-to-SNN conversion does not hold for it; train this family with kd or direct"
        )
    if isinstance(module, _REFUSED) or type(module).__module__ == nn.ReLU.__module__:
        return f"has no spiking equivalent {_ADVICE}"
    if (
        next(module.parameters(recurse=False), None) is not None
        or next(module.buffers(recurse=False), None) is not None
    ):
        return f"has weights of its own that the conversion cannot carry over {_ADVICE}"
    return None  # parameter-free: a container, a reshape, identity, dropout


def _relu_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]


def _percentile(values: Tensor, percentile: float) -> Tensor:
    """p-th percentile (nearest rank) of a flat tensor; `kthvalue` has no size limit, unlike `quantile`."""
    k = max(1, min(values.numel(), round(percentile / 100 * values.numel())))
    return values.kthvalue(k).values


@torch.inference_mode()
def activation_thresholds(
    model: SpikingNetwork,
    x_train: Tensor,
    mode: Literal["max", "percentile"] = "max",
    percentile: float = 99.9,
    batches: int = 8,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Threshold of each ReLU of an ANN from its outputs on training data (run at T = 1, eval mode).

    Uses `batches` batches of `batch_size` images drawn without replacement (fixed `seed`),
    1024 images by default, fewer if `x_train` is smaller. "max" is the largest output over
    all of them; "percentile" is the mean over batches of each batch's p-th percentile
    (Rueckauer et al., 2017; a per-batch statistic keeps memory at one batch).

    Args:
        model: A ReLU network from `harness.models` (`pool="avg"`).
        x_train: Training images `[N, C, H, W]` in [0, 1] (the network's encoder normalises them).
        mode: "max" or "percentile".
        percentile: p in (0, 100] for mode "percentile".
        batches: Number of calibration batches.
        batch_size: Images per batch.
        seed: Seed of the image subset.

    Returns:
        `{module path: threshold}` for every `nn.ReLU`, keys as in `model.named_modules()`.
    """
    if mode not in ("max", "percentile") or not 0 < percentile <= 100:
        raise HarnessInputError(
            f"thresholds need mode 'max' or 'percentile' and p in (0, 100]; got {mode!r}, {percentile}"
        )
    check_convertible(model)
    device = next(model.parameters()).device
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[: batches * batch_size]
    stats: dict[str, list[Tensor]] = {name: [] for name in _relu_names(model)}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> None:
            flat = out.detach().flatten().float()
            stats[name].append(flat.max() if mode == "max" else _percentile(flat, percentile))

        return record

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in stats]
    was_training = model.training
    model.eval()
    try:
        for index in order.split(batch_size):
            model(x_train[index].to(device), 1)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    reduce = torch.max if mode == "max" else torch.mean
    return {name: reduce(torch.stack(values)).item() for name, values in stats.items()}


def convert(model: SpikingNetwork, thresholds: dict[str, float] | None = None, signed: bool = False) -> SpikingNetwork:
    """The spiking network of a trained ANN: a deep copy with BN folded and IF neurons.

    Each `QCFS` becomes a `ConvertedIF` (a `SignedIF` with `signed`) with its learned lambda;
    each `nn.ReLU` one with `thresholds[path]` (from `activation_thresholds`). The result runs like any network of
    `harness.models`: `snn(x, T)` gives per-step logits `[T, B, K]`; reset it between batches.
    It is returned in eval mode; a threshold below 1e-6 (a ReLU silent on the calibration data)
    is raised to 1e-6.

    Raises:
        HarnessInputError: a layer without spiking equivalent, or a ReLU missing from `thresholds`.
    """
    check_convertible(model)
    thresholds = thresholds or {}
    missing = [name for name in _relu_names(model) if name not in thresholds]
    if missing:
        raise HarnessInputError(
            f"ReLU layer '{missing[0]}' has no threshold; compute them with activation_thresholds (or train with QCFS)"
        )
    snn = fold_batchnorm(model)
    for name, module in list(snn.named_modules()):
        if isinstance(module, QCFS):
            theta = module.threshold.item()
        elif isinstance(module, nn.ReLU):
            theta = thresholds[name]
        else:
            continue
        snn.set_submodule(name, (SignedIF if signed else ConvertedIF)(max(theta, _MIN_THRESHOLD)))
    return snn.eval()


def _converted_names(model: nn.Module) -> list[str]:
    """The paths of the activations `convert` turns into neurons, in forward order."""
    return [name for name, module in model.named_modules() if isinstance(module, (QCFS, nn.ReLU))]


class _Reached(Exception):
    """Raised by a hook to end a forward pass at the layer it measures (nothing after it is needed)."""


@torch.no_grad()
def _channel_means(
    network: nn.Module, names: list[str], images: Tensor, time_steps: int, batch_size: int, stop: bool = False
) -> dict[str, Tensor]:
    """Per module of `names`, its output's mean over steps, samples and positions per channel
    (dimension 2 of `[T, B, C, ...]`), shaped `[C, 1, ...]` to broadcast over `[T, B, C, ...]`.
    With `stop`, each forward pass ends at the (single) module of `names`."""
    sums: dict[str, Tensor] = {}
    handles = []
    for name in names:

        def record(_module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            mean = out.float().mean(dim=(0, 1))  # [C, ...]
            if mean.dim() > 1:
                mean = mean.mean(dim=tuple(range(1, mean.dim())), keepdim=True)  # [C, 1, ...]: broadcasts
            total = mean * out.shape[1]
            sums[name] = sums[name] + total if name in sums else total
            if stop:
                raise _Reached

        handles.append(network.get_submodule(name).register_forward_hook(record))
    try:
        for batch in images.split(batch_size):
            try:
                network(batch, time_steps)
            except _Reached:
                pass
            functional.reset_net(network)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total / len(images) for name, total in sums.items()}


def calibration_subset(train_x: Tensor, count: int) -> Tensor:
    """The `count` training images a conversion is calibrated on: the same ones for every
    conversion of a trial (a fixed seed), whatever the trial's seed."""
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:count]
    return train_x[order.to(train_x.device)]


@torch.no_grad()
def calibrate_membranes(
    snn: SpikingNetwork, ann: SpikingNetwork, images: Tensor, time_steps: int, batch_size: int = 256
) -> None:
    """Potential calibration of a converted network, in place: each neuron's initial membrane is
    corrected per channel so that its spike count over `time_steps` steps matches its ANN's
    activation on average (the potential correction of Li et al., ICML 2021).

    At low T a converted layer's spike counts differ from its ANN's activations by a systematic
    amount per channel: inputs that change over time round differently in an IF neuron than in
    the ANN's quantiser, and the difference accumulates layer after layer (the last layer of a
    collapsed VGG-5 fired 0.87 where its ANN's mean was 0.62, and the network fell to 0.381
    against its ANN's 0.958). Layer by layer, in forward order, measured after the earlier layers'
    calibration: the ANN's mean activation minus the SNN's mean output (rate x threshold) per
    channel on `images`, times `time_steps`, is the charge the neuron emitted too much or too
    little; it is added to the membrane before the first step (`ConvertedIF.charge`). A count
    error of a fixed number of spikes is what the unevenness of the inputs leaves, so the
    correction's effect on the rate fades as 1/T at larger T, as the error does: it does not
    bias the long-T end of the curve (a per-step input offset did, measured: BENCHMARKS.md).

    Args:
        snn: `convert(ann)`, its encoder set.
        ann: The ANN it was converted from (the target).
        images: Training images `[N, C, H, W]` in [0, 1] (never test data).
        time_steps: The T the calibration is for (the reference T a trial reads).
        batch_size: Images per forward pass.
    """
    names = _converted_names(ann)
    targets = _channel_means(ann.eval(), names, images, 1, batch_size)
    for name in names:
        spiking: ConvertedIF = snn.get_submodule(name)
        got = _channel_means(snn, [name], images, time_steps, batch_size, stop=True)[name]
        previous = spiking.charge if spiking.charge is not None else 0.0
        spiking.charge = previous + (targets[name] - got) * time_steps
