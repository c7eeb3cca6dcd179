"""The LIF layer against the update equations of docs/ARCHITECTURE.md ("The science"), on random input."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional

from harness.models import make_lif


def reference_lif(x: torch.Tensor, tau: float, v_th: float, reset: str) -> torch.Tensor:
    """H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau; S = H >= V_th; hard or soft reset."""
    v_reset = 0.0
    v = torch.full_like(x[0], v_reset)
    spikes = []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - v_reset)) / tau
        s = (h >= v_th).to(x.dtype)
        v = h * (1 - s) + v_reset * s if reset == "hard" else h - v_th * s
        spikes.append(s)
    return torch.stack(spikes)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize(("tau", "v_th"), [(2.0, 1.0), (1.5, 0.5), (4.0, 1.2)])
def test_lif_matches_the_update_equations(reset: str, tau: float, v_th: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 8, 32) * 2.0 + v_th  # a positive drive makes every neuron fire now and then
    lif = make_lif(tau=tau, v_threshold=v_th, reset=reset)()
    out = lif(x)
    functional.reset_net(lif)
    expected = reference_lif(x, tau, v_th, reset)
    assert out.shape == x.shape
    assert 0.05 < expected.mean() < 0.95  # the input drives real spiking
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "triangle"])
def test_surrogate_gives_gradients(surrogate: str) -> None:
    x = torch.randn(4, 3, 10, requires_grad=True)
    lif = make_lif(surrogate_name=surrogate, surrogate_alpha=2.0)()
    lif(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_state_is_reset_between_batches() -> None:
    lif = make_lif()()
    x = torch.rand(4, 2, 5) * 3
    first = lif(x)
    functional.reset_net(lif)
    torch.testing.assert_close(lif(x), first)
