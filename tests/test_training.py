"""The loop phases of `harness.training`, on tiny tensors and tiny modules: batching,
optimiser and schedule, `Fitting`'s checkpoint state, one epoch (mean loss, the
NaN check, spiking state reset after every batch), prediction over T and the accuracies."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import Tensor, nn

from harness.config.sections import TrainConfig
from harness.data.augment import none, shift
from harness.errors import TrialFailed
from harness.models import make_lif
from harness.noise import apply_noise
from harness.training import (
    Fitting,
    accuracy,
    autocast,
    cumulative_accuracy,
    make_optimizer,
    make_schedule,
    noise_accuracies,
    precision,
    predict_steps,
    shuffled_batches,
    train_one_epoch,
)


class TinySNN(nn.Module):
    """Flatten -> Linear -> multi-step LIF (the harness's) -> Linear: logits `[T, B, K]`."""

    def __init__(self, pixels: int = 64, hidden: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.encode = nn.Linear(pixels, hidden)
        self.lif = make_lif(v_threshold=0.5)()
        self.classify = nn.Linear(hidden, classes)

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        current = self.encode(images.flatten(1))
        spikes = self.lif(current.unsqueeze(0).repeat(time_steps, 1, 1))
        return self.classify(spikes)


class PixelLogits(nn.Module):
    """An untrained 'network' whose logits at every step are the image's pixels (one class per pixel)."""

    def forward(self, images: Tensor, time_steps: int) -> Tensor:
        return images.flatten(1).unsqueeze(0).repeat(time_steps, 1, 1)


def _tiny_snn(seed: int = 0) -> TinySNN:
    torch.manual_seed(seed)
    return TinySNN()


def _digits_like(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def _cross_entropy(model: TinySNN, time_steps: int = 2):
    def loss(images: Tensor, labels: Tensor) -> Tensor:
        return nn.functional.cross_entropy(model(images, time_steps).mean(0), labels)

    return loss


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


# --- batching ---------------------------------------------------------------------------


def test_shuffled_batches_are_a_permutation_of_range_n_in_batch_size_slices() -> None:
    batches = list(shuffled_batches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert torch.cat(batches).tolist() != list(range(10))  # shuffled, not in order


def test_shuffled_batches_repeat_with_the_same_seed_and_differ_with_another() -> None:
    def order(seed: int) -> list[int]:
        return torch.cat(list(shuffled_batches(32, 5, torch.Generator().manual_seed(seed)))).tolist()

    assert order(3) == order(3)
    assert order(3) != order(4)


# --- optimiser and schedule ----------------------------------------------------------------


def test_make_optimizer_builds_sgd_with_nesterov_only_when_momentum_is_positive() -> None:
    params = list(nn.Linear(2, 2).parameters())
    sgd = make_optimizer(params, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01))
    assert type(sgd) is torch.optim.SGD
    assert sgd.param_groups[0]["nesterov"] is True
    assert sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["weight_decay"] == 0.01
    assert _lr(sgd) == 0.1
    plain = make_optimizer(params, TrainConfig(optimizer="sgd", momentum=0.0))
    assert plain.param_groups[0]["nesterov"] is False  # torch refuses Nesterov without momentum


def test_make_optimizer_builds_adam_and_adamw_at_train_lr() -> None:
    params = list(nn.Linear(2, 2).parameters())
    adam = make_optimizer(params, TrainConfig(optimizer="adam", lr=0.003, weight_decay=0.0))
    adamw = make_optimizer(params, TrainConfig(optimizer="adamw", lr=0.002))
    assert (type(adam), _lr(adam), adam.param_groups[0]["weight_decay"]) == (torch.optim.Adam, 0.003, 0.0)
    assert (type(adamw), _lr(adamw)) == (torch.optim.AdamW, 0.002)


def test_make_optimizer_takes_the_teachers_optimizer_and_lr_over_train() -> None:
    params = list(nn.Linear(2, 2).parameters())
    teacher = make_optimizer(params, TrainConfig(optimizer="adam", lr=0.01), optimizer="sgd", lr=0.2)
    assert type(teacher) is torch.optim.SGD
    assert _lr(teacher) == 0.2
    only_lr = make_optimizer(params, TrainConfig(optimizer="adamw", lr=0.01), lr=0.5)
    assert (type(only_lr), _lr(only_lr)) == (torch.optim.AdamW, 0.5)


def test_cosine_schedule_halves_midway_and_reaches_zero_at_the_total_steps() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    schedule = make_schedule(optimizer, TrainConfig(schedule="cosine"), total_steps=10)
    rates = []
    for _ in range(10):
        optimizer.step()
        schedule.step()
        rates.append(_lr(optimizer))
    assert rates[4] == pytest.approx(0.05)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert rates == sorted(rates, reverse=True)


def test_constant_schedule_keeps_the_rate() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    schedule = make_schedule(optimizer, TrainConfig(schedule="constant"), total_steps=10)
    for _ in range(12):
        optimizer.step()
        schedule.step()
    assert _lr(optimizer) == 0.1


# --- Fitting and one epoch -----------------------------------------------------------------


def _fitting(model: TinySNN) -> Fitting:
    train = TrainConfig(optimizer="adam", lr=0.05, batch_size=8, schedule="cosine", augment="shift")
    return Fitting([model], train, epochs=3, samples=20, seed=11)


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_a_restored_fitting_trains_its_next_epoch_to_the_same_weights_as_the_uninterrupted_one() -> None:
    x, y = _digits_like(20)
    model = _tiny_snn(0)
    fitting = _fitting(model)
    fitting.epoch(_cross_entropy(model), x, y, epoch=1)
    checkpoint = io.BytesIO()
    torch.save(fitting.state_dict(), checkpoint)  # as a trial's checkpoint stores it
    after_one = _weights(model)
    fitting.epoch(_cross_entropy(model), x, y, epoch=2)
    uninterrupted = _weights(model)

    restarted = _tiny_snn(1)  # other initial weights: the state must bring them back
    resumed = _fitting(restarted)
    checkpoint.seek(0)
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    assert all(torch.equal(after_one[k], v) for k, v in _weights(restarted).items())
    resumed.epoch(_cross_entropy(restarted), x, y, epoch=2)

    assert any(not torch.equal(after_one[k], v) for k, v in uninterrupted.items())  # epoch 2 changed them
    assert all(torch.equal(uninterrupted[k], v) for k, v in _weights(restarted).items())
    assert _lr(resumed.optimizer) == _lr(fitting.optimizer)


def test_train_one_epoch_returns_the_mean_of_the_batch_losses() -> None:
    weight = nn.Parameter(torch.zeros(()))
    x, y = torch.zeros(8, 1, 2, 2), torch.arange(8)

    def loss(images: Tensor, labels: Tensor) -> Tensor:
        return labels.float().sum() + 0 * weight  # the batch's label sum: 28 over 2 batches of 4

    module = nn.Module()
    module.weight = weight
    optimizer = torch.optim.SGD([weight], lr=0.1)
    schedule = make_schedule(optimizer, TrainConfig(schedule="constant"), 2)
    generator = torch.Generator().manual_seed(0)
    mean = train_one_epoch(
        [module], optimizer, schedule, x, y, loss, batch_size=4, generator=generator, augment=none, epoch=1
    )
    assert mean == pytest.approx(14.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_train_one_epoch_raises_trial_failed_naming_the_epoch_when_the_loss_is_not_finite(bad: float) -> None:
    model = _tiny_snn()
    x, y = _digits_like(16)
    good = _cross_entropy(model)

    def loss(images: Tensor, labels: Tensor) -> Tensor:
        return good(images, labels) * bad

    optimizer = make_optimizer(list(model.parameters()), TrainConfig())
    schedule = make_schedule(optimizer, TrainConfig(), 2)
    with pytest.raises(TrialFailed, match=r"epoch 3 \(by batch 2\)"):
        train_one_epoch(
            [model],
            optimizer,
            schedule,
            x,
            y,
            loss,
            batch_size=8,
            generator=torch.Generator().manual_seed(0),
            augment=shift,
            epoch=3,
        )


def test_train_one_epoch_resets_the_spiking_state_after_every_batch() -> None:
    model = _tiny_snn()
    model.eval()
    x, y = _digits_like(24)
    seen: list[object] = []  # the LIF's membrane when each batch starts
    inner = _cross_entropy(model)

    def loss(images: Tensor, labels: Tensor) -> Tensor:
        # Checked here: without the reset the next backward would fail on the old graph first.
        assert type(model.lif.v) is float, f"batch {len(seen) + 1} started from the last batch's membrane"
        seen.append(model.lif.v)
        return inner(images, labels)

    optimizer = make_optimizer(list(model.parameters()), TrainConfig())
    calls: list[tuple[int, int]] = []
    train_one_epoch(
        [model],
        optimizer,
        make_schedule(optimizer, TrainConfig(), 3),
        x,
        y,
        loss,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        augment=shift,
        epoch=1,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert model.training  # put in train mode
    # Every batch starts from rest (spikingjelly's reset puts back the float 0.0), not from the
    # membrane tensor the previous batch left; and the epoch leaves the network at rest.
    assert seen == [0.0, 0.0, 0.0]
    assert type(model.lif.v) is float and model.lif.v == 0.0
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_the_lif_does_hold_a_membrane_after_a_forward_pass() -> None:
    # The reset tests above mean something only if a forward pass leaves a tensor membrane.
    model = _tiny_snn()
    model(_digits_like(4)[0], 2)
    assert isinstance(model.lif.v, Tensor)
    assert model.lif.v.shape == (4, 6)


# --- prediction and accuracy ---------------------------------------------------------------


def test_predict_steps_returns_t_n_k_and_resets_state_between_batches() -> None:
    model = _tiny_snn()
    x, _ = _digits_like(5)
    sizes: list[int] = []
    steps = predict_steps(model, x, time_steps=3, batch_size=2, before_batch=sizes.append)
    assert steps.shape == (3, 5, 3)
    assert sizes == [2, 2, 1]
    assert not model.training
    assert type(model.lif.v) is float and model.lif.v == 0.0
    # Each sample's logits do not depend on the batch it ran in: the state was reset between them.
    one_batch = predict_steps(model, x, time_steps=3, batch_size=5)
    alone = torch.cat([predict_steps(model, x[i : i + 1], time_steps=3, batch_size=1) for i in range(5)], dim=1)
    assert torch.allclose(steps, one_batch, atol=1e-6)
    assert torch.allclose(steps, alone, atol=1e-6)


def test_cumulative_accuracy_at_t_uses_the_mean_of_the_first_t_steps() -> None:
    # Sample 0 (label 0) is right after step 1 only; sample 1 (label 1) after steps 1 and 2.
    # Step by step alone, sample 1's step 2 ([0, 0]) would pick class 0 and give 0.0 at t = 2.
    logits = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],
            [[0.0, 3.0], [0.0, 0.0]],
            [[0.0, 0.0], [5.0, 0.0]],
        ]
    )
    assert cumulative_accuracy(logits, torch.tensor([0, 1])).tolist() == [1.0, 0.5, 0.0]


def test_accuracy_is_the_fraction_right_at_the_given_time_steps() -> None:
    # Four 1x2x2 images, one class per pixel: the brightest pixel is the prediction.
    x = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0],
            [0.0, 0.8, 0.1, 0.0],
            [0.0, 0.0, 0.1, 0.7],
            [0.5, 0.0, 0.0, 0.0],
        ]
    ).reshape(4, 1, 2, 2)
    y = torch.tensor([0, 1, 3, 2])  # the last one is wrong
    assert accuracy(PixelLogits(), x, y, time_steps=2, batch_size=3) == 0.75


