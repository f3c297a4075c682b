"""results/depth_unit: the measurement behind learning-free ``upsample``'s default
depth divisor. The default suite checks that docs/design.md quotes the committed table
and reruns one image; the whole rerun (about 4 minutes) is ``make test-slow``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "depth_unit"
DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "middlebury0506" / "ThirdSize").is_dir(),
                                reason="../shared/data/middlebury0506 is not here")


def script():
    return load_benchmark('depth_unit')


def committed() -> dict[str, list[str]]:
    rows = {}
    for line in (RESULTS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and re.fullmatch(r"\d+\.\d{4}", cells[-1]):
            rows[cells[0]] = cells[1:]
    return rows


def test_the_design_notes_quote_the_committed_table():
    rows = committed()
    design = (ROOT / "docs" / "design.md").read_text()
    paragraph = design[design.index("The depth scale is not only a unit"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    quoted = re.findall(r"\b\d\.\d{4}\b", paragraph)
    assert len(quoted) >= 12
    values = {value for row in rows.values() for value in row}
    assert set(quoted) <= values
    # the default does not depend on the unit the depth is stored in
    default = rows["median / 2 (the default)"]
    assert rows["the default, depth in metres"] == default
    assert rows["the default, depth in feet"] == default


@needs_data
def test_one_image_reproduces_its_unit_invariance():
    """The default on one validation image gives the same map in mm and in metres, up to
    the float32 rounding the committed table reports."""
    import numpy as np

    from node_dada import upsample
    from node_dada.benchmark import load_scenes

    module = script()
    scenes = load_scenes("middlebury", root=[DATA / "middlebury0506" / "ThirdSize"],
                         split="val")
    scene = scenes.load(0)
    depth, source = module.low_resolution(scene.depth[:192, :256], 8)
    guide = scene.guide[:192, :256]
    millimetres = upsample(guide, source, scale=8)
    metres = upsample(guide, source * 1e-3, scale=8) / 1e-3
    gap = float(np.abs(metres - millimetres).max() / np.abs(millimetres).max())
    reported = float(re.search(r"is (\S+) of the frame",
                               (RESULTS / "README.md").read_text()).group(1))
    assert gap <= reported


@needs_data
@pytest.mark.slow
def test_the_committed_table_reproduces(tmp_path):
    script().main(["--out", str(tmp_path)])
    text = (tmp_path / "README.md").read_text()
    fresh = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| ") and re.search(r"\d\.\d{4} \|$", line)}
    for name, values in committed().items():
        assert fresh[name].strip("|").split("|")[1:] == [f" {v} " for v in values], name
