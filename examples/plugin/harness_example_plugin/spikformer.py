"""`spikformer`: a small spiking vision transformer (after Zhou et al., Spikformer, ICLR 2023).

A model family is one file: its arguments (`SpikformerArgs`, validated by pydantic) and the
network it builds. Layout over `[T, B, C, H, W]`, like every harness network:

- stem (from `SpikingNetwork`): 3x3 conv + BN + neuron, `embed_dim` channels;
- `patch`: a `patch_size` x `patch_size` convolution with that stride (the patch embedding), BN, neuron;
- `block1..depth`: spiking self-attention (Q, K, V are spikes; attention is `Q K^T V * scale`
  without softmax, as in Spikformer) and an MLP, each with a residual connection;
- global average pooling over the tokens and a linear classifier.

Attention mixes tokens within a time step, never across steps, so the network stays causal in
time and the harness reads its whole time-step curve off one run. With ReLU as the activation
the same family is an ANN (a teacher). Operation counts include its 1x1 convolutions (the
linear layers); the two attention products are not counted.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from harness.models import ActivationFactory, ModelArgs, SpikingNetwork


def _linear(c_in: int, c_out: int) -> SeqToANNContainer:
    """A token-wise linear layer (1x1 convolution) and its BatchNorm, over [T, B, C, H, W]."""
    return SeqToANNContainer(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class SpikingSelfAttention(nn.Module):
    """Q, K, V spikes per head; `attn = Q K^T * scale`, `out = attn V`, then a neuron and a projection."""

    def __init__(self, dim: int, heads: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.heads, self.scale = heads, 0.125
        self.q, self.k, self.v = _linear(dim, dim), _linear(dim, dim), _linear(dim, dim)
        self.q_act, self.k_act, self.v_act = activation(), activation(), activation()
        self.attn_act = activation()
        self.proj = _linear(dim, dim)
        self.proj_act = activation()

    def _heads(self, x: Tensor) -> Tensor:  # [T, B, D, H, W] -> [T, B, heads, N, D / heads]
        t, b, d, h, w = x.shape
        return x.reshape(t, b, self.heads, d // self.heads, h * w).transpose(-2, -1)

    def forward(self, x: Tensor) -> Tensor:
        t, b, d, h, w = x.shape
        q = self._heads(self.q_act(self.q(x)))
        k = self._heads(self.k_act(self.k(x)))
        v = self._heads(self.v_act(self.v(x)))
        out = (q @ k.transpose(-2, -1)) @ v * self.scale  # [T, B, heads, N, D / heads]
        out = out.transpose(-2, -1).reshape(t, b, d, h, w)
        return self.proj_act(self.proj(self.attn_act(out)))


class Block(nn.Module):
    """`x + SSA(x)`, then `x + MLP(x)` (two token-wise layers, `mlp_ratio` times wider inside)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.attention = SpikingSelfAttention(dim, heads, activation)
        self.mlp = nn.Sequential(
            _linear(dim, dim * mlp_ratio), activation(), _linear(dim * mlp_ratio, dim), activation()
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(x)
        return x + self.mlp(x)


class PatchEmbedding(nn.Module):
    """Non-overlapping `patch` x `patch` patches -> `dim`-channel tokens (a strided convolution)."""

    def __init__(self, c_in: int, dim: int, patch: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.conv = SeqToANNContainer(nn.Conv2d(c_in, dim, patch, stride=patch, bias=False), nn.BatchNorm2d(dim))
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class Spikformer(SpikingNetwork):
    """The network `SpikformerArgs.build` returns."""

    def __init__(
        self,
        args: SpikformerArgs,
        in_channels: int,
        num_classes: int,
        image_shape: tuple[int, int],
        activation: ActivationFactory,
    ) -> None:
        super().__init__(in_channels, args.embed_dim, activation)
        patch = min(args.patch_size, *image_shape)
        stages: dict[str, nn.Module] = {"patch": PatchEmbedding(args.embed_dim, args.embed_dim, patch, activation)}
        for i in range(args.depth):
            stages[f"block{i + 1}"] = Block(args.embed_dim, args.heads, args.mlp_ratio, activation)
        self.body = nn.ModuleDict(stages)
        self.tap_channels = dict.fromkeys(stages, args.embed_dim)
        self.classifier = nn.Linear(args.embed_dim, num_classes)

    def checkpoint_units(self, stage: nn.Module) -> list[nn.Module]:
        return [stage]


class SpikformerArgs(ModelArgs):
    """`student.arch: spikformer`: `embed_dim` (divisible by `heads`), `heads`, `depth` blocks,
    `patch_size` in pixels, `mlp_ratio`."""

    embed_dim: Annotated[int, Field(ge=2)] = 32
    heads: Annotated[int, Field(ge=1)] = 4
    depth: Annotated[int, Field(ge=1, le=12)] = 2
    patch_size: Annotated[int, Field(ge=1)] = 4
    mlp_ratio: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _heads_divide_the_embedding(self) -> SpikformerArgs:
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        return self

    def build(self, *, in_channels, num_classes, image_shape, activation, pool="max") -> Spikformer:
        del pool  # no pooling layers: tokens come from strided patches
        return Spikformer(self, in_channels, num_classes, image_shape, activation)