def test_noise_accuracies_are_keyed_prefix_type_level_and_equal_accuracy_on_the_corrupted_images() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=generator)
    y = x.flatten(1).argmax(dim=1)  # right on every clean image
    noise = {"gaussian": [0.1, 0.3], "salt_pepper": [0.05]}
    model = PixelLogits()
    result = noise_accuracies(model, x, y, noise, prefix="teacher_noise/", time_steps=2, batch_size=16)
    assert set(result) == {"teacher_noise/gaussian/0.1", "teacher_noise/gaussian/0.3", "teacher_noise/salt_pepper/0.05"}
    for kind, levels in noise.items():
        for level in levels:
            want = accuracy(model, apply_noise(x, kind, level), y, time_steps=2, batch_size=16)
            assert result[f"teacher_noise/{kind}/{level:g}"] == want
    assert accuracy(model, x, y, time_steps=2, batch_size=16) == 1.0
    assert result["teacher_noise/gaussian/0.3"] < 1.0  # the images were corrupted
    assert all(math.isfinite(value) for value in result.values())


# --- the first batch's loss, checked once ---------------------------------------------------


def test_a_loss_that_is_not_a_scalar_is_refused_on_the_first_batch_naming_its_owner() -> None:
    from harness.errors import PluginError

    model = _tiny_snn()
    x, y = _digits_like(20)
    fitting = Fitting(
        [model], TrainConfig(batch_size=8, augment="shift"), epochs=1, samples=20, seed=0, owner="method 'mine' (x)"
    )
    calls = []

    def per_sample(images: Tensor, labels: Tensor) -> Tensor:
        calls.append(len(images))
        return nn.functional.cross_entropy(model(images, 2).mean(0), labels, reduction="none")

    with pytest.raises(PluginError, match=r"^method 'mine' \(x\): the loss must be a scalar tensor, got shape \[8\]$"):
        fitting.epoch(per_sample, x, y, epoch=1)
    assert calls == [8]  # refused on the first batch, before any step


