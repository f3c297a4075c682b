"""Every notebook in notebooks/ runs top to bottom (nbclient) on tiny inputs.

The notebooks read their parameters from environment variables (their first
code cell): here a 32 x 32 crop, no checkpoint (a tiny model is trained in the
notebook) and the ``cells.csv`` of a tiny solver sweep.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from node_dada.commands.sweep import main as sweep_main

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def tiny_cells(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "kind": "solver", "kernels": "never",
        "data": {"dataset": "motorcycle", "scale": 8, "crop_size": 32, "crops": [200]},
        "fixed": {"t_end": 4.8},
        "grid": [{"method": "discrete", "step_size": 0.24},
                 {"method": "euler", "step_size": [0.24, 0.48]},
                 {"method": "rkc", "step_size": 2.4},
                 {"method": "bosh3", "rtol": 1e-3, "atol": 1e-5, "max_nfe": 3}],
    }))
    assert sweep_main([str(spec), "--out", str(root / "out"), "--no-progress"]) == 0
    return root / "out" / "cells.csv"


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "learned_weights.ipynb", "solver_comparison.ipynb"]


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_on_tiny_inputs(name, tiny_cells, monkeypatch):
    monkeypatch.setenv("NODE_DADA_CELLS", str(tiny_cells))
    monkeypatch.setenv("NODE_DADA_CHECKPOINT", "")
    monkeypatch.setenv("NODE_DADA_CROP", "32")
    monkeypatch.setenv("NODE_DADA_FUSED", "never")  # no JIT compilation in a short test
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
