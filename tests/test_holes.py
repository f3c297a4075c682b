"""No-data regions kept as no-data: ``upsample(max_fill=...)`` and ``--max-fill``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import node_dada
from node_dada.errors import InputValueError


def holed_scene(scale=4):
    rng = np.random.default_rng(0)
    guide = rng.integers(0, 256, size=(16 * scale, 20 * scale, 3), dtype=np.uint8)
    source = np.full((16, 20), 1500.0) + rng.uniform(0, 50, (16, 20))
    source[4:12, 6:14] = np.nan  # an 8 x 8 hole
    return guide, source


def test_default_fills_every_hole():
    guide, source = holed_scene()
    assert np.isfinite(node_dada.upsample(guide, source, scale=4, num_iter=50)).all()


@pytest.mark.parametrize("distance, kept", [(0, 8), (2, 4), (10, 0)])
def test_max_fill_keeps_holes_beyond_the_distance(distance, kept):
    guide, source = holed_scene()
    filled = node_dada.upsample(guide, source, scale=4, num_iter=50)
    out = node_dada.upsample(guide, source, scale=4, num_iter=50, max_fill=distance)
    hole = ~np.isfinite(out)
    # the hole left is the set of source pixels farther than `distance` from data
    assert hole.sum() == (kept * 4) ** 2
    np.testing.assert_array_equal(out[~hole], filled[~hole])


def test_max_fill_on_tensors_and_fractional_ratios():
    guide, source = holed_scene()
    out = node_dada.upsample(torch.from_numpy(guide).permute(2, 0, 1)[None].float() / 255,
                             torch.from_numpy(source)[None, None], scale=4, num_iter=50,
                             max_fill=0)
    assert int(torch.isnan(out).sum()) == 32 * 32
    small = source[:15, :18]  # 15 x 18 under 40 x 48: ratio 8/3
    fractional = node_dada.upsample(guide[:40, :48], small, max_fill=0)
    hole = np.isnan(fractional)
    # rows/cols 4..11 and 6..13 of the source are the hole, at 8/3 guide pixels each
    assert hole[16, 24] and not hole[2, 2] and 0.15 < hole.mean() < 0.3


@pytest.mark.parametrize("value", [-1, float("nan"), "far", True])
def test_bad_max_fill_is_refused(value):
    guide, source = holed_scene()
    with pytest.raises(InputValueError, match="max_fill"):
        node_dada.upsample(guide, source, scale=4, max_fill=value)


def test_command_line_writes_the_mask(tmp_path):
    import cv2

    from node_dada.cli import main

    guide, source = holed_scene()
    cv2.imwrite(str(tmp_path / "guide.png"), guide)
    cv2.imwrite(str(tmp_path / "depth.png"), np.nan_to_num(source).astype(np.uint16))
    assert main(["upsample", "--guide", str(tmp_path / "guide.png"), "--source",
                 str(tmp_path / "depth.png"), "--scale", "4", "--max-fill", "1"]) == 0
    depth = cv2.imread(str(tmp_path / "depth_x4.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(tmp_path / "depth_x4_mask.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and mask.dtype == np.uint8
    assert ((mask == 0) == (depth == 0)).all() and (mask == 0).sum() == (6 * 4) ** 2


def test_command_line_says_when_much_of_the_output_was_filled_from_afar(tmp_path, capsys):
    import cv2

    from node_dada.cli import main

    guide, source = holed_scene()
    cv2.imwrite(str(tmp_path / "guide.png"), guide)
    cv2.imwrite(str(tmp_path / "depth.png"), np.nan_to_num(source).astype(np.uint16))
    argv = ["upsample", "--guide", str(tmp_path / "guide.png"), "--source",
            str(tmp_path / "depth.png"), "--scale", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5.0% of the output lies more than 2 source pixels from a measurement" in out
    assert "--max-fill" in out
    assert main([*argv, "--max-fill", "1", "--out", str(tmp_path / "kept.png")]) == 0
    assert "note:" not in capsys.readouterr().out
