"""The committed diagnostics of learned coefficients (results/edge_oracle) still
come out of their command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "middlebury0506").is_dir(),
                    reason=f"shared Middlebury data not found at {SHARED}")
def test_edge_oracle_rows_reproduce(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import edge_oracle

    assert edge_oracle.main(["--out", str(tmp_path), "--scales", "8", "--limit", "1"]) == 0
    fresh = (tmp_path / "README.md").read_text()
    committed = (ROOT / "results" / "edge_oracle" / "README.md").read_text()
    row = re.search(r"^\| x8 \| Bowling1/view1 \|.*$", fresh, re.MULTILINE).group(0)
    assert row in committed.splitlines(), row
    sys.modules.pop("edge_oracle", None)
