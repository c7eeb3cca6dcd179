"""The import graph of `harness`, `baselines` and `reports` has no cycle, and reports stay light.

Every import statement counts, also those inside functions and under `TYPE_CHECKING`: a cycle
that only works because of definition order, or because an import was moved into a function,
is still a cycle. Plugins (the built-ins included) are reached through entry points, which no
import statement names.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "baselines", "reports")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from a.b import c` names `a.b.c` if that is a module)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if found is not None and found != module:
                    graph[module].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the packages
    assert cycles(graph) == []


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_and_the_contract_are_leaves_and_harness_never_imports_its_plugins() -> None:
    graph = import_graph()
    assert graph.get("harness.registry", set()) <= {"harness.errors"}
    assert graph.get("harness.contract", set()) == set()
    for module, imported in graph.items():
        if module.startswith("harness"):
            assert not any(name.startswith("baselines") for name in imported), module
            assert not any(name.startswith("reports") for name in imported) or module == "harness.cli", module


def test_reports_reach_neither_the_training_stack_nor_the_sweep() -> None:
    reached = set().union(*(_reachable(import_graph(), m) for m in _modules() if m.startswith("reports")))
    heavy = {
        "harness.config",
        "harness.trial",
        "harness.training",
        "harness.methods",
        "harness.models",
        "harness.sweep",
    }
    assert not {m for m in reached if any(m == h or m.startswith(h + ".") for h in heavy)}
