"""The import graph of ``deforum/`` has no cycle, function-local imports included (DESIGN section 3).

The graph is built from the source with ``ast``, so a cycle hidden inside a function body counts as much as one
at module level. Edges:

- ``import P.N`` is an edge to ``P.N`` (the module named, not its parents: a parent package's ``__init__``
  running first is not an edge);
- ``from P import N`` is an edge to ``P.N`` where ``P.N`` is a module, otherwise an edge to ``P``;
- relative imports are resolved against the importing module's package.

Only modules inside ``deforum`` are nodes; everything else (numpy, torch, the standard library) is ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "deforum"


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package_dir: Path) -> dict[str, Path]:
    return {_module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, dict[str, list[int]]]:
    """module -> {imported module of the package -> line numbers of the imports}."""
    modules = _modules(package_dir)
    graph: dict[str, dict[str, list[int]]] = {}
    for name, path in modules.items():
        edges: dict[str, list[int]] = {}
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (_resolve_relative(name, is_package, node.level, node.module) if node.level
                        else node.module or "")
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target in modules and target != name:
                    lines = edges.setdefault(target, [])
                    if node.lineno not in lines:
                        lines.append(node.lineno)
        graph[name] = edges
    return graph


def strongly_connected_components(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return found


def _describe(graph: dict[str, dict[str, list[int]]], component: list[str]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for module in component:
        for target, linenos in sorted(graph[module].items()):
            if target in members:
                lines.append(f"    {module} -> {target} (line {', '.join(map(str, linenos))})")
    return "\n".join(lines)


def test_graph_sees_every_module_and_function_local_imports():
    graph = import_graph()
    assert "deforum.errors" in graph and "deforum.models" in graph and "deforum.keyframes" in graph
    # a function-local import is an edge (notebook.py imports video inside functions)
    assert "deforum.video" in graph["deforum.notebook"]


def test_the_edge_rules_on_a_made_up_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg import a\n",
        "a.py": "import os\nfrom pkg.sub import c, helper\n\ndef f():\n    from . import b\n",
        "b.py": "import pkg.sub.c\n",
        "sub/__init__.py": "helper = 1\n",
        "sub/c.py": "from ..a import f\nfrom .. import b\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert {m: sorted(e) for m, e in graph.items()} == {
        "pkg": ["pkg.a"],
        "pkg.a": ["pkg.b", "pkg.sub", "pkg.sub.c"],  # c is a module; helper is a name of pkg.sub
        "pkg.b": ["pkg.sub.c"],  # not pkg nor pkg.sub: a parent's __init__ running first is no edge
        "pkg.sub": [],
        "pkg.sub.c": ["pkg.a", "pkg.b"],
    }
    assert graph["pkg.a"]["pkg.b"] == [5]  # the function-local import counts
    components = strongly_connected_components(graph)
    assert components == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert "pkg.sub.c -> pkg.a (line 1)" in _describe(graph, components[0])


def test_no_import_cycles():
    graph = import_graph()
    components = strongly_connected_components(graph)
    assert not components, "import cycles in deforum/:\n" + "\n".join(_describe(graph, c) for c in components)


def test_errors_imports_nothing_of_deforum():
    assert import_graph()["deforum.errors"] == {}


def test_keyframes_imports_only_errors():
    # the settings pass keyframes the schedule names and the frame limit as arguments
    graph = import_graph()
    assert set(graph["deforum.keyframes"]) <= {"deforum.errors"}, sorted(graph["deforum.keyframes"])


def test_prompts_imports_only_errors_and_keyframes():
    # DESIGN section 3 says "only errors"; a sub-prompt weight in `backticks` is an expression of the
    # schedule grammar, so prompts also uses keyframes' evaluator (both are pure: neither reaches the settings)
    graph = import_graph()
    assert set(graph["deforum.prompts"]) <= {"deforum.errors", "deforum.keyframes"}, sorted(graph["deforum.prompts"])
