"""The package's import graph: no cycles, and the maths layer depends on nothing above it;
every argparse parser lives in ``node_dada/commands/``.

The graph is read from the source (every ``import``, also those inside functions),
so an import that only runs on one code path still counts. Imports inside an
``if __name__ == "__main__":`` block do not: such an entry shim (``python -m
node_dada.benchmark`` calling ``node_dada.commands.benchmark.main``) runs only when
its file is the program, never when the module is imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "node_dada"
#: what the maths layer may import from the rest of the package: the error types
#: and the allocator helpers, which import nothing of the package themselves
BASE = {"node_dada.errors", "node_dada.libc"}
COMMANDS = PACKAGE / "commands"
#: the argparse parser classes a module could build or subclass
PARSERS = {"ArgumentParser", "OneLineParser"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_entry_shim(node: ast.AST) -> bool:
    """Whether ``node`` is an ``if __name__ == "__main__":`` block."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    return (len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides)
            and any(isinstance(side, ast.Constant) and side.value == "__main__"
                    for side in sides))


def nodes_on_import(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those inside an entry shim (``ast.walk`` without them)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node) if not is_entry_shim(child))


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of node_dada it imports}`` (a package's own submodules that it
    imports count; a module importing its parent package does not, Python has loaded it)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in nodes_on_import(ast.parse(path.read_text())):
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


def _name(node: ast.AST) -> str:
    """``ArgumentParser`` for ``ArgumentParser`` and ``argparse.ArgumentParser``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def test_the_entry_shims_are_left_out_of_the_graph():
    tree = ast.parse("import a\nif __name__ == '__main__':\n    import b\n"
                     "if '__main__' == __name__:\n    import c\nif x:\n    import d\n")
    imported = {alias.name for node in nodes_on_import(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    assert imported == {"a", "d"}
    graph = import_graph()
    assert "node_dada.commands.benchmark" not in graph["node_dada.benchmark"]
    assert "node_dada.evaluation" in graph["node_dada.benchmark"]
    assert "node_dada.evaluation" in graph["node_dada.commands.benchmark"]


def test_no_module_outside_commands_defines_an_argparse_parser():
    """argparse (import, parser, subclass) only in node_dada/commands/; the library modules
    reach the commands only from their entry shim. LightningCLI's own parser (training.py
    adds arguments to it) is jsonargparse's and allowed."""
    library = [path for path in PACKAGE.rglob("*.py") if COMMANDS not in path.parents]
    assert len(library) > 20 and PACKAGE / "benchmark.py" in library
    found = []
    for path in library:
        where = path.relative_to(ROOT)
        for node in nodes_on_import(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [f"{where}: import {alias.name}" for alias in node.names
                          if alias.name.split(".")[0] == "argparse"
                          or alias.name.startswith("node_dada.commands")]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                module = node.module or ""
                if module.split(".")[0] == "argparse" or module.startswith("node_dada.commands"):
                    found.append(f"{where}: from {module} import ...")
            elif isinstance(node, ast.Call) and _name(node.func) in PARSERS:
                found.append(f"{where}:{node.lineno}: constructs {_name(node.func)}")
            elif isinstance(node, ast.ClassDef):
                found += [f"{where}:{node.lineno}: {node.name} subclasses {_name(base)}"
                          for base in node.bases if _name(base) in PARSERS]
    assert found == []


def test_every_command_module_has_a_main_that_returns_an_int():
    from node_dada.cli import _COMMANDS

    modules = sorted(path for path in COMMANDS.glob("*.py")
                     if path.name not in ("__init__.py", "args.py"))
    assert {module_name(path) for path in modules} >= {
        module for module, _ in _COMMANDS.values()}
    for path in modules:
        tree = ast.parse(path.read_text())
        mains = [node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name == "main"]
        assert len(mains) == 1, path.name
        assert mains[0].returns is not None and ast.unparse(mains[0].returns) == "int", path.name


def test_the_package_cites_only_documents_in_the_repository():
    """Docstrings and comments point to docs/ files that exist, never to notes that are
    not in the repository (design or style notes kept elsewhere, issue numbers)."""
    repository = PACKAGE.parent
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for cited in re.findall(r"docs/[\w-]+\.md", text):
            assert (repository / cited).is_file(), (path, cited)
        for pattern in (r"\bDESIGN\.md\b", r"\bSTYLE\.md\b", r"\b[Ii]ssue \d+"):
            assert not re.search(pattern, text), (path, pattern)
