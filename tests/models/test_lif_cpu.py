"""FastLIFNode (the harness's lean CPU kernel) against spikingjelly's LIFNode on fixed seeds:
same spikes, same final membrane potential, same gradients, in every configuration it serves."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from harness.models import create_model, make_lif
from harness.models.lif_cpu import BLOCK, FastLIFNode

SURROGATES = [surrogate.ATan(), surrogate.Sigmoid(), surrogate.PiecewiseQuadratic(), surrogate.ATan(alpha=3.0)]


def _pair(**kwargs) -> tuple[neuron.LIFNode, FastLIFNode]:
    return neuron.LIFNode(step_mode="m", **kwargs), FastLIFNode(step_mode="m", **kwargs)


def _run(node: neuron.LIFNode, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Spikes, final v and d(sum(w * spikes) + sum(v_final)) / dx of one multi-step call."""
    x = x.detach().clone().requires_grad_()
    spikes = node(x)
    loss = (spikes * weights).sum() + node.v.sum()
    (grad,) = torch.autograd.grad(loss, x)
    final_v = node.v.detach()
    functional.reset_net(node)
    return spikes.detach(), final_v, grad


@pytest.mark.parametrize("surrogate_fn", SURROGATES, ids=lambda s: f"{type(s).__name__}{s.alpha}")
@pytest.mark.parametrize("v_reset", [0.0, None, -0.3], ids=["hard", "soft", "hard-nonzero"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("tau", [2.0, 3.0])
def test_same_spikes_voltage_and_gradients(surrogate_fn, v_reset, detach_reset: bool, tau: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2, BLOCK // 2 + 11) * 1.5 + 0.8  # two cache blocks per step, a ragged last one
    weights = torch.randn_like(x)
    plain, fast = _pair(tau=tau, v_reset=v_reset, surrogate_function=surrogate_fn, detach_reset=detach_reset)
    s0, v0, g0 = _run(plain, x, weights)
    s1, v1, g1 = _run(fast, x, weights)
    assert 0.05 < s0.mean() < 0.95
    assert torch.equal(s0, s1)  # bit-identical forward
    assert torch.equal(v0, v1)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_expanded_input_and_carried_state() -> None:
    """An expanded view (the stem's direct encoding) and a second call that starts from the
    state the first left (no reset in between): still spikingjelly's numbers."""
    torch.manual_seed(1)
    frame = torch.randn(4, 8, 6, 6) + 0.7
    x = frame.unsqueeze(0).expand(3, *frame.shape)
    plain, fast = _pair(tau=2.0, surrogate_function=surrogate.ATan())
    for _ in range(2):  # the second call continues from the first call's v
        torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=0)
    assert torch.equal(fast.v, plain.v)


def test_gradient_through_initial_state() -> None:
    """The membrane potential carried into a call gets its gradient (truncated BPTT setups)."""
    torch.manual_seed(2)
    x = torch.randn(3, 4, 10) + 0.8
    start = torch.randn(4, 10) * 0.5
    grads = []
    for node in _pair(tau=2.0, surrogate_function=surrogate.Sigmoid()):
        v0 = start.clone().requires_grad_()
        node.v = v0
        spikes = node(x)
        (grad,) = torch.autograd.grad(spikes.sum() + node.v.sum(), v0)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_evaluation_path_matches() -> None:
    """Under inference_mode the kernel keeps no H buffer; the spikes are the same."""
    torch.manual_seed(4)
    x = torch.randn(6, 2, BLOCK + 5) + 0.9
    plain, fast = _pair(tau=2.0, surrogate_function=surrogate.ATan())
    with torch.inference_mode():
        assert torch.equal(fast(x), plain(x))
        assert torch.equal(fast.v, plain.v)


def test_falls_back_outside_its_kernel() -> None:
    """float64 input goes through spikingjelly's own path and still works."""
    fast = FastLIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    assert not fast._fast_path(x)
    assert fast(x).dtype == torch.float64


@pytest.mark.parametrize(("arch", "depth"), [("resnet", 8), ("vgg", 5)])
def test_whole_network_before_and_after(arch: str, depth: int) -> None:
    """A spiking network with FastLIFNode (the harness default) against the same network with
    spikingjelly's LIFNode: same logits, loss and parameter gradients."""
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    outputs = []
    for fused in (False, True):
        torch.manual_seed(0)
        net = create_model(arch, depth=depth, width=8, in_channels=1, num_classes=10, image_shape=8,
                           activation=make_lif(fused=fused))  # fmt: skip
        logits = net(x, 4)
        loss = torch.nn.functional.cross_entropy(logits.mean(0), y)
        loss.backward()
        functional.reset_net(net)
        outputs.append((logits.detach(), loss.detach(), [p.grad for p in net.parameters()]))
    (l0, loss0, g0), (l1, loss1, g1) = outputs
    assert torch.equal(l0, l1)
    assert torch.equal(loss0, loss1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_reduced_precision_input_is_integrated_in_fp32(dtype: torch.dtype) -> None:
    """What autocast hands a neuron (`train.precision: bf16`): the membrane stays fp32 and the
    spikes are those of the same values integrated in fp32."""
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 50) * 2).to(dtype)
    reduced, full = make_lif()(), make_lif()()
    spikes = reduced(x)
    assert spikes.dtype == dtype and reduced.v.dtype == torch.float32
    torch.testing.assert_close(spikes.float(), full(x.float()), rtol=0, atol=0)
    torch.testing.assert_close(reduced.v, full.v, rtol=0, atol=0)
