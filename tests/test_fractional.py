"""Non-integer guide/source ratios (node_dada.diffusion.footprint and
``upsample(scale=None | float)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import node_dada
from node_dada.data.motorcycle import load_motorcycle
from node_dada.diffusion.footprint import (
    footprint_adjust,
    footprint_matrix,
    footprint_mean,
    source_ratio,
)
from node_dada.errors import ShapeError


def footprint_source(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NaN-aware footprint means of ``depth`` on a ``size`` grid (the real sensor)."""
    valid = np.isfinite(depth)
    rows = footprint_matrix(size[0], depth.shape[0]).numpy()
    cols = footprint_matrix(size[1], depth.shape[1]).numpy()
    total = rows @ np.where(valid, depth, 0.0) @ cols.T
    weight = rows @ valid.astype(np.float64) @ cols.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0.5, total / weight, np.nan)


@pytest.fixture(scope="module")
def motorcycle():
    guide, depth = load_motorcycle()
    return guide[:240, 120:480], depth[:240, 120:480].astype(np.float64)


def test_footprint_rows_are_averages_and_the_adjustment_is_exact():
    rows = footprint_matrix(3, 8)
    torch.testing.assert_close(rows.sum(1), torch.ones(3, dtype=torch.float64))
    assert float(rows[0, 2]) == pytest.approx(2 / 3 / (8 / 3))  # pixel 2 is 2/3 inside
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 16, 24, generator=gen, dtype=torch.float64)
    source = torch.rand(2, 1, 6, 9, generator=gen, dtype=torch.float64)
    mask = torch.rand(source.shape, generator=gen) > 0.2
    fixed = footprint_adjust(image, source, mask)
    means = footprint_mean(fixed, footprint_matrix(6, 16), footprint_matrix(9, 24))
    torch.testing.assert_close(means[mask], source[mask], rtol=0, atol=1e-12)
    untouched = footprint_mean(image, footprint_matrix(6, 16), footprint_matrix(9, 24))
    torch.testing.assert_close(means[~mask], untouched[~mask], rtol=0, atol=1e-12)


def test_fractional_ratio_is_consistent_and_as_good_as_its_integer_neighbours(motorcycle):
    guide, depth = motorcycle
    valid = np.isfinite(depth)
    errors = {}
    for size in ((90, 135), (80, 120), (120, 180)):  # ratios 8/3, 3, 2
        source = footprint_source(depth, size)
        out = node_dada.upsample(guide, source, scale=None)
        assert out.shape == depth.shape
        errors[size] = np.abs(out - depth)[valid].mean()
        means = footprint_source(out, size)
        ok = np.isfinite(source)
        np.testing.assert_allclose(means[ok], source[ok], rtol=1e-4)
    # 8/3 sits between x2 and x3: resampling to the integer grid costs no more than a
    # coarser integer ratio would
    assert errors[(90, 135)] < errors[(80, 120)]


def test_integer_shapes_take_the_integer_path_to_the_bit(motorcycle):
    guide, depth = motorcycle
    source = footprint_source(depth, (30, 45))
    assert np.array_equal(node_dada.upsample(guide, source, scale=None),
                          node_dada.upsample(guide, source, scale=8))


def test_a_given_fractional_scale_must_match_the_shapes(motorcycle):
    guide, depth = motorcycle
    source = footprint_source(depth, (90, 135))
    out = node_dada.upsample(guide, source, scale=8 / 3)
    assert out.shape == guide.shape[:2]
    with pytest.raises(ShapeError, match="scale 2.5"):
        node_dada.upsample(guide, source, scale=2.5)


@pytest.mark.parametrize("guide_hw, source_hw, phrase", [
    ((240, 360), (90, 100), "in height"),
    ((240, 360), (300, 400), "at most"),
])
def test_ratios_that_cannot_be_read_are_refused(guide_hw, source_hw, phrase):
    guide = np.zeros((*guide_hw, 3), np.uint8)
    source = np.full(source_hw, 1000.0)
    with pytest.raises(ShapeError, match=phrase):
        node_dada.upsample(guide, source)


def test_source_ratio_reads_both_axes():
    assert source_ratio((384, 512), (144, 192)) == pytest.approx(8 / 3)
    with pytest.raises(ShapeError, match="in height"):
        source_ratio((384, 512), (144, 150))


def test_fractional_noisy_source_skips_the_exact_footprint_adjustment(motorcycle):
    guide, depth = motorcycle
    source = footprint_source(depth, (90, 135))
    rng = np.random.default_rng(0)
    noisy = source + 20 * rng.standard_normal(source.shape)
    out = node_dada.upsample(guide, noisy, source_noise=20.0)
    ok = np.isfinite(noisy)
    assert np.abs(footprint_source(out, (90, 135))[ok] - noisy[ok]).mean() > 1.0
    assert np.isfinite(out[np.isfinite(depth)]).all()


def test_command_line_reads_a_fraction_or_the_shapes(motorcycle, tmp_path):
    import cv2

    from node_dada.cli import main

    guide, depth = motorcycle
    cv2.imwrite(str(tmp_path / "guide.png"), guide[..., ::-1])
    source = footprint_source(depth, (90, 135))
    np.save(tmp_path / "tof.npy", np.nan_to_num(source).astype(np.float32))
    for scale, name in (("8/3", "tof_x2.66667.npy"), ("auto", "tof_up.npy")):
        assert main(["upsample", "--guide", str(tmp_path / "guide.png"), "--source",
                     str(tmp_path / "tof.npy"), "--scale", scale]) == 0
        assert np.load(tmp_path / name).shape == (240, 360)


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbdd" / "realscene"


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/rgbdd/realscene")
def test_real_phone_tof_runs_through_predict_at_its_own_ratio(tmp_path):
    import cv2

    from node_dada.cli import main

    stem = "20200509112638"
    out = tmp_path / "up.png"
    assert main(["predict", "--guide", str(REAL / "RGB" / f"{stem}_RGB.jpg"), "--source",
                 str(REAL / "DepthLR" / f"{stem}_LR_fill_depth.png"), "--scale", "auto",
                 "--out", str(out)]) == 0
    depth = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    truth = cv2.imread(str(REAL / "Depth" / f"{stem}_HR_gt.png"), cv2.IMREAD_UNCHANGED)
    assert depth.shape == truth.shape == (384, 512) and depth.dtype == np.uint16
    valid = truth > 0
    assert np.abs(depth[valid].astype(float) - truth[valid]).mean() < 40  # mm: 2.28 cm measured
