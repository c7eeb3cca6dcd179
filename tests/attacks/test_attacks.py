"""The attack registry, `eval.attacks` and what a method declares about its attacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.attacks import ATTACKS, AttackConfig, create_attack, list_attacks
from harness.attacks.evaluate import attack_evaluation
from harness.attacks.gradient import PGDConfig
from harness.cli import main
from harness.config.resolve import resolve_trial_config, trial_config
from harness.config.space import load_space
from harness.config.yaml import parse_override
from harness.contract import Capabilities
from harness.errors import HarnessInputError, PluginError
from harness.methods import METHODS
from harness.methods.base import uses_teacher
from harness.plugins import plugin_rows
from harness.run_spec import teacher_identity
from harness.teacher import teacher_key_of

BUILTINS = ["fgsm", "pgd", "square", "transfer"]


def test_the_built_ins_come_from_this_distributions_entry_points_and_harness_plugins_lists_them() -> None:
    assert list_attacks() == BUILTINS
    for name in BUILTINS:
        (provider,) = ATTACKS.providers(name)
        assert provider.distribution == "snn-kd-harness"
        ATTACKS.get(name)  # loads and passes the check
    assert [ATTACKS.get(name).needs_teacher for name in BUILTINS] == [False, False, False, True]
    rows, broken = plugin_rows()
    assert {row[1] for row in rows if row[0] == "attacks"} == set(BUILTINS) and not broken


def test_a_list_is_short_for_eps_and_the_default_is_no_attack(make_config) -> None:
    assert make_config("direct").eval.attacks == {}
    short = make_config("direct", **{"eval.attacks": {"fgsm": [0.03, 0.01], "pgd": [0.1]}})
    long = make_config("direct", **{"eval.attacks": {"fgsm": {"eps": [0.01, 0.03]}, "pgd": {"eps": [0.1]}}})
    assert short == long
    assert short.eval.attacks["fgsm"].eps == (0.01, 0.03)  # sorted
    pgd = short.eval.attacks["pgd"]
    assert isinstance(pgd, PGDConfig) and (pgd.steps, pgd.step_size, pgd.random_start) == (10, None, True)
    # The config round-trips through its dotted keys (a sweep's plan, Ray, MLflow params).
    assert trial_config(short.flat()) == short
    assert short.flat()["eval.attacks.pgd.steps"] == 10
    assert json.loads(json.dumps(short.model_dump(mode="json")))["eval"]["attacks"]["fgsm"] == {"eps": [0.01, 0.03]}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("eval.attacks={pgdd: [0.1]}", r"^--set eval.attacks: unknown attack 'pgdd'; expected one of: fgsm, pgd, "),
        ("eval.attacks.pgdd=[0.1]", r"^--set eval.attacks.pgdd: unknown attack 'pgdd'"),
        (
            "eval.attacks.pgd.stepz=3",
            r"^--set eval.attacks.pgd.stepz: attack 'pgd' has no option 'stepz'; expected one of: eps, random_start, "
            r"seed, step_size, steps$",
        ),
        ("eval.attacks={pgd: {stepz: 3}}", r"^--set eval.attacks: attack 'pgd' has no option 'stepz'"),
        (
            "eval.attacks.fgsm=[1.5]",
            r"^--set eval.attacks.fgsm: attack 'fgsm', option 'eps': every eps must be in \[0, 1\]",
        ),
        ("eval.attacks.fgsm=[-0.1]", r"^--set eval.attacks.fgsm: attack 'fgsm', option 'eps': every eps must be in "),
        (
            "eval.attacks.pgd.steps=many",
            r"^--set eval.attacks.pgd.steps: attack 'pgd', option 'steps': Input should be",
        ),
        ("eval.attacks.square.queries=0", r"^--set eval.attacks.square.queries: attack 'square', option 'queries': "),
        ("eval.attacks.pgd={steps: 3}", r"^--set eval.attacks.pgd: attack 'pgd' needs at least one eps$"),
        ("eval.attacks.fgsm=0.1", r"^--set eval.attacks.fgsm: attack 'fgsm' takes a list of eps or a mapping"),
    ],
)
def test_a_bad_attack_config_is_one_line_naming_the_key(tiny_space: Path, override: str, expected: str) -> None:
    with pytest.raises(HarnessInputError, match=expected) as err:
        resolve_trial_config(load_space(tiny_space), method="direct", overrides=[parse_override(override)])
    assert "\n" not in str(err.value)


def test_a_bad_attack_in_the_file_names_its_key_and_exits_2(tmp_path: Path, capsys) -> None:
    import yaml

    space = {"name": "bad", "methods": ["direct"], "fixed": {"dataset.name": "digits"}}
    space["eval"] = {"attacks": {"pgd": {"eps": [0.03], "stepz": 3}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: eval.attacks.pgd.stepz: attack 'pgd' has no option 'stepz'" in err


def test_attacks_are_refused_on_event_data(make_config) -> None:
    with pytest.raises(Exception, match="attack 'fgsm' perturbs images in \\[0, 1\\]; dataset 'digits-events'"):
        make_config("direct", **{"dataset.name": "digits-events", "eval.noise": {}, "eval.attacks": {"fgsm": [0.1]}})


def test_create_attack_validates_its_options() -> None:
    attack = create_attack("pgd", eps=[0.03], steps=4)
    assert attack.name == "pgd" and attack.config.steps == 4 and attack.config.eps == (0.03,)
    with pytest.raises(HarnessInputError, match=r"^eval.attacks.pgd.steps: attack 'pgd', option 'steps'"):
        create_attack("pgd", eps=[0.03], steps=0)
    with pytest.raises(HarnessInputError, match=r"^eval.attacks.nope: unknown attack 'nope'"):
        create_attack("nope", eps=[0.1])


def test_capabilities_name_the_attack_gradient_and_older_tags_read_as_surrogate() -> None:
    assert Capabilities().attack_gradient == "surrogate"
    assert METHODS.get("kd").capabilities.attack_gradient == "surrogate"
    assert METHODS.get("direct").capabilities.attack_gradient == "surrogate"
    conversion = METHODS.get("conversion").capabilities
    assert conversion.attack_gradient == "ann"
    assert json.loads(conversion.to_tag())["attack_gradient"] == "ann"
    assert Capabilities.from_tag(conversion.to_tag()) == conversion
    older = json.loads(conversion.to_tag())
    del older["attack_gradient"]  # a run logged before attacks existed
    assert Capabilities.from_tag(json.dumps(older)).attack_gradient == "surrogate"


def test_a_transfer_attack_makes_any_method_use_the_teacher(make_config, tiny_space: Path) -> None:
    from harness.sweep.plan import plan_sweep
    from harness.sweep.search import trial_settings
    from harness.sweep.teachers import teachers_needed

    plain = make_config("direct", **{"eval.attacks": {"pgd": [0.1]}})
    transfer = make_config("direct", **{"eval.attacks": {"transfer": [0.1]}})
    assert not uses_teacher(plain) and teacher_identity(plain) is None
    assert uses_teacher(transfer) and teacher_identity(transfer) == teacher_key_of(transfer)
    assert uses_teacher(make_config("kd"))
    # A sweep trains the teachers up front for every method whose config asks for it.
    assert set(teachers_needed(plan_sweep(tiny_space))) == {"kd"}
    plan = plan_sweep(tiny_space, [("eval.attacks", {"transfer": [0.1]})])
    assert set(teachers_needed(plan)) == {"kd", "direct"}
    # A search trial that measures only the clean accuracy runs no attack.
    settings = trial_settings(plan.of("direct"), "clean")
    assert plan.of("direct").trial_config(settings).eval.attacks == {}
    assert plan.of("direct").trial_config({}).eval.attacks["transfer"].eps == (0.1,)


PLUGIN = '''
import torch
from harness.attacks import Attack, AttackConfig


class SignNoiseConfig(AttackConfig):
    seed: int = 0


class SignNoise(Attack):
    """Random +-eps per pixel: a plugin's attack with an option of its own."""

    options = SignNoiseConfig

    def perturb(self, target, images, labels, eps, indices):
        g = torch.Generator().manual_seed(self.config.seed)
        signs = torch.randint(0, 2, images.shape, generator=g).to(images) * 2 - 1
        return (images + eps * signs).clamp(0, 1)


