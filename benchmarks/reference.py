"""The reference: the harness's student network and loss as a researcher writes them by hand.

spikingjelly's multi-step layers (`layer.Conv2d`, `layer.BatchNorm2d`, `layer.Linear` with
`step_mode="m"`) and its own `neuron.LIFNode` (tau 2, ATan surrogate, hard reset), the
static image repeated T times at the input, the mean over T of the classifier's output, plain
cross-entropy, Adam, a `DataLoader` over a `TensorDataset` of pre-normalised images, and
`functional.reset_net` after every batch; loss and accuracy read with `.item()` per batch.

The network has the harness ResNet's shape exactly: a 3x3 stride-1 stem, 6n+2 (CIFAR
layout: three stages of n basic blocks, widths w, 2w, 4w) or 18/34 (four stages), a
projection shortcut (1x1 conv + BN) where the shape changes, no downsampling at a 1x1 map,
global average pooling and one linear layer. Modules are registered in the harness's order,
so `load_harness_weights` can copy a harness student's state into it (tests/benchmarks
compares the two networks' outputs with the same weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def lif() -> neuron.LIFNode:
    """The LIF layer of the student (docs/ARCHITECTURE.md, "The science"): tau 2, V_th 1, hard
    reset to 0, ATan surrogate."""
    return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                          surrogate_function=surrogate.ATan(), step_mode="m")  # fmt: skip


def conv(c_in: int, c_out: int, kernel: int, stride: int) -> layer.Conv2d:
    """A multi-step convolution without bias (BatchNorm follows)."""
    return layer.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False, step_mode="m")


class BasicBlock(nn.Module):
    """sn2(bn2(conv2(sn1(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, stride)
        self.bn1 = layer.BatchNorm2d(c_out, step_mode="m")
        self.sn1 = lif()
        self.conv2 = conv(c_out, c_out, 3, 1)
        self.bn2 = layer.BatchNorm2d(c_out, step_mode="m")
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride), layer.BatchNorm2d(c_out, step_mode="m"))
        self.sn2 = lif()

    def forward(self, x: Tensor) -> Tensor:
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.sn2(out + self.shortcut(x))


class SpikingResNet(nn.Module):
    """A spiking ResNet for static images; `forward` returns the logits averaged over T."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int, image_size: int, T: int) -> None:
        super().__init__()
        self.T = T
        self.conv = conv(in_channels, width, 3, 1)
        self.bn = layer.BatchNorm2d(width, step_mode="m")
        self.sn = lif()
        blocks: list[nn.Module] = []
        c_in, size = width, image_size
        layout = _LAYOUTS.get(depth) or ((depth - 2) // 6,) * 3
        for k, count in enumerate(layout):
            c_out = width * 2**k
            stride = 2 if k > 0 and size > 1 else 1
            size = (size + stride - 1) // stride
            for i in range(count):
                blocks.append(BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1))
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.fc = layer.Linear(c_in, num_classes, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        x_seq = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)  # [T, B, C, H, W]: direct encoding
        out = self.layers(self.sn(self.bn(self.conv(x_seq))))
        out = out.mean(dim=(3, 4))  # global average pooling -> [T, B, C]
        return self.fc(out).mean(0)


def load_harness_weights(reference: SpikingResNet, harness_net: nn.Module) -> None:
    """Copies a harness ResNet's parameters and buffers into `reference` (same order, same shapes)."""
    ours, theirs = reference.state_dict(), harness_net.state_dict()
    if [v.shape for v in ours.values()] != [v.shape for v in theirs.values()]:
        raise ValueError("the reference and the harness network differ in shape")
    reference.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))


def make_loader(x: Tensor, y: Tensor, mean: float, std: float, batch_size: int, seed: int = 0) -> DataLoader:
    """A shuffling DataLoader over a TensorDataset of images normalised once up front."""
    dataset = TensorDataset((x - mean) / std, y)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device) -> float:
    """One epoch of the plain loop; returns the training accuracy."""
    net.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        out = net(images)
        loss = F.cross_entropy(out, labels)
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
        total_loss += loss.item() * labels.numel()
        correct += (out.argmax(1) == labels).sum().item()
        seen += labels.numel()
    return correct / max(1, seen)
