"""Activation checkpointing for stateful spiking blocks (`train.checkpoint_activations`).

BPTT keeps every layer's activations for all T steps until the backward pass, so memory
grows linearly with T and depth. `run_recomputed(block, x)` keeps only the block's input
and recomputes the block in the backward pass (`torch.utils.checkpoint`, non-reentrant).
Two things make a spiking block safe to recompute, and both are handled here:

* neuron state: the recomputation starts from the membrane potentials the block had when it
  first ran (spikingjelly's `extract_memories` / `load_memories`), not from where the
  forward pass left them;
* BatchNorm running statistics: the recomputation must not update them a second time, so
  the block's buffers are restored after it.

Results and gradients are identical to running the block plainly (a test checks this).
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def run_recomputed(block: nn.Module, x: Tensor) -> Tensor:
    """`block(x)`, storing only `x` for the backward pass and recomputing the rest there."""
    states = base.extract_memories(block)
    buffers = list(block.buffers())
    calls = 0

    def run(inp: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        base.load_memories(block, list(states))
        if calls == 1:
            return block(inp)
        saved = [buffer.clone() for buffer in buffers]
        try:
            return block(inp)
        finally:  # also when the checkpoint stops the recomputation early
            with torch.no_grad():
                for buffer, value in zip(buffers, saved, strict=True):
                    buffer.copy_(value)

    return checkpoint(run, x, use_reentrant=False)