class TooFar(SignNoise):
    def perturb(self, target, images, labels, eps, indices):
        return (images + 2 * eps).clamp(0, 1)


class NotAnAttack:
    pass
'''


def test_a_plugin_attack_is_found_configured_and_checked(install_plugin, direct_student) -> None:
    install_plugin(
        "sign-noise",
        {
            "attacks": {
                "sign_noise": "sign_noise:SignNoise",
                "too_far": "sign_noise:TooFar",
                "bad": "sign_noise:NotAnAttack",
            }
        },
        {"sign_noise.py": PLUGIN},
    )
    assert {"sign_noise", "too_far", "bad"} <= set(list_attacks())
    (provider,) = ATTACKS.providers("sign_noise")
    assert provider.distribution == "sign-noise"
    assert issubclass(ATTACKS.get("sign_noise").options, AttackConfig)
    trained = direct_student
    config = trained.with_attacks({"sign_noise": {"eps": [0.1], "seed": 3}})
    assert config.eval.attacks["sign_noise"].seed == 3
    predictions: dict[str, torch.Tensor] = {}
    metrics = attack_evaluation(trained.method, trained.data, config, predictions)
    assert 0 <= metrics["attack/sign_noise/0.1"] <= 1 and "attack/sign_noise/0.1" in predictions
    with pytest.raises(PluginError, match=r"^attack 'too_far' \(entry point 'too_far' .* of sign-noise 0.1\) moved"):
        attack_evaluation(trained.method, trained.data, trained.with_attacks({"too_far": [0.1]}))
    with pytest.raises(PluginError, match="is not a valid attack: expected a subclass of harness.attacks.Attack"):
        ATTACKS.get("bad")
    rows, broken = plugin_rows()
    assert ("attacks", "sign_noise") in {(row[0], row[1]) for row in rows} and len(broken) == 1
