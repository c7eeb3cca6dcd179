"""The Spikformer family (`arch: spikformer`): a spiking vision transformer after Zhou et al.,
"Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023.

Layout over `[T, B, C, H, W]`, like every harness network:

- stem (`SpikingNetwork`'s): 3x3 convolution + BN + neuron, `embed_dim` channels;
- `patch`, the spiking patch splitting: a `patch_size` x `patch_size` convolution with that
  stride, BN and a neuron, giving `[T, B, embed_dim, H / p, W / p]` token maps (N = h w tokens;
  a remainder of rows or columns is left out, as a strided convolution leaves it);
- `block1..depth`: `x + SSA(x)`, then `x + MLP(x)`. Spiking self-attention: Q, K and V are
  spikes (a token-wise linear layer, BN and a neuron each, split into `heads`), no softmax:
  `attn = Q K^T`, `out = neuron(attn V * scale)`, then a token-wise projection + BN + neuron.
  The MLP is two token-wise layers, `mlp_ratio` times wider inside, each with BN and a neuron;
- the mean over the tokens and a linear classifier.

Tokens attend to the tokens of their own time step only (the products are batched over T),
so the network is causal in time and the harness reads its whole time-step curve off one run.
With ReLU as the activation the same family is an ANN (a teacher). The feature taps are the
stages' outputs, `[T, B, embed_dim, h, w]` token maps, so the KD feature adapter
(`harness.methods.kd.FeatureAdapter`) pairs them with any family's maps.

Operation counts (`harness.efficiency`): the token-wise layers are 1x1 convolutions; the two
attention products run through `ActivationProduct` modules, so they are counted too: Q K^T,
both sides spikes, in ACs; attn V, integer attention counts times spikes, in MACs. A residual
sum of spikes takes the values 0, 1, 2, ..., which are not spikes, so the layers that read one
(the MLP's first layer, the next block's Q, K and V) count MACs: Spikformer's design, counted
as it is. ANN-to-SNN conversion refuses the family: the product of two spike trains is not
linear in their firing rates (`baselines.conversion_core.check_convertible`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from spikingjelly.activation_based.layer import SeqToANNContainer
from torch import Tensor, nn

from harness.efficiency import ActivationProduct
from harness.models.args import ImageShape, ModelArgs
from harness.models.base import ActivationFactory, SpikingNetwork

ATTENTION_SCALE = 0.25
"""The fixed scale of `Q K^T V` (spike counts, not a softmax). Spikformer scales by 0.125 into a
neuron of threshold 0.5; every neuron here has the threshold `snn.v_threshold` (1 by default),
so 0.25 is the same drive relative to the threshold."""


def token_linear(c_in: int, c_out: int) -> SeqToANNContainer:
    """A token-wise linear layer (a 1x1 convolution) and its BatchNorm, over `[T, B, C, h, w]`."""
    return SeqToANNContainer(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class SpikingSelfAttention(nn.Module):
    """Q, K, V spikes per head; `attn = Q K^T`, `out = neuron(attn V * scale)`, then a projection."""

    def __init__(self, dim: int, heads: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = token_linear(dim, dim), token_linear(dim, dim), token_linear(dim, dim)
        self.q_act, self.k_act, self.v_act = activation(), activation(), activation()
        self.qk = ActivationProduct()  # Q K^T: [T, B, heads, N, N]
        self.av = ActivationProduct()  # (Q K^T) V: [T, B, heads, N, D / heads]
        self.attn_act = activation()
        self.proj = token_linear(dim, dim)
        self.proj_act = activation()

    def _split_heads(self, x: Tensor) -> Tensor:
        """`[T, B, D, h, w]` -> `[T, B, heads, N, D / heads]`."""
        t, b, d, h, w = x.shape
        return x.reshape(t, b, self.heads, d // self.heads, h * w).transpose(-2, -1)

    def forward(self, x: Tensor) -> Tensor:
        t, b, d, h, w = x.shape
        q = self._split_heads(self.q_act(self.q(x)))
        k = self._split_heads(self.k_act(self.k(x)))
        v = self._split_heads(self.v_act(self.v(x)))
        out = self.av(self.qk(q, k.transpose(-2, -1)), v) * ATTENTION_SCALE
        out = out.transpose(-2, -1).reshape(t, b, d, h, w)
        return self.proj_act(self.proj(self.attn_act(out)))


class Block(nn.Module):
    """`x + SSA(x)`, then `x + MLP(x)`."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, activation: ActivationFactory) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.attention = SpikingSelfAttention(dim, heads, activation)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=token_linear(dim, hidden), act1=activation(), fc2=token_linear(hidden, dim), act2=activation()
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(x)
        return x + self.mlp(x)


class PatchSplitting(nn.Module):
    """Non-overlapping `patch` x `patch` patches -> `dim`-channel tokens: a strided convolution, BN, a neuron."""

    def __init__(self, dim: int, patch: int, activation: ActivationFactory) -> None:
        super().__init__()
        self.conv = SeqToANNContainer(nn.Conv2d(dim, dim, patch, stride=patch, bias=False), nn.BatchNorm2d(dim))
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class Spikformer(SpikingNetwork):
    """The network `SpikformerArgs.build` returns; `body` is `patch`, `block1`, ..., `block<depth>`."""

    def __init__(self, args: SpikformerArgs, in_channels: int, num_classes: int, activation: ActivationFactory) -> None:
        super().__init__(in_channels, args.embed_dim, activation)
        stages: dict[str, nn.Module] = {"patch": PatchSplitting(args.embed_dim, args.patch_size, activation)}
        for i in range(args.depth):
            stages[f"block{i + 1}"] = Block(args.embed_dim, args.heads, args.mlp_ratio, activation)
        self.body = nn.ModuleDict(stages)
        self.tap_channels = dict.fromkeys(stages, args.embed_dim)
        self.classifier = nn.Linear(args.embed_dim, num_classes)


class SpikformerArgs(ModelArgs):
    """`student.arch: spikformer`: `embed_dim` (divisible by `heads`), `heads`, `depth` blocks,
    `patch_size` in pixels (at most the images' shorter side), `mlp_ratio`."""

    embed_dim: Annotated[int, Field(ge=1)] = 32
    heads: Annotated[int, Field(ge=1)] = 4
    depth: Annotated[int, Field(ge=1, le=12)] = 2
    patch_size: Annotated[int, Field(ge=1)] = 4
    mlp_ratio: Annotated[int, Field(ge=1)] = 2

    @field_validator("heads")
    @classmethod
    def _heads_divide_the_embedding(cls, heads: int, info: ValidationInfo) -> int:
        embed_dim = info.data.get("embed_dim")
        if embed_dim is not None and embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by heads {heads}")
        return heads

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_shape: ImageShape,
        activation: ActivationFactory,
        pool: str = "max",
    ) -> Spikformer:
        del pool  # no pooling layers: the tokens come from strided patches
        height, width = image_shape
        if self.patch_size > min(height, width):
            raise ValueError(f"patch_size {self.patch_size} is larger than the {height} x {width} images")
        return Spikformer(self, in_channels, num_classes, activation)
