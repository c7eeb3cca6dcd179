"""Registries filled from installed entry points: built-ins and plugins alike, broken ones named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.resolve import resolve_trial_config
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.data import DATASETS
from harness.data.augment import AUGMENTATIONS
from harness.errors import HarnessInputError, PluginError
from harness.methods import METHODS, logged_params
from harness.models import ENCODERS, MODELS
from harness.noise import NOISES
from harness.plugins import REGISTRIES

MYKD = """
from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from harness.config import Section
from harness.methods.kd import DistillationMethod


class MyKDConfig(Section):
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    gamma: float = 2.0


class MyKD(DistillationMethod):
    options = MyKDConfig

    def loss(self, images, labels):
        student = self.student(images, self.ctx.config.snn.time_steps).mean(0)
        return F.cross_entropy(student, labels)


class NotAMethod:
    pass


class Train(MyKD):  # registered as `train`: the name of a core section
    pass
"""


def test_every_built_in_comes_from_this_distributions_entry_points() -> None:
    expected = {
        METHODS: {"kd", "direct", "conversion"},
        MODELS: {"resnet", "vgg"},
        DATASETS: {"digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"}
        | {"nmnist", "dvs-gesture", "cifar10-dvs", "digits-events"},
        NOISES: {"gaussian", "salt_pepper", "poisson", "speckle", "uniform", "gaussian_blur", "contrast", "occlusion"}
        | {"event_drop", "background_activity", "spatial_jitter", "temporal_jitter", "polarity_flip"},
        ENCODERS: {"direct", "poisson", "events"},
        AUGMENTATIONS: {"none", "shift", "crop_flip", "cutout"},
    }
    for registry, names in expected.items():
        assert names <= set(registry.names())
        for name in names:
            (provider,) = registry.providers(name)
            assert provider.distribution == "snn-kd-harness"
            registry.get(name)  # loads and passes its registry's check
    assert set(REGISTRIES) == {"methods", "models", "datasets", "noises", "encoders", "augmentations", "attacks"}


def test_a_plugin_method_owns_its_section(install_plugin, tiny_space: Path) -> None:
    install_plugin("my-kd", {"methods": {"mykd": "mykd:MyKD"}}, {"mykd.py": MYKD})
    space = load_space(tiny_space)
    config = resolve_trial_config(space, method="mykd", overrides=[parse_override("mykd.gamma=3.5")])
    assert config.mykd.gamma == 3.5 and config.options is config.mykd
    params = logged_params(config)
    assert "mykd.gamma" in params and "teacher.depth" in params  # it needs a teacher
    assert not any(key.startswith("kd.") for key in params)  # kd's section is not its own
    # Another method's run checks the plugin's keys too, and leaves them out of its config.
    kd = resolve_trial_config(space, method="kd", overrides=[parse_override("mykd.gamma=1")])
    assert not hasattr(kd, "mykd") and "mykd.gamma" not in kd.flat()
    with pytest.raises(HarnessInputError, match=r"^--set mykd.alpha: Input should be less than or equal to 1"):
        resolve_trial_config(space, method="kd", overrides=[parse_override("mykd.alpha=2")])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("mykd.gama=1", r"^--set mykd.gama: unknown key; expected one of: alpha, gamma$"),
        ("kd.alpah=1", r"^--set kd.alpah: unknown key; expected one of: alpha, beta, student_layer, teacher_layer, "),
        ("mykd.gamma=fast", r"^--set mykd.gamma: Input should be a valid number"),
        ("mykd.gamma=.inf", r"^--set mykd.gamma: Input should be a finite number"),
    ],
)
def test_a_plugin_section_gets_the_same_one_line_errors_as_a_built_in(
    install_plugin, tiny_space: Path, override: str, expected: str
) -> None:
    install_plugin("my-kd", {"methods": {"mykd": "mykd:MyKD"}}, {"mykd.py": MYKD})
    with pytest.raises(HarnessInputError, match=expected) as err:
        resolve_trial_config(load_space(tiny_space), method="mykd", overrides=[parse_override(override)])
    assert "\n" not in str(err.value)


def test_a_plugin_key_is_searched_like_a_built_in(install_plugin, tmp_path: Path) -> None:
    import yaml

    from harness.sweep.plan import plan_sweep

    install_plugin("my-kd", {"methods": {"mykd": "mykd:MyKD"}}, {"mykd.py": MYKD})
    space = {
        "name": "plugin-dims",
        "methods": ["mykd", "direct"],
        "fixed": {"dataset.name": "digits"},
        "space": {"mykd.gamma": {"float": [1.0, 4.0]}, "student.width": {"categorical": [4, 8]}},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    plan = plan_sweep(path)
    assert set(plan.of("mykd").dims) == {"mykd.gamma", "student.width"}
    assert set(plan.of("direct").dims) == {"student.width"}
    assert plan.of("mykd").capabilities.needs_teacher
    path.write_text(yaml.safe_dump({**space, "space": {"mykd.gamma": {"float": [1.0, float("inf")]}}}))
    with pytest.raises(HarnessInputError, match=r"space.mykd.gamma"):
        plan_sweep(path)


def test_a_plugin_that_does_not_import_is_named_and_the_built_ins_still_work(install_plugin, tiny_space) -> None:
    install_plugin("broken-kd", {"methods": {"brokenkd": "no_such_module:Method"}}, {})
    with pytest.raises(PluginError) as err:
        METHODS.get("brokenkd")
    message = str(err.value)
    assert "\n" not in message
    assert "'brokenkd' (no_such_module:Method) of broken-kd 0.1" in message and "does not load" in message
    assert "ModuleNotFoundError" in message
    assert resolve_trial_config(load_space(tiny_space), method="kd").method == "kd"  # lazy: untouched


def test_an_entry_of_the_wrong_type_is_named(install_plugin) -> None:
    install_plugin("my-kd", {"methods": {"notamethod": "mykd:NotAMethod"}}, {"mykd.py": MYKD})
    with pytest.raises(PluginError, match=r"'notamethod' \(mykd:NotAMethod\) of my-kd 0.1 .* not a valid method"):
        METHODS.get("notamethod")


SQUARE_FAMILY = """
from harness.models.resnet import ResNetArgs