def test_a_loss_that_is_nan_before_any_step_says_so_at_once() -> None:
    model = _tiny_snn()
    x, y = _digits_like(40)
    fitting = Fitting(
        [model], TrainConfig(batch_size=8, augment="shift"), epochs=1, samples=40, seed=0, owner="the teacher"
    )
    before = _weights(model)
    with pytest.raises(
        TrialFailed, match=r"^the teacher: the loss of the first batch is nan before any training step$"
    ):
        fitting.epoch(lambda images, labels: _cross_entropy(model)(images, labels) * float("nan"), x, y, 1)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # no step was taken


def test_the_first_loss_is_checked_once_per_run_not_per_batch() -> None:
    model = _tiny_snn()
    x, y = _digits_like(40)
    fitting = Fitting([model], TrainConfig(batch_size=8, augment="shift"), epochs=2, samples=40, seed=0)
    fitting.epoch(_cross_entropy(model), x, y, 1)
    assert fitting.checked
    with pytest.raises(TrialFailed, match=r"loss became NaN or infinite in epoch 2"):  # the NaN guard, after that
        fitting.epoch(lambda images, labels: _cross_entropy(model)(images, labels) * float("nan"), x, y, 2)


def test_event_frames_get_one_augmentation_per_sample_for_all_their_frames() -> None:
    from harness.data.augment import crop_flip
    from harness.training import augmented

    frames = torch.rand(6, 3, 2, 8, 8)  # [B, T, C, H, W]
    out = augmented(crop_flip, frames, torch.Generator().manual_seed(4))
    # The same draws on the frames folded into channels: every frame moved alike.
    folded = crop_flip(frames.reshape(6, 6, 8, 8), torch.Generator().manual_seed(4)).reshape(6, 3, 2, 8, 8)
    assert out.shape == frames.shape and torch.equal(out, folded)
    assert not torch.equal(out, frames)


