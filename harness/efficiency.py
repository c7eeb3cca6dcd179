"""Firing rates, synaptic operations and energy, counted per time step with forward hooks.

A convolution or linear layer whose input is spikes (every non-zero entry of one magnitude: 1,
or the threshold a converted IF neuron emits) costs accumulates (ACs): one per non-zero
input and outgoing synapse. Any other input (the image, pooled rates) costs
multiply-accumulates (MACs) for every weight use. BatchNorm is folded into the preceding
layer at inference and costs nothing. Energy uses the 45 nm figures common in the SNN
literature: 0.9 pJ per AC, 4.6 pJ per MAC.

A product of two activation tensors, `a @ b` (a spiking transformer's Q K^T and attn V), is
counted where it runs through an `ActivationProduct` module, by the same rule: when both
operands are spikes it costs one AC per pair of non-zero entries that meet, for each matrix
`sum over k of nnz(a[..., :, k]) * nnz(b[..., k, :])`; when either side is analog it costs
MACs, every multiply of the product: M*K*N for each `[M, K] @ [K, N]` matrix. Constant factors
applied to a product (attention's scale) fold into the next neuron's threshold, like BatchNorm,
and cost nothing.

Counts are kept per time step, so one run at T_max yields the figures at every T <= T_max.
Under the direct encoding the stem convolution sees the static image once per sample (a
one-step input whose output is repeated), so its MACs are counted once, at step 1; a spiking
encoding (`poisson`) feeds it spikes at every step, counted as ACs per step. A product's
operands are `[T, B, ..., M, K]` and `[T, B, ..., K, N]` (T is 1 for one that runs once), so
its counts go to their steps the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.neuron import BaseNode
from torch import Tensor, nn

ENERGY_PER_AC_PJ = 0.9
ENERGY_PER_MAC_PJ = 4.6


class ActivationProduct(nn.Module):
    """`a @ b` of two activation tensors, as a module so that `count_ops` sees and counts it.

    A family that multiplies two activations (attention's Q K^T and attn V) runs the product
    through one of these, called positionally (`product(a, b)`: forward hooks see only
    positional inputs). The operands are `[T, B, ..., M, K]` and `[T, B, ..., K, N]`, T being 1
    for a product that runs once per sample; the leading dimensions broadcast as in `torch.matmul`.
    """

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.dim() < 4 or b.dim() < 4:
            raise ValueError(
                f"ActivationProduct multiplies [T, B, ..., M, K] by [T, B, ..., K, N]; got {list(a.shape)} "
                f"and {list(b.shape)}"
            )
        return a @ b


@dataclass
class OpCounts:
    """Totals per time step (index t-1), summed over the samples seen."""

    time_steps: int
    samples: int = 0
    batch: int = 1
    acs: Tensor = field(init=False)
    macs: Tensor = field(init=False)
    spikes: dict[str, Tensor] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.acs = torch.zeros(self.time_steps, dtype=torch.float64)
        self.macs = torch.zeros(self.time_steps, dtype=torch.float64)

    def summary(self, time_steps: int) -> dict[str, float]:
        """Per-sample figures over the first `time_steps` steps, named as docs/ARCHITECTURE.md's
        "The MLflow contract" names them."""
        n = max(1, self.samples)
        acs = self.acs[:time_steps].sum().item() / n
        macs = self.macs[:time_steps].sum().item() / n
        out = {
            "acs": acs,
            "macs": macs,
            "synops": acs + macs,
            "energy_uj": (acs * ENERGY_PER_AC_PJ + macs * ENERGY_PER_MAC_PJ) * 1e-6,
        }
        if self.spikes:
            total_spikes = sum(s[:time_steps].sum().item() for s in self.spikes.values())
            total_slots = sum(self.neurons.values()) * time_steps * n
            out["firing_rate"] = total_spikes / total_slots
            for name, spikes in self.spikes.items():
                out[f"firing_rate/{name}"] = spikes[:time_steps].sum().item() / (self.neurons[name] * time_steps * n)
        return out


def _per_step(ops: Tensor, rows: int, batch: int, time_steps: int) -> Tensor:
    """Sums per-sample op counts into `[T]`; `rows` leading entries are `lead * batch` samples.

    `lead` is T for layers inside the time loop and 1 for the stem, which runs once.
    """
    per_row = ops.reshape(rows, -1).sum(dim=1, dtype=torch.float64)
    lead = per_row.reshape(-1, batch).sum(dim=1).cpu()
    steps = torch.zeros(time_steps, dtype=torch.float64)
    steps[: len(lead)] = lead
    return steps


def _is_spikes(x: Tensor) -> bool:
    """Spikes: every non-zero entry has the same magnitude (1, or a converted neuron's threshold),
    positive or, for a signed neuron's spikes, negative: each is an event that adds or subtracts
    the weights it reaches, an AC."""
    low, high = torch.aminmax(x)
    peak = torch.maximum(high, -low)
    return bool(((x == 0) | (x.abs() == peak)).all())


@lru_cache(maxsize=256)
def _fan_out(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """`[H, W]`: how many output positions of one output channel each input position feeds.

    The transposed convolution of an all-ones output map with an all-ones kernel is exactly
    that count, borders, stride and dilation included.
    """
    dims = list(zip(size, kernel, stride, padding, dilation, strict=True))
    out_size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in dims]
    reach = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, (_, k, s, p, d) in zip(out_size, dims, strict=True)]
    ones_out = torch.ones(1, 1, *out_size, dtype=torch.float64)
    kernel_ones = torch.ones(1, 1, *kernel, dtype=torch.float64)
    fan_out = F.conv_transpose2d(
        ones_out,
        kernel_ones,
        stride=stride,
        padding=padding,
        dilation=dilation,
        output_padding=tuple(n - r for n, r in zip(size, reach, strict=True)),
    )
    return fan_out[0, 0]


def _conv_ops(conv: nn.Conv2d, x: Tensor, out: Tensor) -> tuple[Tensor, bool]:
    """Per-row op counts `[rows]`; ACs are active inputs x their fan-out x the output channels
    each input channel feeds (`out_channels / groups`: all of them, or one group's for a grouped
    or depthwise convolution, as torchvision's MobileNets have)."""
    if isinstance(conv.padding, str):
        raise NotImplementedError("string padding is not counted yet")
    if _is_spikes(x):
        fan_out = _fan_out(tuple(x.shape[-2:]), conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        # Active inputs weighted by their fan-out, as one matrix-vector product per channel map:
        # sums of small integers, exact in float32 (each stays far below 2**24), and several
        # times cheaper than reducing a mask along the channel dimension.
        rows, channels = x.shape[0], x.shape[1]
        mask = (x != 0).reshape(rows * channels, -1).to(torch.float32)
        per_map = mask @ fan_out.reshape(-1).to(x.device, torch.float32)  # [rows * C]
        synapses = per_map.reshape(rows, channels).sum(dim=1, dtype=torch.float64)
        return synapses * (conv.out_channels // conv.groups), True
    per_output = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    return torch.full((out.shape[0],), float(per_output * out[0].numel()), dtype=torch.float64), False


def _linear_ops(linear: nn.Linear, x: Tensor) -> tuple[Tensor, bool]:
    if _is_spikes(x):
        return (x != 0).to(x.dtype) * linear.out_features, True
    return torch.full_like(x, float(linear.out_features)), False


def _product_ops(a: Tensor, b: Tensor) -> tuple[Tensor, bool]:
    """Op counts of `a @ b`, one per matrix (the broadcast leading dimensions).

    Both operands spikes: ACs, for each matrix `sum_k nnz(a[:, k]) * nnz(b[k, :])`, the pairs of
    non-zero entries that meet. Either one analog: MACs, `M * K * N` for each matrix.
    """
    if _is_spikes(a) and _is_spikes(b):
        column_nnz = (a != 0).sum(dim=-2, dtype=torch.float64)  # [..., K]: non-zeros of each column of a
        row_nnz = (b != 0).sum(dim=-1, dtype=torch.float64)  # [..., K]: non-zeros of each row of b
        return (column_nnz * row_nnz).sum(dim=-1), True
    (m, k), n = a.shape[-2:], b.shape[-1]
    matrices = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return torch.full(matrices, float(m * k * n), dtype=torch.float64, device=a.device), False


@contextmanager
def count_ops(model: nn.Module, time_steps: int) -> Iterator[OpCounts]:
    """Counts spikes and synaptic operations of `model` (its convolutions, linear layers and
    `ActivationProduct`s) while the block runs.

    Before each forward pass the caller sets `counts.batch` to the batch's size (hooks see
    folded `[T*B, ...]` tensors) and adds it to `counts.samples`.

    Args:
        model: A network from `harness.models`.
        time_steps: T of the forward passes that will run.
    """
    counts = OpCounts(time_steps)
    handles = []

    def add(steps: Tensor, is_ac: bool) -> None:
        if is_ac:
            counts.acs += steps
        else:
            counts.macs += steps

    def on_layer(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            ops, is_ac = _conv_ops(module, x, out)
            rows = ops.shape[0]
        else:
            ops, is_ac = _linear_ops(module, x)
            rows = ops.shape[:-1].numel()
        add(_per_step(ops, rows, counts.batch, time_steps), is_ac)

    def on_product(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        a, b = inputs
        ops, is_ac = _product_ops(a, b)
        add(_per_step(ops, ops.shape[0] * ops.shape[1], counts.batch, time_steps), is_ac)

    def on_neuron(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            # One whole-tensor count per step: several times faster than a reduction along a dim.
            steps = out.reshape(time_steps, -1)
            spikes = torch.stack([torch.count_nonzero(step) for step in steps]).to(torch.float64).cpu()
            counts.spikes[name] = counts.spikes.get(name, torch.zeros(time_steps, dtype=torch.float64)) + spikes
            counts.neurons[name] = out[0, 0].numel()

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(on_layer))
        elif isinstance(module, ActivationProduct):
            handles.append(module.register_forward_hook(on_product))
        elif isinstance(module, BaseNode):
            handles.append(module.register_forward_hook(on_neuron(name)))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()
