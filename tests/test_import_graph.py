"""The import graph of `harness`, `baselines` and `reports`: no cycle, no upward import, every
registry's check an import the graph sees, reports kept light, and docs/ARCHITECTURE.md's pictures
up to date. The walker and the layers are `scripts/module_graph.py`'s."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("module_graph", REPO / "scripts" / "module_graph.py")
assert _spec is not None and _spec.loader is not None
module_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(module_graph)


def test_the_import_graph_has_no_cycle() -> None:
    graph = module_graph.import_graph()
    assert len(graph) > 60  # the walk found the packages
    assert module_graph.cycles(graph) == []


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    assert module_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_from_its_own_layer_or_below() -> None:
    graph = module_graph.import_graph()
    for module in graph:
        module_graph.layer_of(module)  # every module has a layer (a new one must be placed)
    assert module_graph.upward_imports(graph) == []
    # The teacher is below the methods that distil from it, and below the sweep and the trial.
    teacher = graph["harness.teacher"]
    assert not {m for m in teacher if m.startswith(("harness.methods", "harness.sweep", "harness.trial"))}


def test_the_layer_check_sees_an_upward_import() -> None:
    assert module_graph.upward_imports({"harness.teacher": {"harness.methods.kd"}}) == [
        ("harness.teacher", "harness.methods.kd")
    ]


def _registries() -> list[tuple[str, ast.Call]]:
    found = []
    for module, path in module_graph.modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry":
                found.append((module, node))
    return found


def test_every_registry_checks_its_entries_with_a_function_its_module_defines_or_imports() -> None:
    """A check named by a string (resolved on first use) would be an edge the graph cannot see."""
    registries = _registries()
    assert {module for module, _ in registries} == {
        "harness.methods.base",
        "harness.models.args",
        "harness.data.entry",
        "harness.noise",
        "harness.models.encoders",
        "harness.data.augment",
        "harness.attacks",
    }
    for module, call in registries:
        check = call.args[2] if len(call.args) > 2 else next(k.value for k in call.keywords if k.arg == "check")
        assert isinstance(check, ast.Name), f"{module}: the check must be a function, not {ast.dump(check)}"
        tree = ast.parse(module_graph.modules()[module].read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        assert check.id in defined | imported, module


def test_the_registry_and_the_contract_are_leaves_and_harness_never_imports_its_plugins() -> None:
    graph = module_graph.import_graph()
    assert graph.get("harness.registry", set()) <= {"harness.errors"}
    assert graph.get("harness.contract", set()) == set()
    for module, imported in graph.items():
        if module.startswith("harness"):
            assert not any(name.startswith("baselines") for name in imported), module
            assert not any(name.startswith("reports") for name in imported) or module == "harness.api", module


def test_reports_reach_neither_the_training_stack_nor_the_sweep() -> None:
    graph = module_graph.import_graph()
    reached = set().union(*(module_graph.reachable(graph, m) for m in graph if m.startswith("reports")))
    heavy = {
        "harness.config",
        "harness.trial",
        "harness.training",
        "harness.methods",
        "harness.models",
        "harness.sweep",
    }
    assert not {m for m in reached if any(m == h or m.startswith(h + ".") for h in heavy)}


def test_the_architecture_document_shows_the_graph_of_this_code() -> None:
    assert module_graph.main(["--check"]) == 0, "run: python scripts/module_graph.py --write"
