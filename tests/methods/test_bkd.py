"""`bkd` (BKDSNN, blurred feature KD): the mask, the generator's MSE and the whole loss against
values worked out by hand, the taps it picks and refuses, a trial on digits, and its section,
whose `lambda` (a Python keyword) keeps that name in every form a config takes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness.config.resolve import build_trial_config, resolve, trial_config
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.context import TrialContext
from harness.errors import HarnessInputError
from harness.key_table import key_table
from harness.methods import METHODS, create_method, logged_params
from harness.methods.bkd import (
    BKDConfig,
    BKDMethod,
    FeatureGenerator,
    bkd_loss,
    blur_mask,
    blurred_feature_loss,
    match_spatial,
    pick_tap,
)
from harness.trial import load_trial_data, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "search_spaces" / "smoke.yaml"


def softmax(logits: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(z / tau) for z in logits]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def identity_generator(channels: int = 1) -> FeatureGenerator:
    """G with both convolutions the identity (centre tap 1, no bias): G(x) = x for x >= 0."""
    generator = FeatureGenerator(channels, channels)
    with torch.no_grad():
        for conv in (generator.net[0], generator.net[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(channels):
                conv.weight[c, c, 1, 1] = 1.0
    return generator


def bkd_config(**values: float | str) -> BKDConfig:
    return BKDConfig.model_validate(values)


# -- the mask ----------------------------------------------------------------------------------


def test_the_mask_zeroes_about_lambda_of_the_positions_per_sample_in_every_channel() -> None:
    torch.manual_seed(0)
    feature = torch.rand(4, 3, 100, 100) + 0.5  # no zeros of its own
    blurred = blur_mask(feature, 0.3)
    masked = blurred == 0
    for sample in range(4):
        assert masked[sample, 0].float().mean().item() == pytest.approx(0.3, abs=0.02)  # 10,000 positions
        assert torch.equal(masked[sample, 0], masked[sample, 1]) and torch.equal(masked[sample, 0], masked[sample, 2])
    assert not torch.equal(masked[0, 0], masked[1, 0])  # drawn per sample
    assert torch.equal(blurred[~masked], feature[~masked])  # what is kept is kept as it is
    assert not torch.equal(blur_mask(feature, 0.3) == 0, masked)  # drawn afresh at every call


def test_lambda_zero_masks_nothing_and_draws_nothing() -> None:
    feature = torch.rand(2, 3, 8, 8)
    state = torch.get_rng_state()
    assert torch.equal(blur_mask(feature, 0.0), feature)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_mask_draws_from_the_torch_rng() -> None:
    feature = torch.ones(2, 1, 16, 16)
    torch.manual_seed(5)
    first = blur_mask(feature, 0.5)
    torch.manual_seed(5)
    assert torch.equal(blur_mask(feature, 0.5), first)


# -- the generator's MSE -----------------------------------------------------------------------


def test_the_generator_maps_student_channels_onto_the_teachers() -> None:
    assert FeatureGenerator(16, 32)(torch.randn(2, 16, 5, 7)).shape == (2, 32, 5, 7)


def test_feature_mse_with_an_identity_generator_and_no_mask() -> None:
    student = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    teacher = torch.ones(1, 1, 2, 2)
    expected = ((1 - 1) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2 + (4 - 1) ** 2) / 4  # 3.5
    assert blurred_feature_loss(identity_generator(), student, teacher, 0.0).item() == pytest.approx(expected)


def test_feature_mse_of_the_masked_map() -> None:
    """lambda = 0.5 on a 2x2 map: the masked positions count as 0 against the teacher."""
    student = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    teacher = torch.tensor([[[[0.5, 0.5], [2.0, 2.0]]]])
    torch.manual_seed(1)
    keep = (torch.rand(1, 1, 2, 2) >= 0.5).flatten().tolist()  # the draw blur_mask makes
    assert True in keep and False in keep  # this seed masks some positions, not all
    values, targets = [1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 2.0, 2.0]
    expected = sum(((v if k else 0.0) - t) ** 2 for v, k, t in zip(values, keep, targets, strict=True)) / 4
    torch.manual_seed(1)
    assert blurred_feature_loss(identity_generator(), student, teacher, 0.5).item() == pytest.approx(expected)


def test_the_larger_map_is_average_pooled_to_the_smaller() -> None:
    big = torch.arange(16.0).reshape(1, 1, 4, 4)  # 2x2 block means: 2.5, 4.5, 10.5, 12.5
    small = torch.tensor([[[[2.0, 4.0], [10.0, 12.0]]]])
    for student, teacher in ((big, small), (small, big)):
        s, t = match_spatial(student, teacher)
        assert s.shape == t.shape == (1, 1, 2, 2)
        # Every pooled value is 0.5 above its partner: MSE 0.25 either way round.
        loss = blurred_feature_loss(identity_generator(), student, teacher, 0.0).item()
        assert loss == pytest.approx(0.25)
    same = torch.ones(1, 1, 3, 3)
    assert all(x is same for x in match_spatial(same, same))


def test_bkd_loss_matches_the_hand_computed_value() -> None:
    """`(1 - alpha) CE + alpha tau^2 KL(teacher || student) + beta MSE(G(f_s), f_t)`."""
    alpha, tau, beta = 0.4, 2.0, 0.5
    z_s, z_t, label = [1.0, 0.0], [2.0, 0.0], 0
    ce = -math.log(softmax(z_s)[label])
    response = (1 - alpha) * ce + alpha * tau**2 * kl(softmax(z_t, tau), softmax(z_s, tau))
    expected = response + beta * 3.5  # the identity generator's MSE above
    got = bkd_loss(
        torch.tensor([z_s]),
        torch.tensor([z_t]),
        torch.tensor([label]),
        torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]),
        torch.ones(1, 1, 2, 2),
        identity_generator(),
        bkd_config(**{"lambda": 0.0, "alpha": alpha, "temperature": tau, "beta": beta}),
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


# -- the taps ----------------------------------------------------------------------------------

SHAPES = {"stage1": (2, 4, 8, 8, 8), "stage2": (2, 4, 16, 4, 4), "pool": (2, 4, 16)}


def test_last_is_the_last_spatial_map_never_the_pooled_vector() -> None:
    assert pick_tap(SHAPES, "last", "bkd.student_layer", "the student") == "stage2"
    assert pick_tap(SHAPES, "stage1", "bkd.student_layer", "the student") == "stage1"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", r"^bkd.student_layer: the student has no feature tap 'nope'; its spatial maps are stage1, stage2"),
        ("pool", r"^bkd.student_layer: 'pool' of the student is not a spatial feature map \(it is \[16\]\)"),
    ],
)
def test_a_tap_that_is_missing_or_not_spatial_is_refused(name: str, message: str) -> None:
    with pytest.raises(HarnessInputError, match=message):
        pick_tap(SHAPES, name, "bkd.student_layer", "the student")
    with pytest.raises(HarnessInputError, match=r"^bkd.student_layer: the student has no spatial feature map"):
        pick_tap({"pool": (2, 4, 16)}, "last", "bkd.student_layer", "the student")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"bkd.student_layer": "stage9"}, r"^bkd.student_layer: the student \(resnet\) has no feature tap 'stage9'"),
        ({"bkd.student_layer": "pool"}, r"^bkd.student_layer: 'pool' of the student \(resnet\) is not a spatial"),
        ({"bkd.teacher_layer": "pool"}, r"^bkd.teacher_layer: 'pool' of the teacher \(resnet\) is not a spatial"),
        ({"student.arch": "vgg", "student.depth": 5, "bkd.student_layer": "stage3"}, r"spatial maps are block1, "),
    ],
)
def test_preflight_refuses_a_bad_layer_before_anything_runs(make_config, sets, message: str) -> None:
    with pytest.raises(HarnessInputError, match=message):
        BKDMethod.preflight(make_config("bkd", **sets))


def test_preflight_accepts_the_defaults_of_every_family(make_config) -> None:
    BKDMethod.preflight(make_config("bkd"))
    vgg = {"student.arch": "vgg", "student.depth": 5, "teacher.arch": "vgg", "teacher.depth": 7}
    BKDMethod.preflight(make_config("bkd", **vgg))
    spikformer = {"method": "bkd", "dataset.name": "digits", "student.arch": "spikformer", "teacher.depth": 8}
    BKDMethod.preflight(trial_config({**spikformer, "bkd.student_layer": "patch"}))
    with pytest.raises(HarnessInputError, match=r"spatial maps are patch, block1, block2 \(or 'last'"):
        BKDMethod.preflight(trial_config({**spikformer, "bkd.student_layer": "stage1"}))


def _bkd_method(config, teacher_cache: Path) -> BKDMethod:
    data = load_trial_data(config, torch.device("cpu"))
    method = create_method("bkd", TrialContext(config, data, torch.device("cpu"), teacher_cache, lambda _: None))
    assert isinstance(method, BKDMethod)
    return method


def test_a_bad_layer_is_refused_at_build_too(make_config, teacher_cache: Path) -> None:
    """Where preflight did not run (a method built directly), the build checks the taps on the data."""
    with pytest.raises(HarnessInputError, match=r"^bkd.teacher_layer: the teacher \(resnet\) has no feature tap"):
        _bkd_method(make_config("bkd", **{"bkd.teacher_layer": "layer4"}), teacher_cache)


def test_the_cli_refuses_a_bad_layer_with_exit_2(run_harness, tmp_path: Path) -> None:
    space = str(REPO / "search_spaces" / "kd-family.yaml")
    result = run_harness("train", "--space", space, "--method", "bkd", "--set", "bkd.student_layer=pool", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: bkd.student_layer: 'pool' of the student (vgg)")
    assert not (tmp_path / "mlflow.db").exists()  # refused before a run was made


# -- the method on digits ----------------------------------------------------------------------


def test_the_generator_is_built_on_the_last_maps_and_trained(make_config, teacher_cache: Path) -> None:
    method = _bkd_method(make_config("bkd", **{"train.epochs": 1, "bkd.lambda": 0.5}), teacher_cache)
    assert (method.student_layer, method.teacher_layer) == ("stage3", "stage3")  # ResNet-8: 3 stages
    assert method.generator is not None and method.generator in method.trainable
    assert method.generator.net[0].in_channels == method.student.feature_channels()["stage3"]
    assert method.generator.net[2].out_channels == method.teacher.feature_channels()["stage3"]
    before = {name: p.detach().clone() for name, p in method.generator.named_parameters()}
    method.train_one_epoch(1)
    after = dict(method.generator.named_parameters())
    assert not [name for name, value in before.items() if torch.equal(value, after[name].detach())]


def test_the_feature_term_enters_the_loss_with_weight_beta(make_config, teacher_cache: Path) -> None:
    """Same seed, same batch, the same mask (the RNG seeded before each loss): beta = 0 builds no
    generator and is response KD alone; the feature term scales with beta."""
    losses = {}
    for beta in (0.0, 1.0, 2.0):
        method = _bkd_method(make_config("bkd", **{"bkd.beta": beta, "bkd.lambda": 0.5}), teacher_cache)
        assert (method.generator is None) == (beta == 0.0)
        images, labels = method.ctx.data.train_x[:64], method.ctx.data.train_y[:64]
        torch.manual_seed(11)
        losses[beta] = method.loss(images, labels).item()
    feature_term = losses[1.0] - losses[0.0]
    assert feature_term > 0
    assert losses[2.0] - losses[0.0] == pytest.approx(2 * feature_term, rel=1e-4)


def test_bkd_trains_a_student_from_the_teacher(make_config, teacher_cache: Path) -> None:
    config = make_config("bkd", **{"train.epochs": 1, "bkd.lambda": 0.3, "bkd.beta": 0.1})
    metrics = train(config, teacher_cache=teacher_cache, log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert 0.0 < metrics["teacher_test_accuracy"] <= 1.0
    assert {"teacher_macs", "teacher_noise/gaussian/0.1"} <= set(metrics)


# -- the section, and `lambda` -----------------------------------------------------------------


def _resolve(*sets: str):
    return resolve(load_space(SMOKE), method="bkd", overrides=[parse_override(s) for s in sets]).config


def test_bkd_defaults() -> None:
    defaults = BKDConfig()
    assert (defaults.lambda_, defaults.beta, defaults.alpha, defaults.temperature) == (0.15, 1.0, 0.5, 4.0)
    assert (defaults.student_layer, defaults.teacher_layer) == ("last", "last")
    assert METHODS.get("bkd").capabilities.needs_teacher


def test_lambda_is_named_lambda_in_every_form_of_the_config() -> None:
    config = _resolve("bkd.lambda=0.3")
    assert config.options.lambda_ == 0.3
    flat = config.flat()
    assert flat["bkd.lambda"] == 0.3 and "bkd.lambda_" not in flat
    assert logged_params(config)["bkd.lambda"] == 0.3  # the MLflow param
    dumped = config.model_dump(mode="json")  # the config of a checkpoint and of the run
    assert dumped["bkd"]["lambda"] == 0.3 and "lambda_" not in dumped["bkd"]
    assert build_trial_config(dumped) == config  # a checkpoint's config loads back
    rows = {row[0]: row for row in key_table()[0]}  # `harness keys`
    assert rows["bkd.lambda"][1:3] == ("float [0, 1)", "0.15") and "bkd.lambda_" not in rows


def test_lambda_in_a_space_file(tmp_path: Path) -> None:
    from harness.sweep.plan import plan_sweep

    path = tmp_path / "bkd.yaml"
    path.write_text(
        "name: bkd\nmethods: [bkd]\n"
        "fixed: {dataset.name: digits, bkd: {lambda: 0.2}}\n"
        "space: {bkd.lambda: {float: [0.1, 0.9]}}\n"
    )
    (plan,) = plan_sweep(path).methods
    assert plan.config.options.lambda_ == 0.2 and set(plan.dims) == {"bkd.lambda"}
    assert plan.trial_config({"bkd.lambda": 0.9}).options.lambda_ == 0.9  # a sampled value
    path.write_text("name: bkd\nmethods: [bkd]\nspace: {bkd.lambda: {float: [0.1, 1.5]}}\n")
    with pytest.raises(HarnessInputError, match=r"space.bkd.lambda: value 1.5 is invalid: .*less than 1"):
        load_space(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "bkd.lambda_=0.3",
            r"^--set bkd.lambda_: unknown key; expected one of: alpha, beta, lambda, student_layer, teacher_layer, "
            r"temperature$",
        ),
        ("bkd.gamma=1", r"^--set bkd.gamma: unknown key"),
        ("bkd.lambda=1", r"^--set bkd.lambda: .*less than 1"),
        ("bkd.lambda=-0.1", r"^--set bkd.lambda: .*greater than or equal to 0"),
        ("bkd.lambda=.inf", r"^--set bkd.lambda: "),
        ("bkd.beta=-1", r"^--set bkd.beta: .*greater than or equal to 0"),
        ("bkd.alpha=1.5", r"^--set bkd.alpha: .*less than or equal to 1"),
        ("bkd.temperature=0", r"^--set bkd.temperature: .*greater than 0"),
        ("bkd.student_layer=''", r"^--set bkd.student_layer: .*at least 1 character"),
    ],
)
def test_bkd_section_refuses_unknown_keys_and_values_out_of_range(override: str, message: str) -> None:
    with pytest.raises(HarnessInputError, match=message):
        _resolve(override)
