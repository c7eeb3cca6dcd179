"""A multi-step LIF layer with a lean CPU kernel in plain PyTorch (same semantics as spikingjelly).

spikingjelly 2.0 runs its multi-step LIF on the CPU as a Python loop over T with about ten
elementwise passes per step forward (charge, fire, reset, two stacks) and about eighteen
backward. `FastLIFNode` computes exactly the same numbers with fewer passes:

* forward, per step: `H[t] = v + (x[t] - v) / tau` written in place into one preallocated
  `[T, ...]` buffer (the very operations spikingjelly uses, so `H` is bit-identical), the
  spikes written straight into the output, the reset as one fused op into the state;
* backward: the surrogate derivative and the reset's derivative are computed for all steps at
  once, in place; only `gh[t] = gs[t] sg[t] + decay gh[t+1] dv/dh[t]` stays sequential;
* both loop over T block by block (`BLOCK` elements) so that each block stays in cache.

Only `H` is saved for the backward pass (as spikingjelly does). CUDA, reduced precision,
`store_v_seq` and surrogates other than ATan / Sigmoid / PiecewiseQuadratic fall back to
spikingjelly's own implementation (native CUDA and Triton kernels there are better). A bf16 or
fp16 input (CUDA autocast, `train.precision: bf16`) is integrated in fp32: membranes stay fp32.
`tests/models/test_lif_cpu.py` checks spikes, final voltages and gradients against
spikingjelly's `LIFNode` on fixed seeds.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor


def surrogate_derivative(u: Tensor, kind: str, alpha: float) -> Tensor:
    """The surrogate derivative of the Heaviside step at `u = H - V_th`, computed in place on `u`.

    Args:
        u: Membrane potential minus threshold; overwritten and returned.
        kind: "atan", "sigmoid" or "triangle" (spikingjelly's ATan, Sigmoid, PiecewiseQuadratic).
        alpha: The surrogate's sharpness.
    """
    if kind == "atan":  # alpha / 2 / (1 + (pi/2 alpha u)^2)
        scale = math.pi / 2 * alpha
        return torch.addcmul(_ONE, u, u, value=scale * scale, out=u).reciprocal_().mul_(alpha / 2)
    if kind == "sigmoid":  # alpha s (1 - s), s = sigmoid(alpha u)
        s = u.mul_(alpha).sigmoid_()
        return torch.addcmul(s, s, s, value=-1.0, out=s).mul_(alpha)
    if kind == "triangle":  # max(0, alpha - alpha^2 |u|)
        return u.abs_().mul_(-alpha * alpha).add_(alpha).clamp_min_(0)
    raise ValueError(f"unknown surrogate {kind!r}")


_ONE = torch.ones(())

_KINDS: dict[type, str] = {
    surrogate.ATan: "atan",
    surrogate.Sigmoid: "sigmoid",
    surrogate.PiecewiseQuadratic: "triangle",
}


BLOCK = 1 << 18
"""Elements per block: the loops over T run block by block, so that a block's input, potential,
spikes and temporaries stay in cache between steps instead of streaming the whole layer
through memory five times per step. Smaller blocks pay Python's per-op overhead, whole
tensors lose the cache (BENCHMARKS.md, ablations)."""

ONE_THREAD = True
"""Run the kernel's elementwise ops on one thread. Each op is short, and with several threads
each one ends at an OpenMP barrier: on a machine whose cores are shared (a sweep's parallel
trials, other users) a descheduled thread stalls every op. One thread is never slower than
spikingjelly's multi-threaded kernel and several times faster under load (BENCHMARKS.md)."""


@contextlib.contextmanager
def _kernel_threads() -> Iterator[None]:
    """Torch's intra-op threads set to one for the duration of the kernel (if `ONE_THREAD`)."""
    threads = torch.get_num_threads()
    if not ONE_THREAD or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def lif_forward(
    x_seq: Tensor, v: Tensor, tau: float, v_threshold: float, v_reset: float | None, keep_h: bool = True
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Charges, fires and resets over T.

    `H[t] = v + (x[t] - (v - v_reset)) / tau` (decay_input=True), `S[t] = H[t] >= V_th`, then
    a hard reset to `v_reset` or a soft reset by `V_th` where `S[t]`: spikingjelly's
    operations in spikingjelly's order, so the results are bit-identical.

    Args:
        x_seq: Input currents `[T, ...]` (any strides, e.g. an expanded view).
        v: Membrane potential before the first step, shaped like `x_seq[0]`.
        tau, v_threshold, v_reset: The LIF parameters (`v_reset=None`: soft reset).
        keep_h: Keep every step's `H` (the backward pass needs it); False reuses one buffer.

    Returns:
        Spikes `[T, ...]` (dtype of `x_seq`), the charged potentials `H` `[T, ...]` (None
        unless `keep_h`) and the final membrane potential.
    """
    steps, n = x_seq.shape[0], x_seq[0].numel()
    spikes = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    h_seq = torch.empty_like(spikes) if keep_h else None
    x2, s2 = x_seq.reshape(steps, n), spikes.view(steps, n)
    h2 = h_seq.view(steps, n) if h_seq is not None else None
    scratch = torch.empty(min(n, BLOCK), dtype=x_seq.dtype, device=x_seq.device)
    v_out = v.reshape(n).to(x_seq.dtype, copy=True)
    rest = 0.0 if v_reset is None else v_reset
    with _kernel_threads():
        for a in range(0, n, BLOCK):
            b = min(n, a + BLOCK)
            vb = v_out[a:b]  # the block's state, updated in place step by step
            for t in range(steps):
                h, s = (h2[t, a:b] if h2 is not None else scratch[: b - a]), s2[t, a:b]
                torch.sub(x2[t, a:b], vb if rest == 0.0 else vb - rest, out=h)
                h.div_(tau).add_(vb)
                torch.ge(h, v_threshold, out=s)
                _reset(h, s, v_threshold, v_reset, out=vb)
    return spikes, h_seq, v_out.view(v.shape)


def _reset(h: Tensor, s: Tensor, v_threshold: float, v_reset: float | None, out: Tensor) -> Tensor:
    """Writes the membrane potential after the spikes `s` of the charged potential `h` into `out`."""
    if v_reset is None:
        return torch.add(h, s, alpha=-v_threshold, out=out)  # H - V_th S
    if v_reset == 0.0:
        return torch.addcmul(h, h, s, value=-1.0, out=out)  # H - H S: exactly 0 where S, H elsewhere
    return out.copy_(torch.where(s.bool(), v_reset, h))


def lif_backward(
    h_seq: Tensor, grad_spikes: Tensor, grad_v: Tensor | None, options: tuple, need_v0: bool
) -> tuple[Tensor, Tensor | None]:
    """Gradients of the input currents (and of the initial potential if `need_v0`).

    `gh[t] = gs[t] sg[t] + (1 - 1/tau) gh[t+1] dv/dh[t]` backwards over T, `gx = gh / tau`,
    computed block by block (columns of `[T, n]`) like the forward pass.
    """
    tau, v_threshold, v_reset, kind, alpha, detach_reset = options
    steps, n = h_seq.shape[0], h_seq[0].numel()
    cols = max(1024, BLOCK // steps)
    h2, gs2 = h_seq.view(steps, n), grad_spikes.reshape(steps, n)
    gv2 = None if grad_v is None else grad_v.reshape(n)
    gx = torch.empty_like(h2)
    gv0 = torch.empty_like(h2[0]) if need_v0 else None
    decay = 1 - 1 / tau  # d H[t] / d v[t-1]
    with _kernel_threads():
        for a in range(0, n, cols):
            b = min(n, a + cols)
            hb = h2[:, a:b]
            sg = surrogate_derivative(hb - v_threshold, kind, alpha)
            dv_dh = _reset_derivative(hb, sg, v_threshold, v_reset, detach_reset)
            gh = sg.mul_(gs2[:, a:b])
            if gv2 is not None:
                gh[steps - 1].addcmul_(gv2[a:b], dv_dh[steps - 1])
            for t in range(steps - 2, -1, -1):
                gh[t].addcmul_(gh[t + 1], dv_dh[t], value=decay)
            torch.div(gh, tau, out=gx[:, a:b])
            if gv0 is not None:
                torch.mul(gh[0], decay, out=gv0[a:b])
    return gx.view(h_seq.shape), None if gv0 is None else gv0.view(h_seq.shape[1:])


class _LIFMultiStep(torch.autograd.Function):
    """Autograd of `lif_forward` with a surrogate gradient for the spikes."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_seq: Tensor,
        v: Tensor,
        tau: float,
        v_threshold: float,
        v_reset: float | None,
        kind: str,
        alpha: float,
        detach_reset: bool,
    ) -> tuple[Tensor, Tensor]:
        spikes, h_seq, v_last = lif_forward(x_seq, v, tau, v_threshold, v_reset)
        ctx.save_for_backward(h_seq)
        ctx.options = (tau, v_threshold, v_reset, kind, alpha, detach_reset)
        return spikes, v_last

    @staticmethod
    def backward(ctx: Any, grad_spikes: Tensor | None, grad_v: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (h_seq,) = ctx.saved_tensors
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(h_seq)
        gx, gv0 = lif_backward(h_seq, grad_spikes, grad_v, ctx.options, ctx.needs_input_grad[1])
        return gx, gv0, None, None, None, None, None, None


def _reset_derivative(h_seq: Tensor, sg: Tensor, v_threshold: float, v_reset: float | None, detach: bool) -> Tensor:
    """d v[t] / d H[t] for every step (sg is the surrogate derivative at H - V_th)."""
    if v_reset is None:  # v = H - V_th S
        return torch.ones_like(sg) if detach else torch.mul(sg, -v_threshold).add_(1)
    keep = torch.where(h_seq < v_threshold, 1.0, 0.0)  # 1 - S
    if detach:  # v = (1 - S) H + S v_reset, S detached
        return keep
    below = h_seq if v_reset == 0.0 else h_seq - v_reset
    return keep.addcmul_(below, sg, value=-1.0)  # (1 - S) + (v_reset - H) sg


class FastLIFNode(neuron.LIFNode):
    """spikingjelly's multi-step `LIFNode` (decay_input=True) with the lean CPU kernel above.

    Drop-in: same constructor, state (`v`), `reset()`, `functional.reset_net` and op
    counters; it falls back to the parent wherever the kernel does not apply.
    """

    def _fast_path(self, x_seq: Tensor) -> bool:
        return (
            x_seq.device.type == "cpu"
            and x_seq.dtype == torch.float32
            and self.decay_input
            and not self.store_v_seq
            and self._neuron_precision is None
            and type(self.surrogate_function) in _KINDS
            and getattr(self.surrogate_function, "spiking", True)
            and isinstance(self.surrogate_function.alpha, int | float)
        )

    def multi_step_forward(self, x_seq: Tensor, *args: Tensor, **kwargs: object) -> Tensor:
        if x_seq.dtype in (torch.bfloat16, torch.float16):
            # Autocast hands the neuron a reduced-precision input: integrate it in fp32 (a bf16
            # membrane drifts over T) and return the spikes, exact in any dtype, in the input's.
            return self.multi_step_forward(x_seq.float(), *args, **kwargs).to(x_seq.dtype)
        if args or kwargs or not self._fast_path(x_seq):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        (v,) = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        if torch.is_grad_enabled() and (x_seq.requires_grad or v.requires_grad):
            kind, alpha = _KINDS[type(self.surrogate_function)], float(self.surrogate_function.alpha)
            options = (float(self.tau), float(self.v_threshold), self.v_reset, kind, alpha, self.detach_reset)
            spikes, v_last = _LIFMultiStep.apply(x_seq, v, *options)
        else:  # evaluation: no graph, one scratch buffer instead of H for every step
            spikes, _, v_last = lif_forward(x_seq, v, self.tau, self.v_threshold, self.v_reset, keep_h=False)
        self._memories["v"] = v_last
        self.v_seq = None
        return spikes
