"""The import graph of `harness`, `baselines` and `reports`, its layers, and its pictures in docs/ARCHITECTURE.md.

Every import statement counts, also those inside functions and under `TYPE_CHECKING`: a cycle
that only works because of definition order, or because an import was moved into a function,
is still a cycle. Plugins (the built-ins included) are reached through entry points, which no
import statement names; each registry's check is a plain function of the module that makes the
registry, so the edge to an interface is an import too.

    python scripts/module_graph.py            # prints the two Mermaid pictures
    python scripts/module_graph.py --write    # rewrites them in docs/ARCHITECTURE.md
    python scripts/module_graph.py --check    # exit 1 if docs/ARCHITECTURE.md is out of date

`tests/test_import_graph.py` asserts the graph has no cycle and that every module imports only
from its own layer or below (`LAYERS`), and `--check`s the document.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "baselines", "reports")
DOC = REPO / "docs" / "ARCHITECTURE.md"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "harness",
            "harness.errors",
            "harness.files",
            "harness.contract",
            "harness.registry",
            "harness.progress",
            "harness.provenance",
            "harness.tracking",
            "harness.ui_links",
        ),
    ),
    ("reports", ("reports",)),
    ("config base", ("harness.config", "harness.config.base", "harness.config.dotted", "harness.config.yaml")),
    (
        "plugin interfaces",
        (
            "harness.models",
            "harness.models.spikformer",
            "harness.noise",
            "harness.data",
            "harness.efficiency",
            "harness.attacks",
        ),
    ),
    ("trial config", ("harness.config.sections",)),
    ("trial machinery", ("harness.context", "harness.training")),
    ("teacher", ("harness.teacher",)),
    ("methods", ("harness.methods", "baselines")),
    (
        "resolution and the trial",
        (
            "harness.attacks.evaluate",
            "harness.config.resolve",
            "harness.config.space",
            "harness.evaluation",
            "harness.key_table",
            "harness.plugins",
            "harness.run_spec",
            "harness.trial",
        ),
    ),
    ("sweep", ("harness.sweep",)),
    ("entry points", ("harness.api", "harness.cli")),
)
"""Bottom to top: a module imports from its own layer or one below, never above. A layer names
modules and packages (a package stands for all its modules unless one of them is named elsewhere)."""

# The overview picture shows these packages as one box each; the rest of `harness` module by module.
COLLAPSED = (
    "harness.models",
    "harness.noise",
    "harness.data",
    "harness.methods",
    "harness.sweep",
    "baselines",
    "reports",
)


def modules() -> dict[str, Path]:
    """Every module of the three packages (a package by its `__init__`), by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from a.b import c` names `a.b.c` if that is a module)."""
    known = modules()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph.setdefault(module, set())
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
    return dict(graph)


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


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the most specific entry naming `module` or a package above it."""
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for number, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[0]):
                best = (len(name), number)
    if best is None:
        raise KeyError(f"{module} is in no layer of scripts/module_graph.py")
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every (module, imported) where the imported module sits in a higher layer."""
    return sorted((m, t) for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or not (itself included)."""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def _unit(module: str) -> str:
    return next((name for name in COLLAPSED if module == name or module.startswith(name + ".")), module)


def _reduced(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive reduction of an acyclic edge set: an edge goes when a longer path joins its ends."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    kept = set()
    for a, b in edges:
        others = [c for c in graph[a] if c != b]
        if not any(b in reachable(graph, c) for c in others):
            kept.add((a, b))
    return kept


def _node(name: str) -> str:
    return name.replace(".", "_")


def _mermaid(nodes: list[str], edges: set[tuple[str, str]], label: dict[str, str]) -> str:
    lines = ["```mermaid", "flowchart BT"]
    by_layer: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        by_layer[layer_of(node)].append(node)
    for number in sorted(by_layer):
        lines.append(f'  subgraph L{number}["{LAYERS[number][0]}"]')
        lines += [f'    {_node(node)}["{label.get(node, node)}"]' for node in sorted(by_layer[number])]
        lines.append("  end")
    lines += [f"  {_node(a)} --> {_node(b)}" for a, b in sorted(edges)]
    lines.append("```")
    return "\n".join(lines)


def overview() -> str:
    """The whole project, layer by layer; some packages as one box; edges transitively reduced."""
    graph = import_graph()
    edges = {(_unit(a), _unit(b)) for a, targets in graph.items() for b in targets}
    edges = {(a, b) for a, b in edges if a != b and a != "harness" and b != "harness"}
    nodes = sorted({node for edge in edges for node in edge})
    label = {name: f"{name}.*" for name in COLLAPSED}
    return _mermaid(nodes, _reduced(edges), label)


def sweep_picture() -> str:
    """The `harness.sweep` package module by module (what it imports from outside left out)."""
    graph = import_graph()
    inside = {m for m in graph if m.startswith("harness.sweep.")}
    edges = {(a, b) for a in inside for b in graph[a] if b in inside}
    label = {m: m.removeprefix("harness.sweep.") for m in inside}
    lines = _mermaid(sorted(inside), _reduced(edges), label).splitlines()
    # One layer only: drop the subgraph around it.
    return "\n".join(line for line in lines if not line.strip().startswith(("subgraph", "end")))


MARKERS = {
    "overview": ("<!-- module-graph:overview:begin -->", "<!-- module-graph:overview:end -->"),
    "sweep": ("<!-- module-graph:sweep:begin -->", "<!-- module-graph:sweep:end -->"),
}


def rendered(text: str) -> str:
    """`text` (the document) with both pictures regenerated between their markers."""
    pictures = {"overview": overview(), "sweep": sweep_picture()}
    for name, (begin, end) in MARKERS.items():
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + pictures[name] + "\n" + text[stop:]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite the pictures in {DOC.relative_to(REPO)}")
    action.add_argument("--check", action="store_true", help=f"exit 1 if {DOC.relative_to(REPO)} is out of date")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(overview() + "\n\n" + sweep_picture())
        return 0
    text = DOC.read_text()
    fresh = rendered(text)
    if args.check:
        if fresh != text:
            where = DOC.relative_to(REPO)
            print(f"{where} is out of date: run python scripts/module_graph.py --write", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
