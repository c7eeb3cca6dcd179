"""Activation factories: ReLU for ANNs, spikingjelly multi-step LIF neurons for SNNs.

`make_lif` builds `FastLIFNode` (harness.models.lif_cpu), spikingjelly's `LIFNode` with a
leaner CPU kernel and the same numbers; `fused=False` gives the plain `LIFNode`.
"""

from __future__ import annotations

from collections.abc import Callable

from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from harness.models.lif_cpu import FastLIFNode

SURROGATES: dict[str, type[surrogate.SurrogateFunctionBase]] = {
    "atan": surrogate.ATan,
    "sigmoid": surrogate.Sigmoid,
    # Its derivative is the triangle max(0, alpha - alpha^2 |x|).
    "triangle": surrogate.PiecewiseQuadratic,
}


def relu() -> nn.Module:
    """The ANN activation."""
    return nn.ReLU(inplace=False)


def make_lif(
    tau: float = 2.0,
    v_threshold: float = 1.0,
    reset: str = "hard",
    surrogate_name: str = "atan",
    surrogate_alpha: float | None = None,
    detach_reset: bool = False,
    fused: bool = True,
) -> Callable[[], nn.Module]:
    """A factory of multi-step LIF layers (input and output `[T, B, ...]`).

    Args:
        tau: Membrane time constant; `decay_input=True` (docs/ARCHITECTURE.md, "The science").
        v_threshold: Firing threshold.
        reset: "hard" resets to 0 after a spike, "soft" subtracts the threshold.
        surrogate_name: Key of `SURROGATES`, the derivative used in the backward pass.
        surrogate_alpha: Sharpness of the surrogate; None keeps spikingjelly's default.
        detach_reset: Cut the reset path out of the gradient.
        fused: Use `FastLIFNode` (same results, faster on the CPU); False gives spikingjelly's
            `LIFNode` unchanged.
    """
    surrogate_cls = SURROGATES[surrogate_name]
    node_cls = FastLIFNode if fused else neuron.LIFNode

    def build() -> nn.Module:
        surrogate_fn = surrogate_cls() if surrogate_alpha is None else surrogate_cls(alpha=surrogate_alpha)
        return node_cls(
            tau=tau,
            decay_input=True,
            v_threshold=v_threshold,
            v_reset=0.0 if reset == "hard" else None,
            surrogate_function=surrogate_fn,
            detach_reset=detach_reset,
            step_mode="m",
        )

    return build
