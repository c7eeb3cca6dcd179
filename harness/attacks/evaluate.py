"""Accuracy under the attacks of `eval.attacks`: `attack/<name>/<eps>`, part of the final evaluation.

For every attack and eps, the attack makes adversarial versions of the test images (in [0, 1]
and within eps of the clean ones in L-infinity: checked here, `check_adversarial`), and the
method's network classifies them at its evaluation T (`Method.eval_time_steps`, the reference T
of a method that does not train at a T), batch by batch. The metric is the accuracy over the
images the attack attacked (all but for `square`'s subset); the per-image classes go into the
run's predictions (`-1`, `harness.predictions.NOT_EVALUATED`, for the images not attacked).

The gradient estimator (docs/ARCHITECTURE.md, "The science", attacks): a white-box attack
differentiates what `Method.attack_model` returns, by default the spiking network itself, run
over all T steps and differentiated through time (BPTT) through the surrogate derivative of
`snn.surrogate`, in eval mode (BatchNorm on its running statistics, no dropout), its neuron
state reset before (and after) every forward pass; the conversion baseline differentiates its
source ANN instead (`Capabilities.attack_gradient`, written into every run's
`harness.capabilities` tag). Score-based attacks (`square`) query the evaluated network
itself, the transfer attack the ANN teacher.

The attacks run inside a forked random state: the trial's generator is where it was after
them, so what is measured later (`Method.extra_metrics`) does not depend on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from harness.attacks import (
    ATTACKS,
    AttackModel,
    AttackTarget,
    InputGradient,
    Logits,
    TeacherSource,
    check_adversarial,
)
from harness.config.sections import TrialConfig
from harness.context import TrialContext
from harness.contract import attack_metric
from harness.data import DataSplits
from harness.errors import PluginError
from harness.methods.base import Method, describe_method
from harness.predictions import NOT_EVALUATED
from harness.teacher import load_or_train_teacher
from harness.training import autocast, full_precision, predict_steps, predicted_classes


def attack_batch(config: TrialConfig, time_steps: int) -> int:
    """Images per attack batch: a quarter of `train.eval_batch_size` up to T = 4, scaled down
    beyond it, as evaluation batches are (`harness.trial.eval_batch`): a gradient attack keeps
    every step's activations for its backward pass, as training does."""
    return max(1, config.train.eval_batch_size * 4 // max(4, time_steps) // 4)


def input_gradient(network: nn.Module, time_steps: int, *, fp32: bool = False, owner: str = "") -> InputGradient:
    """The input gradient of `network`'s summed cross-entropy at `time_steps` (eval mode, state
    reset before and after the forward pass, under the trial's precision unless `fp32`)."""

    def gradient(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        network.eval()
        functional.reset_net(network)
        x = images.detach().clone().requires_grad_(True)
        try:
            with full_precision() if fp32 else nullcontext(), torch.enable_grad():
                with autocast():
                    logits = network(x, time_steps).float().mean(0)
                loss = F.cross_entropy(logits, labels, reduction="sum")
                if not loss.requires_grad:
                    raise PluginError(f"{owner or 'the attack model'}: its logits do not depend on the images")
                (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        finally:
            functional.reset_net(network)
        if grad is None:
            raise PluginError(f"{owner or 'the attack model'}: its logits do not depend on the images")
        return grad, logits.detach()

    return gradient


def network_logits(network: nn.Module, time_steps: int, *, fp32: bool = False) -> Logits:
    """`network`'s logits (the mean of its per-step outputs) at `time_steps`, without gradient."""

    def logits(images: Tensor) -> Tensor:
        if len(images) == 0:
            return images.new_zeros((0, 0))
        functional.reset_net(network)
        with full_precision() if fp32 else nullcontext():
            return predict_steps(network, images, time_steps=time_steps, batch_size=len(images)).mean(0)

    return logits


def teacher_loader(ctx: TrialContext) -> Callable[[], TeacherSource]:
    """The trial's ANN teacher for attacks, loaded (or trained) through the teacher cache on the
    first call and kept; fp32 whatever the trial's precision (its images are cached for all)."""
    loaded: list[TeacherSource] = []

    def teacher() -> TeacherSource:
        if not loaded:
            record = load_or_train_teacher(ctx)
            model = record.model.eval().requires_grad_(False)
            loaded.append(
                TeacherSource(
                    gradient=input_gradient(model, 1, fp32=True, owner="the ANN teacher"),
                    logits=network_logits(model, 1, fp32=True),
                    key=record.key,
                    folder=record.path.parent,
                )
            )
        return loaded[0]

    return teacher


def attack_target(method: Method, config: TrialConfig, data: DataSplits) -> tuple[AttackTarget, AttackModel]:
    """What the attacks of a trial run against, and the method's attack model."""
    model = method.attack_model()
    t = method.eval_time_steps
    owner = f"{describe_method(config.method)}'s attack model ({model.description})"
    target = AttackTarget(
        gradient=input_gradient(model.network, model.time_steps, owner=owner),
        logits=network_logits(model.network, model.time_steps),
        scores=network_logits(method.network(), t),
        batch_size=attack_batch(config, t),
        teacher=teacher_loader(method.ctx),
        test_digest=data.digests.get("test", ""),
        log=method.ctx.log,
        exact=model.network is method.network() and model.time_steps == t,
    )
    return target, model


def attack_evaluation(
    method: Method, data: DataSplits, config: TrialConfig, predictions: dict[str, Tensor] | None = None
) -> dict[str, float]:
    """`attack/<name>/<eps>` for every attack and eps of `eval.attacks` (see the module
    docstring); each one's per-image classes go into `predictions` (if given) under its name."""
    attacks = config.eval.attacks
    if not attacks:
        return {}
    net = method.network()
    t = method.eval_time_steps
    target, model = attack_target(method, config, data)
    log = method.ctx.log
    log(f"attacks at T = {t}; white-box gradients of {model.description}")
    x, y = data.test_x, data.test_y
    metrics: dict[str, float] = {}
    device = method.ctx.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        for name, options in attacks.items():
            attack = ATTACKS.get(name)(name, options)
            for eps in options.eps:
                started = time.perf_counter()
                predicted = torch.full((len(x),), NOT_EVALUATED, dtype=torch.long)
                for index, adversarial in attack.batches(target, x, y, eps):
                    check_adversarial(name, x[index.to(_device(x))], adversarial, eps)
                    classes = predicted_classes(net, adversarial, time_steps=t, batch_size=target.batch_size)
                    predicted[index] = classes.cpu()
                evaluated = predicted != NOT_EVALUATED
                key = attack_metric(name, eps)
                correct = predicted[evaluated] == y.cpu()[evaluated]
                metrics[key] = correct.float().mean().item() if len(correct) else float("nan")
                if predictions is not None:
                    predictions[key] = predicted
                log(
                    f"{key}: {metrics[key]:.4f} on {int(evaluated.sum())} test images "
                    f"({time.perf_counter() - started:.1f}s)"
                )
    return metrics


def _device(x: object) -> torch.device:
    return getattr(x, "device", torch.device("cpu"))
