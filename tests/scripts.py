"""Load a script of ``benchmarks/`` as a module, for the tests that check what it
committed (the scripts are programs, not a package), and check a committed sweep's
table against its spec."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as module ``name`` (registered in ``sys.modules``, which
    dataclasses need; the folder is importable while it loads, for its neighbours)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def finished_sweep_rows(spec: Path, table: Path, *, budget_s: float) -> dict[str, dict[str, str]]:
    """The rows of a committed fit sweep's ``cells.csv``, by cell, after checking that
    they are exactly the cells of ``spec`` and that each finished on its CPU budget."""
    from node_dada.sweep import expand_grid, load_spec

    cells = {cell.id for cell in expand_grid(load_spec(spec).grid)}
    with table.open(newline="") as handle:
        rows = {row["cell"]: row for row in csv.DictReader(handle)}
    assert cells == set(rows)
    for cell, row in rows.items():
        assert row["status"] == "ok", (cell, row["error"])
        assert float(row["fit_cpu_s"]) >= budget_s, cell  # spent, not cut short
        assert float(row["test_mae_cm"]) > 0, cell
    return rows
