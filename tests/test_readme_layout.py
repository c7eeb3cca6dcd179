"""The README's Layout section names every module and package of `harness`, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _layout_block() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def test_every_harness_module_is_in_the_layout_and_every_named_file_exists() -> None:
    block = _layout_block()
    named = set(re.findall(r"[\w/]+\.py|[\w]+/", block))
    for path in sorted((REPO / "harness").rglob("*.py")):
        relative = path.relative_to(REPO / "harness")
        if path.name == "__init__.py":
            if relative.parent != Path("."):
                assert f"{relative.parent.name}/" in named, f"harness/{relative.parent}/ is not in the README's Layout"
            continue
        shown = path.name in named or any(path.name in line for line in block.splitlines())
        assert shown, f"harness/{relative} is not in the README's Layout"
    ours = [REPO / folder for folder in ("harness", "baselines", "reports", "scripts", "benchmarks", "examples")]
    for name in (n for n in named if n.endswith(".py")):
        found = [path for folder in ours for path in folder.rglob(Path(name).name)]
        assert found, f"the README's Layout names {name}, which does not exist"