# --- train.precision ---------------------------------------------------------------------------


def test_fp32_precision_changes_nothing(make_config) -> None:
    """`train.precision: fp32` (the default) gives the very numbers of a run outside any precision block."""
    from harness.trial import train

    config = make_config("direct", **{"train.epochs": 1})
    plain = train(config, log=lambda _: None)
    with precision("fp32", torch.device("cpu")):  # entered twice: nested blocks change nothing either
        again = train(config, log=lambda _: None)
    for key in ("train_loss", "val_accuracy", "test_accuracy", "synops", "noise/gaussian/0.1"):
        assert again[key] == plain[key], key


def test_bf16_off_cuda_is_refused_naming_the_key(make_config) -> None:
    from harness.errors import HarnessInputError
    from harness.trial import train

    with pytest.raises(HarnessInputError, match="train.precision: bf16 is autocast on CUDA; this trial runs on cpu"):
        train(make_config("direct", **{"train.precision": "bf16", "train.device": "cpu"}), log=lambda _: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_cuda_trains_with_fp32_membranes_and_fp32_logits(make_config) -> None:
    from harness.trial import train

    node = make_lif()().cuda()
    conv = nn.Conv2d(1, 4, 3, padding=1).cuda()
    with precision("bf16", torch.device("cuda")), autocast():
        x = conv(torch.rand(2 * 3, 1, 8, 8, device="cuda")).reshape(2, 3, 4, 8, 8)
        assert x.dtype == torch.bfloat16
        spikes = node(x)
    assert node.v.dtype == torch.float32 and spikes.dtype == torch.bfloat16
    overrides = {"train.device": "cuda", "train.epochs": 2}
    fp32 = train(make_config("kd", **overrides), log=lambda _: None)
    bf16 = train(make_config("kd", **overrides, **{"train.precision": "bf16"}), log=lambda _: None)
    assert math.isfinite(bf16["train_loss"]) and abs(bf16["test_accuracy"] - fp32["test_accuracy"]) < 0.1
