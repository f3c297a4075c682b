"""The one-liner ``node_dada.upsample`` and its bad-input contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import node_dada
from node_dada.diffusion import block_mean, degrade
from node_dada.errors import DataError, InputTypeError, InputValueError, NodeDadaError, ShapeError


def scene(h=6, w=8, scale=4, seed=0):
    rng = np.random.default_rng(seed)
    guide = rng.integers(0, 256, size=(h * scale, w * scale, 3), dtype=np.uint8)
    source = rng.uniform(1000, 3000, size=(h, w)).astype(np.float32)
    return guide, source


def test_numpy_in_numpy_out_in_source_units_and_source_consistent():
    guide, source = scene()
    out = node_dada.upsample(guide, source, scale=4, num_iter=100)
    assert isinstance(out, np.ndarray) and out.shape == (24, 32) and out.dtype == np.float32
    pooled = out.reshape(6, 4, 8, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(pooled, source, rtol=1e-5)


def test_units_scale_through_with_depth_scale():
    guide, source = scene()
    mm = node_dada.upsample(guide, source, scale=4, num_iter=50, depth_scale=1122.7)
    metres = node_dada.upsample(guide, source / 1000, scale=4, num_iter=50, depth_scale=1.1227)
    np.testing.assert_allclose(metres * 1000, mm, rtol=1e-4)


@pytest.mark.parametrize("solver", ["exact", "fast"])
def test_learning_free_results_do_not_depend_on_the_depth_unit(solver):
    """The default depth channel is the depth over half its own median: millimetres,
    metres and feet give the same depth map (float32 round-off; RKC's step control
    sees the round-off too)."""
    guide, source = scene(h=12, w=16)
    mm = node_dada.upsample(guide, source, scale=4, solver=solver)
    for factor in (1e-3, 1 / 304.8, 10.0):
        other = node_dada.upsample(guide, source * factor, scale=4, solver=solver) / factor
        relative = np.abs(other - mm) / mm
        assert relative.mean() < 1e-5 and relative.max() < 1e-3, (solver, factor)
    # the old fixed millimetre scale is a different, explicit choice
    fixed = node_dada.upsample(guide, source, scale=4, solver=solver, depth_scale=1122.7)
    assert np.abs(fixed - mm).max() > 1e-3


def test_the_unit_free_scale_is_per_frame():
    guide = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    source = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 1000 + 500
    both = node_dada.upsample(guide, torch.cat([source, source / 1000]), scale=4, num_iter=30)
    first = node_dada.upsample(guide[:1], source, scale=4, num_iter=30)
    second = node_dada.upsample(guide[1:], source / 1000, scale=4, num_iter=30)
    torch.testing.assert_close(both, torch.cat([first, second]))


def test_a_checkpoint_warns_when_the_depth_looks_like_another_unit():
    guide, source = scene(h=8, w=8, scale=8)
    with pytest.warns(UserWarning, match="another unit.*1.1227 for metres"):
        node_dada.upsample(guide, source / 1000, scale=8, checkpoint="middlebury-x8")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # millimetres, or metres with their scale: quiet
        node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x8")
        node_dada.upsample(guide, source / 1000, scale=8, checkpoint="middlebury-x8",
                           depth_scale=1.1227)


def test_tensor_in_tensor_out_batched():
    guide = torch.rand(2, 3, 16, 16)
    source = torch.rand(2, 1, 4, 4) * 1000 + 500
    out = node_dada.upsample(guide, source, scale=4, num_iter=30)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(block_mean(out, 4), source, rtol=1e-5, atol=1e-3)


def test_holes_as_nan_or_zero_and_explicit_mask():
    guide, source = scene()
    with_nan = source.copy()
    with_nan[2, 3] = np.nan
    with_zero = source.copy()
    with_zero[2, 3] = 0
    a = node_dada.upsample(guide, with_nan, scale=4, num_iter=50)
    b = node_dada.upsample(guide, with_zero, scale=4, num_iter=50)
    mask = np.ones_like(source, dtype=bool)
    mask[2, 3] = False
    c = node_dada.upsample(guide, source, scale=4, num_iter=50, mask_lr=mask)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-6)


def test_grayscale_16bit_and_multichannel_guides():
    _, source = scene()
    gray16 = np.random.default_rng(1).integers(0, 65536, size=(24, 32), dtype=np.uint16)
    assert node_dada.upsample(gray16, source, scale=4, num_iter=10).shape == (24, 32)
    five = torch.rand(1, 5, 24, 32)
    out = node_dada.upsample(five, torch.from_numpy(source)[None, None], scale=4, num_iter=10)
    assert out.shape == (1, 1, 24, 32)


def test_inputs_are_not_modified_and_small_depth_warns():
    guide, source = scene()
    tiny = source / 1e6
    before = (guide.copy(), tiny.copy())
    with pytest.warns(UserWarning, match="shifted"):
        node_dada.upsample(guide, tiny, scale=4, num_iter=10, depth_scale=1122.7)
    assert np.array_equal(before[0], guide) and np.array_equal(before[1], tiny)


@pytest.mark.parametrize(
    ("guide", "source", "kwargs", "error", "phrase"),
    [
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 3}, ShapeError, "guide"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 2.5}, ShapeError, "scale 2.5"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": "4"}, InputTypeError, "scale"),
        (np.zeros((24, 31, 3), np.uint8), np.ones((6, 8)), {"scale": 4}, ShapeError, "guide"),
        (np.zeros((2, 24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 4}, ShapeError, "guide"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((1, 6, 8)), {"scale": 4}, ShapeError, "source"),
        (np.zeros((24, 32, 3), np.uint8), np.zeros((6, 8)), {"scale": 4}, InputValueError, "valid"),
        (np.zeros((24, 32, 3), np.uint8), np.full((6, 8), np.nan), {"scale": 4}, InputValueError, "valid"),
        (np.full((24, 32, 3), np.nan), np.ones((6, 8)), {"scale": 4}, InputValueError, "guide"),
        (np.full((24, 32, 3), np.inf, np.float32), np.ones((6, 8)), {"scale": 4}, InputValueError, "guide"),
        (np.full((24, 32, 3), 200.0), np.ones((6, 8)), {"scale": 4}, InputValueError, "0-1"),
        (np.zeros((24, 32, 3), np.int32), np.ones((6, 8)), {"scale": 4}, InputTypeError, "dtype"),
        (torch.zeros(1, 3, 24, 32, dtype=torch.uint8), torch.ones(1, 1, 6, 8), {"scale": 4}, InputTypeError, "float32"),
        (torch.zeros(1, 3, 24, 32), torch.ones(1, 1, 6, 8, dtype=torch.int32), {"scale": 4}, InputTypeError, "source"),
        (np.zeros((24, 32, 3), np.uint8), -np.ones((6, 8)), {"scale": 4}, InputValueError, "negative"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 4, "solver": "x"}, InputValueError, "solver"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 4, "checkpoint": "nope"}, DataError, "checkpoint"),
        (np.zeros((24, 32, 3), np.uint8), np.ones((6, 8)), {"scale": 4, "mask_lr": np.ones((3, 8))}, ShapeError, "mask_lr"),
        ("guide.png", np.ones((6, 8)), {"scale": 4}, InputTypeError, "guide"),
    ],
)
def test_bad_input(guide, source, kwargs, error, phrase):
    with pytest.raises(error, match=phrase) as info:
        # a checkpoint refuses learning-free settings such as num_iter
        quick = {} if "checkpoint" in kwargs else {"num_iter": 1}
        node_dada.upsample(guide, source, **quick, **kwargs)
    assert isinstance(info.value, NodeDadaError)


def test_library_prints_nothing(capfd):
    guide, source = scene()
    node_dada.upsample(guide, source, scale=4, num_iter=5)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_ode_default_matches_the_discrete_iteration():
    """Learning-free: RKC over T = 0.24 * N against N discrete iterations."""
    guide, source = scene(h=8, w=8, scale=8)
    ode = node_dada.upsample(guide, source, scale=8, num_iter=2000)
    discrete = node_dada.upsample(guide, source, scale=8, num_iter=2000, solver="discrete")
    assert np.linalg.norm(ode - discrete) / np.linalg.norm(discrete) < 2e-3
    pooled = ode.reshape(8, 8, 8, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(pooled, source, rtol=1e-5)


@pytest.mark.parametrize(("channels", "phrase"), [(4, "alpha"), (1, "grayscale")])
def test_checkpoint_takes_rgba_and_gray_guides_with_a_warning(channels, phrase):
    rng = np.random.default_rng(0)
    rgb = rng.random((32, 32, 3)).astype(np.float32)
    source = (1000 + 200 * rng.random((4, 4))).astype(np.float32)
    guide = (np.concatenate([rgb, np.ones((32, 32, 1), np.float32)], axis=2) if channels == 4
             else rgb[..., :1])
    expected = rgb if channels == 4 else np.repeat(rgb[..., :1], 3, axis=2)
    with pytest.warns(UserWarning, match=phrase):
        out = node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x8")
    reference = node_dada.upsample(expected, source, scale=8, checkpoint="middlebury-x8")
    np.testing.assert_array_equal(out, reference)


def test_checkpoint_refuses_a_guide_it_cannot_use():
    guide = np.random.default_rng(0).random((32, 32, 2)).astype(np.float32)
    with pytest.raises(ShapeError, match="trained on 3-channel guides, got 2 channels"):
        node_dada.upsample(guide, np.full((4, 4), 1000.0), scale=8, checkpoint="middlebury-x8")


def _motorcycle_pair(scale: int, size: int = 128, width: int | None = None):
    from node_dada.data.motorcycle import load_motorcycle

    guide, depth = load_motorcycle()
    width = width or size
    top, left = min(120, 496 - size), min(300, 736 - width)
    crop = (slice(top, top + size), slice(left, left + width))
    source, mask = degrade(torch.from_numpy(np.ascontiguousarray(depth[crop]))[None, None],
                           scale)
    source = torch.where(mask, source, torch.full_like(source, np.nan))
    return np.ascontiguousarray(guide[crop]), source[0, 0].numpy()


@pytest.mark.parametrize("name", ["middlebury-x8-discrete", "middlebury-x8-ode"])
def test_checkpoint_fast_solver_matches_the_model_s_own_solver(name):
    """The default ("fast": RKC on the learned coefficients) against "exact" (the model's
    training solver over its whole horizon) on a real crop: within 1e-3 relative L2,
    and both consistent with the source."""
    guide, source = _motorcycle_pair(8)
    fast = node_dada.upsample(guide, source, scale=8, checkpoint=name)
    exact = node_dada.upsample(guide, source, scale=8, checkpoint=name, solver="exact")
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < 1e-3
    assert not np.array_equal(fast, exact)
    for out in (fast, exact):
        valid = np.isfinite(source)
        assert valid.mean() > 0.5
        np.testing.assert_allclose(out.reshape(16, 8, 16, 8).mean(axis=(1, 3))[valid],
                                   source[valid], rtol=1e-4)


def test_learning_free_solver_words_name_the_two_paths():
    guide, source = scene(h=4, w=4, scale=8)
    assert np.array_equal(node_dada.upsample(guide, source, scale=8, num_iter=200),
                          node_dada.upsample(guide, source, scale=8, num_iter=200, solver="ode"))
    assert np.array_equal(
        node_dada.upsample(guide, source, scale=8, num_iter=200, solver="exact"),
        node_dada.upsample(guide, source, scale=8, num_iter=200, solver="discrete"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_iter": 100}, "num_iter: learning-free settings"),
    ({"kappa": 0.05, "step": 0.2}, "step, kappa: learning-free settings"),
    ({"solver": "discrete"}, "with a checkpoint, expected 'fast'"),
])
def test_checkpoint_refuses_settings_it_would_ignore(kwargs, match):
    guide, source = scene(h=4, w=4, scale=8)
    with pytest.raises(InputValueError, match=match):
        node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x8", **kwargs)


def test_checkpoint_on_a_frame_larger_than_a_tile_matches_the_untiled_run(monkeypatch):
    """Large frames compute the coefficients in tiles (memory bound by the tile); with
    tiles of 128 on a 192 x 640 crop the coefficients differ from the untiled ones by
    float32 round-off (about 2e-7), which the 8128-step diffusion leaves near 2e-5."""
    from node_dada.models.inference import cached_model

    guide, source = _motorcycle_pair(8, size=192, width=640)
    model = cached_model("middlebury-x8")
    monkeypatch.setattr(model, "inference_tile", None)
    whole = node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x8")
    monkeypatch.setattr(model, "inference_tile", 128)
    tiled = node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x8")
    assert 0 < np.linalg.norm(tiled - whole) / np.linalg.norm(whole) < 1e-4


@pytest.mark.parametrize("guide, source, kwargs, phrase", [
    (np.zeros((64, 64, 3), np.uint8), np.ones((8, 8)), {"scale": 4}, "8 x the source: scale=8\\?"),
    (np.zeros((64, 64, 3), np.uint8), np.ones((24, 24)), {"scale": 4},
     "2.667 x the source: scale=None\\?"),
    (np.zeros((3, 64, 64), np.uint8), np.ones((8, 8)), {"scale": 8}, "looks like \\(C, H, W\\)"),
    (np.zeros((64, 64, 3), np.uint8), np.ones((64, 64)), {}, "pass the low-resolution depth"),
])
def test_size_errors_suggest_the_fix(guide, source, kwargs, phrase):
    with pytest.raises(ShapeError, match=phrase):
        node_dada.upsample(guide, source, num_iter=1, **kwargs)


def test_a_checkpoint_used_at_another_scale_warns():
    guide, source = scene(h=4, w=4, scale=8)
    with pytest.warns(UserWarning, match="trained for x4, used at x8.*middlebury-x8"):
        node_dada.upsample(guide, source, scale=8, checkpoint="middlebury-x4")
