"""The core sections and `TrialConfig` (`harness.config.sections`): frozen, a method's own
section named after it, a family's arguments beside the teacher's training keys, and pickling
without any workaround."""

from __future__ import annotations

import pickle

import pytest

from harness.config.resolve import build_trial_config, trial_config
from harness.config.sections import TeacherConfig, TrialConfig


def test_config_is_frozen(make_config) -> None:
    config = make_config()
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3  # type: ignore[misc]


def test_flat_round_trip(make_config) -> None:
    config = make_config()
    flat = config.flat()
    assert flat["kd.temperature"] == 4.0
    assert flat["eval.noise"] == {"gaussian": [0.1], "salt_pepper": [0.05]}
    assert trial_config(flat) == config


def test_the_methods_section_is_its_options_and_dumps_under_its_name(make_config) -> None:
    config = make_config("kd", **{"kd.alpha": 0.3})
    assert config.options is config.kd and config.kd.alpha == 0.3
    dumped = config.model_dump(mode="json")
    assert "options" not in dumped and dumped["kd"]["alpha"] == 0.3
    assert list(dumped)[-1] == "kd"  # after the core sections, as a file reads
    direct = make_config("direct")
    assert "kd" not in direct.model_dump() and direct.options.tet is False
    with pytest.raises(AttributeError):
        direct.kd  # noqa: B018 - another method's section is not this trial's


def test_the_teachers_family_arguments_and_training_keys_sit_side_by_side_in_a_dump(make_config) -> None:
    config = make_config("kd")
    teacher = config.teacher
    assert isinstance(teacher, TeacherConfig) and teacher.arch == "resnet"
    assert teacher.model.arguments() == {"depth": 8, "width": 8}  # the family's own, whatever they are
    assert teacher.epochs == 4 and teacher.seed_for(3) == 3
    assert config.model_dump()["teacher"] == {
        "arch": "resnet",
        "depth": 8,
        "width": 8,
        "epochs": 4,
        "optimizer": "sgd",
        "lr": 0.05,
        "seed": None,
        "checkpoint": None,
    }


def test_options_is_no_key_of_a_file() -> None:
    with pytest.raises(Exception, match="options"):
        build_trial_config({"method": "kd", "options": {"alpha": 0.3}})


def test_a_trial_config_pickles_as_it_is_a_plugins_section_too(lax_plugin) -> None:
    lax_plugin()
    config = trial_config({"method": "lax", "lax.rate": 3.0})
    assert type(config) is TrialConfig  # one class for every method: none is made at run time
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.lax.rate == 3.0 and type(again.options).__name__ == "LaxConfig"
    assert "__reduce__" not in TrialConfig.__dict__


def test_a_tree_naming_an_unknown_method_is_refused_at_method() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        build_trial_config({"method": "distill"})
    (error,) = info.value.errors()
    assert error["loc"] == ("method",) and "unknown method 'distill'" in error["msg"]
