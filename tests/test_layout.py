"""The package's import graph: no cycles, and the maths layer depends on nothing above it.

The graph is read from the source (every ``import``, also those inside functions),
so an import that only runs on one code path still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "node_dada"
#: what the maths layer may import from the rest of the package: the error types
#: and the allocator helpers, which import nothing of the package themselves
BASE = {"node_dada.errors", "node_dada.libc"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of node_dada it imports}`` (a package's own submodules that it
    imports count; a module importing its parent package does not, Python has loaded it)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "node_dada.models.dada_module" in graph  # the graph covers the package
    assert "node_dada.models.registry" in graph["node_dada.models.dada_module"]
    assert cycles(graph) == []


def test_the_maths_layer_imports_nothing_above_it():
    graph = import_graph()
    maths = [name for name in graph if name.startswith("node_dada.diffusion")]
    assert len(maths) > 5
    for name in maths:
        above = {t for t in graph[name] if not t.startswith("node_dada.diffusion")} - BASE
        assert not above, (name, above)
    for path in (PACKAGE / "diffusion").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert not imported & {"lightning", "pytorch_lightning"}, path


def test_the_base_modules_import_nothing_of_the_package():
    graph = import_graph()
    for name in BASE:
        assert graph[name] == set(), (name, graph[name])


def test_the_safe_loader_and_the_registry_load_without_lightning():
    import subprocess
    import sys

    code = ("import sys, node_dada.models.weights, node_dada.models.registry; "
            "print(any(m.split('.')[0] == 'lightning' for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "False"