class Square(ResNetArgs):
    def build(self, *, in_channels, num_classes, image_size, activation, pool="max"):
        return super().build(
            in_channels=in_channels, num_classes=num_classes, image_shape=(image_size, image_size),
            activation=activation, pool=pool,
        )
"""


def test_a_family_written_for_square_image_sizes_is_named_when_it_is_looked_up(install_plugin) -> None:
    install_plugin("square-family", {"models": {"square": "square_family:Square"}}, {"square_family.py": SQUARE_FAMILY})
    with pytest.raises(PluginError, match=r"of square-family 0.1 .* Square.build\(\) must take image_shape"):
        MODELS.get("square")


def test_a_name_two_distributions_register_names_both(install_plugin) -> None:
    install_plugin("my-kd", {"methods": {"kd": "mykd:MyKD"}}, {"mykd.py": MYKD})
    with pytest.raises(PluginError) as err:
        METHODS.get("kd")
    message = str(err.value)
    assert "method 'kd' is registered twice" in message
    assert "harness.methods.kd:KDMethod) of snn-kd-harness" in message and "(mykd:MyKD) of my-kd 0.1" in message


def test_a_section_that_collides_with_a_core_section_names_both(install_plugin) -> None:
    install_plugin("my-kd", {"methods": {"train": "mykd:Train"}}, {"mykd.py": MYKD})
    with pytest.raises(PluginError, match=r"\(mykd:Train\) of my-kd 0.1 .*collides with the harness's own section"):
        METHODS.get("train")


BAD_FAMILY = """
from harness.models.resnet import ResNetArgs


class WithEpochs(ResNetArgs):
    epochs: int = 3  # the teacher's own `teacher.epochs`
"""


def test_a_family_argument_that_collides_with_a_teacher_key_names_both(install_plugin, tiny_space) -> None:
    install_plugin("bad-family", {"models": {"resnet_e": "bad_family:WithEpochs"}}, {"bad_family.py": BAD_FAMILY})
    space = load_space(tiny_space)
    with pytest.raises(PluginError, match=r"of bad-family 0.1: its argument 'epochs' collides with teacher.epochs"):
        resolve_trial_config(space, method="kd", overrides=[("teacher.arch", "resnet_e")])
    student = resolve_trial_config(space, method="direct", overrides=[("student.arch", "resnet_e")]).student
    assert student.epochs == 3  # as a student's arguments the family is fine


@pytest.mark.parametrize(
    ("entry_points", "modules", "command", "expected"),
    [
        ({"methods": {"brokenkd": "no_such_module:M"}}, {}, ["plugins"], "'brokenkd' (no_such_module:M) of broken"),
        (
            {"noises": {"gaussian": "dup_noise:f"}},
            {"dup_noise.py": "def f(x, level, g):\n    return x\n"},
            ["plugins"],
            "noise type 'gaussian' is registered twice",
        ),  # fmt: skip
        (
            {"methods": {"brokenkd": "no_such_module:M"}},
            {},
            ["validate", "{space}", "--set", "brokenkd.x=1"],
            "does not load",
        ),  # fmt: skip
    ],
)
def test_broken_plugins_exit_2_with_one_line_naming_both_parties(
    tmp_path: Path, run_harness, plugin_subprocess_env, tiny_space: Path, entry_points, modules, command, expected
) -> None:
    env = plugin_subprocess_env("broken", entry_points, modules)
    args = [part.replace("{space}", str(tiny_space)) for part in command]
    result = run_harness(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "broken 0.1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    if command == ["plugins"]:
        listed = result.stdout
        assert "kd " in listed and "BROKEN" in listed and "snn-kd-harness" in listed  # the rest is listed
