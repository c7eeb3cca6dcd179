"""`harness keys`: every dotted key a space file or `--set` accepts (`harness.key_table`)."""

from __future__ import annotations

from harness.key_table import key_table


def test_key_table_lists_core_family_method_and_space_file_keys(lax_plugin) -> None:
    lax_plugin()
    rows, broken = key_table()
    assert not broken
    table = {(key, owner): (kind, default) for key, kind, default, owner, _ in rows}
    plan = {key: changes for key, _, _, _, changes in rows}
    assert plan["kd.alpha"] and plan["search.num_samples"] and plan["methods"] and plan["eval.noise"]
    assert not plan["resources.cpu"] and not plan["name"]
    assert table["train.lr", "harness"] == ("float > 0", "0.01")
    assert table["snn.time_steps", "harness"] == ("int [1, 1024]", "4")
    assert table["snn.reset", "harness"] == ("hard|soft", "hard")
    assert table["eval.time_steps", "harness"] == ("list[int [1, 1024]]", "[1, 2, 4, 8]")
    assert table["teacher.epochs", "harness"] == ("int >= 0", "8")  # 0: a checkpoint used as it is
    assert "resnet" in table["student.arch", "harness"][0].split("|")
    # A family's arguments once per family, with that family's (or the role's) defaults.
    assert table["student.depth", "model resnet: snn-kd-harness"] == ("int", "8")
    assert table["teacher.depth", "model resnet: snn-kd-harness"] == ("int", "18")  # the teacher's ResNet-18
    assert table["student.depth", "model vgg: snn-kd-harness"] == ("int", "11")
    assert table["kd.alpha", "method kd: snn-kd-harness"] == ("float [0, 1]", "0.5")
    assert table["conversion.levels", "method conversion: snn-kd-harness"][1] == "8"
    assert table["lax.rate", "method lax: lax"] == ("float", "1.0")  # a plugin's keys, marked as its own
    assert table["search.scheduler.reduction_factor", "space file"] == ("float > 1", "2.0")
    assert table["resources.gpu", "space file"] == ("float >= 0", "0.0")
    assert table["name", "space file"][1] == "(required)"
    keys = [key for key, *_ in rows]
    assert not any(key.startswith(("fixed", "space.", "student.arch.")) for key in keys)
