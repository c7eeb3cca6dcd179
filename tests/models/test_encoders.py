"""Input encodings: direct (normalised image, stem once) and Poisson rate coding."""

from __future__ import annotations

import pytest
import torch

from harness.data import DataSplits, load_dataset
from harness.errors import HarnessInputError
from harness.models import create_encoder, create_model, list_encoders, make_lif
from harness.models.encoders import DirectEncoding, PoissonEncoding, RateEncoding


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits")


def test_the_registry_has_direct_and_poisson() -> None:
    assert {"direct", "poisson"} <= set(list_encoders())
    with pytest.raises(HarnessInputError, match="unknown input encoding 'rate'"):
        create_encoder("rate")


def test_direct_encoding_standardises_the_training_images_once(digits: DataSplits) -> None:
    encoder = create_encoder("direct", digits.mean, digits.std)
    z = encoder(digits.train_x, 8)
    assert z.shape == (1, *digits.train_x.shape)  # the same input at every step: one step
    assert z.dtype == torch.float32
    assert z.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert z.std(correction=0).item() == pytest.approx(1.0, abs=1e-4)


def test_direct_encoding_normalises_per_channel_and_follows_the_dtype() -> None:
    encoder = DirectEncoding(mean=(0.5, 0.25), std=(0.5, 0.25))
    z = encoder.normalize(torch.ones(1, 2, 4, 4))
    assert torch.allclose(z[:, 0], torch.full((1, 4, 4), 1.0))
    assert torch.allclose(z[:, 1], torch.full((1, 4, 4), 3.0))
    assert encoder.normalize(torch.ones(1, 2, 4, 4, dtype=torch.float64)).dtype == torch.float64
    assert torch.equal(DirectEncoding().normalize(torch.ones(2, 2)), torch.ones(2, 2))  # no statistics: unchanged


def test_direct_encoding_is_the_old_normalise_then_stem_exactly(digits: DataSplits) -> None:
    """Networks now take raw images; the direct encoding computes what callers used to pass them."""
    torch.manual_seed(0)
    encoder = DirectEncoding(digits.mean, digits.std)
    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_shape=8,
                       activation=make_lif(), encoder=encoder).eval()  # fmt: skip
    x = digits.test_x[:16]
    mean = torch.tensor(digits.mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.tensor(digits.std, dtype=x.dtype).view(-1, 1, 1)
    with torch.no_grad():
        stem = net.stem(((x - mean) / std).unsqueeze(0))
        assert torch.equal(net.stem(net.encoder(x, 4)), stem)


def test_statistics_are_not_saved_with_the_network(digits: DataSplits) -> None:
    encoder = DirectEncoding(digits.mean, digits.std)
    net = create_model("vgg", depth=5, width=4, in_channels=1, num_classes=10, image_shape=8,
                       activation=make_lif(), encoder=encoder)  # fmt: skip
    assert not any(key.startswith("encoder.") for key in net.state_dict())  # checkpoints stay as they were


def test_poisson_spikes_at_the_pixel_intensity() -> None:
    torch.manual_seed(0)
    images = torch.tensor([0.0, 0.25, 0.75, 1.0]).view(1, 1, 2, 2).expand(64, 1, 2, 2)
    spikes = PoissonEncoding()(images, 200)
    assert spikes.shape == (200, 64, 1, 2, 2)
    assert torch.all((spikes == 0) | (spikes == 1))
    rate = spikes.mean(dim=(0, 1)).flatten()
    assert rate[0] == 0 and rate[3] == 1
    assert rate[1].item() == pytest.approx(0.25, abs=0.02) and rate[2].item() == pytest.approx(0.75, abs=0.02)
    assert isinstance(PoissonEncoding().analog(), RateEncoding)  # an ANN of it sees the intensities


def test_a_poisson_network_runs_its_stem_at_every_step() -> None:
    torch.manual_seed(0)
    net = create_model("resnet", depth=8, width=4, in_channels=1, num_classes=10, image_shape=8,
                       activation=make_lif(), encoder=PoissonEncoding())  # fmt: skip
    out, features = net(torch.rand(3, 1, 8, 8), 5, return_features=True)
    assert out.shape == (5, 3, 10) and features["stage1"].shape[:2] == (5, 3)


def test_the_events_encoding_takes_frame_t_as_step_t_and_is_silent_after_the_frames() -> None:
    from harness.models.encoders import AveragedFrames, EventFrames, create_encoder

    frames = torch.rand(3, 4, 2, 5, 6) * 4  # [B, T, C, H, W] counts
    encoder = create_encoder("events", mean=(1.0, 2.0), std=(2.0, 4.0))
    assert isinstance(encoder, EventFrames) and encoder.takes_frames
    steps = encoder(frames, 4)
    assert steps.shape == (4, 3, 2, 5, 6)
    assert torch.allclose(steps[2, 1, 1], (frames[1, 2, 1] - 2.0) / 4.0)  # step 2 = frame 2, normalised
    longer = encoder(frames, 6)
    assert torch.equal(longer[:4], steps) and not longer[4:].any()  # no more events after the frames
    assert torch.equal(encoder(frames, 2), steps[:2])
    averaged = encoder.analog()
    assert isinstance(averaged, AveragedFrames) and isinstance(encoder.teacher_input(), AveragedFrames)
    assert torch.allclose(averaged(frames, 4)[0, :, 0], (frames.mean(dim=1)[:, 0] - 1.0) / 2.0)
    with pytest.raises(ValueError, match="binned event frames"):
        encoder(torch.rand(3, 2, 5, 6), 4)
