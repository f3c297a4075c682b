"""The sweep reference (docs/sweeps.md): every example spec loads, and every key the
loader accepts is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node_dada import sweep

DOC = Path(__file__).resolve().parents[1] / "docs" / "sweeps.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_reference_has_one_example_per_kind() -> None:
    kinds = sorted(re.search(r"^kind: (\w+)", block, flags=re.M).group(1) for block in BLOCKS)
    assert kinds == sorted(sweep.KINDS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.split("\n")[0])
def test_every_example_spec_loads(block: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(block)
    spec = sweep.load_spec(path)
    assert spec.cells()


def test_every_accepted_key_is_documented() -> None:
    text = DOC.read_text()
    keys = (sweep._TOP_KEYS | sweep._DATA_KEYS | set().union(*sweep._CELL_KEYS.values())
            | set().union(*sweep._SECTION_KEYS.values()))
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert missing == []
