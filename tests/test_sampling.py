from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from node_dada.diffusion import (
    block_mean,
    degrade,
    initial_estimate,
    learning_free_dada,
    normalize_guide,
    shift_positive,
)
from node_dada.errors import InputValueError, NodeDadaError


def test_degrade_is_a_nan_aware_block_mean():
    depth = torch.tensor(
        [[1.0, 3.0, 5.0, float("nan")], [5.0, 7.0, float("nan"), float("nan")]]
    )[None, None]
    source, mask = degrade(depth, 2)
    # left block: mean of 1, 3, 5, 7 = 4; right block: only 5 is valid
    assert source.tolist() == [[[[4.0, 5.0]]]]
    assert mask.tolist() == [[[[True, True]]]]
    depth[..., 2:] = float("nan")
    source, mask = degrade(depth, 2)
    assert mask.tolist() == [[[[True, False]]]]
    assert source[0, 0, 0, 1] == 0


def test_degrade_rejects_indivisible_size():
    with pytest.raises(InputValueError, match="divisible"):
        degrade(torch.rand(1, 1, 10, 12), 4)


def test_initial_estimate_reproduces_a_plane_inside_the_hull():
    scale, h, w = 4, 6, 7
    centres_r = (scale - 1) / 2 + scale * np.arange(h)
    centres_c = (scale - 1) / 2 + scale * np.arange(w)
    plane = lambda r, c: 2.0 + 0.03 * r - 0.05 * c  # noqa: E731
    source = torch.from_numpy(plane(centres_r[:, None], centres_c[None, :]))[None, None]
    mask = torch.ones_like(source, dtype=torch.bool)
    out = initial_estimate(source, mask, scale)
    rows, cols = np.meshgrid(np.arange(h * scale), np.arange(w * scale), indexing="ij")
    inside = (rows >= centres_r[0]) & (rows <= centres_r[-1])
    inside &= (cols >= centres_c[0]) & (cols <= centres_c[-1])
    # scipy's Clough-Tocher estimates vertex gradients iteratively (tol=1e-6), so a
    # plane comes back to ~1e-6, not to round-off
    np.testing.assert_allclose(out[0, 0].numpy()[inside], plane(rows, cols)[inside], atol=1e-5)
    # outside the hull: the nearest sample
    assert out[0, 0, 0, 0] == source[0, 0, 0, 0]


def test_initial_estimate_ignores_invalid_samples_and_handles_degenerate_masks():
    source = torch.full((1, 1, 5, 5), 3.0)
    mask = torch.ones_like(source, dtype=torch.bool)
    source[0, 0, 2, 2] = 1000.0
    mask[0, 0, 2, 2] = False
    out = initial_estimate(source, mask, 2)
    torch.testing.assert_close(out, torch.full((1, 1, 10, 10), 3.0, dtype=out.dtype))
    line = torch.zeros_like(mask)
    line[0, 0, 1, :] = True  # collinear samples: no triangulation, nearest everywhere
    out = initial_estimate(source, line, 2)
    assert torch.isfinite(out).all()


def test_initial_estimate_bicubic_fast_path():
    source = torch.rand(2, 1, 4, 5) + 1
    mask = torch.ones_like(source, dtype=torch.bool)
    out = initial_estimate(source, mask, 3, method="bicubic")
    assert out.shape == (2, 1, 12, 15)
    with pytest.raises(InputValueError, match="all-valid"):
        mask[0, 0, 0, 0] = False
        initial_estimate(source, mask, 3, method="bicubic")


def test_normalize_guide_rgb_and_other_modalities():
    rgb = torch.full((1, 3, 2, 2), 0.485)
    assert normalize_guide(rgb)[0, 0].abs().max() < 1e-6
    for channels in (1, 2, 5):
        out = normalize_guide(torch.rand(1, channels, 3, 3))
        assert out.shape == (1, channels, 3, 3)


def test_shift_positive_warns_and_never_mutates():
    source = torch.tensor([[[[0.05, 1.0]]]])
    depth0 = torch.ones(1, 1, 2, 4)
    mask = torch.ones_like(source, dtype=torch.bool)
    with pytest.warns(UserWarning, match="shifted"):
        new_source, new_depth0, shift = shift_positive(source, depth0, mask)
    assert shift == pytest.approx(0.1)
    assert source[0, 0, 0, 0] == pytest.approx(0.05) and depth0.max() == 1.0
    assert new_source[0, 0, 0, 0] == pytest.approx(0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shift_positive(source + 1, depth0, mask)[2] == 0.0
        # a small value on an invalid pixel does not count
        assert shift_positive(source + 1, depth0, torch.tensor([[[[False, True]]]]))[2] == 0.0


def test_learning_free_dada_shifts_small_depth_and_stays_source_consistent():
    guide = normalize_guide(torch.rand(1, 3, 16, 16))
    source = torch.rand(1, 1, 4, 4) * 0.05 + 0.01
    mask = torch.ones_like(source, dtype=torch.bool)
    with pytest.warns(UserWarning, match="shifted"):
        out = learning_free_dada(guide, source, mask, num_iter=50)
    assert (source < 0.07).all()  # unchanged
    torch.testing.assert_close(block_mean(out, 4), source, rtol=1e-4, atol=1e-6)


def test_learning_free_bad_guide_size():
    with pytest.raises(NodeDadaError, match="source"):
        learning_free_dada(
            torch.rand(1, 3, 16, 15), torch.rand(1, 1, 4, 4) + 1, torch.ones(1, 1, 4, 4), num_iter=1
        )
