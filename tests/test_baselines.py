"""Tests of node_dada.baselines: one signature, right shape and units, exact on
constants, holes handled, clear errors before OpenCV sees bad input.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from node_dada.baselines import (
    BASELINES,
    DEFAULT_PARAMS,
    TUNED_PARAMS,
    default_params,
    get_baseline,
    register_baseline,
)
from node_dada.data.motorcycle import load_motorcycle
from node_dada.diffusion import block_mean, degrade
from node_dada.errors import InputTypeError, InputValueError, ShapeError

OPENCV_METHODS = ("guided_filter", "joint_bilateral", "fast_global_smoother", "weighted_median")
ALL_METHODS = (
    "nearest",
    "bilinear",
    "bicubic",
    *OPENCV_METHODS,
    "dada",
    "dada_ode",
)
# Keep DADA cheap here: a few iterations (or their horizon, 0.24 x 30) exercise the whole path.
FAST_PARAMS: dict[str, dict[str, object]] = {"dada": {"num_iter": 30}, "dada_ode": {"t_end": 7.2}}
# Relative tolerance of "exact" results: the OpenCV filters run in float32 and
# the fast global smoother accumulates ~60 ulp over its passes.
FLOAT32_RTOL = 2e-5


def run(name: str, guide: torch.Tensor, source: torch.Tensor, **kwargs: object) -> torch.Tensor:
    return get_baseline(name)(guide, source, **{**FAST_PARAMS.get(name, {}), **kwargs})


@pytest.fixture(scope="module")
def motorcycle_crop() -> tuple[torch.Tensor, torch.Tensor]:
    """A 128 x 128 crop of the embedded Motorcycle scene: guide (1, 3, H, W) in
    0-1 and depth (1, 1, H, W) in mm with NaN holes."""
    guide, depth = load_motorcycle()
    rows, cols = slice(200, 328), slice(300, 428)
    guide_t = torch.from_numpy(guide[rows, cols].copy()).permute(2, 0, 1)[None].float() / 255
    depth_t = torch.from_numpy(depth[rows, cols].copy())[None, None]
    return guide_t, depth_t


def random_problem(
    seed: int = 0, *, batch: int = 2, channels: int = 3, size: int = 6, scale: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    guide = torch.rand(batch, channels, size * scale, size * scale, generator=gen)
    source = 800.0 + 1500.0 * torch.rand(batch, 1, size, size, generator=gen)
    return guide, source


# --- registry -------------------------------------------------------------------


def test_registry_lists_every_method() -> None:
    assert set(BASELINES) == set(ALL_METHODS)
    for name in ALL_METHODS:
        assert get_baseline(name) is BASELINES[name]


def test_get_baseline_rejects_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(InputValueError, match="expected one of .*bicubic.*got 'bicubc'"):
        get_baseline("bicubc")


def test_register_baseline_adds_refuses_duplicates_and_overwrites_on_request() -> None:
    def fake(guide: torch.Tensor, source: torch.Tensor, *, scale: int, mask_lr=None):
        return F.interpolate(source, scale_factor=scale)

    try:
        register_baseline("dada_ode_test", fake)
        assert get_baseline("dada_ode_test") is fake
        with pytest.raises(InputValueError, match="already registered"):
            register_baseline("dada_ode_test", fake)
        register_baseline("dada_ode_test", BASELINES["nearest"], overwrite=True)
        assert get_baseline("dada_ode_test") is BASELINES["nearest"]
        with pytest.raises(InputTypeError, match="callable"):
            register_baseline("other", "not a function")  # type: ignore[arg-type]
    finally:
        BASELINES.pop("dada_ode_test", None)
    assert set(BASELINES) == set(ALL_METHODS)


# --- shape, dtype, units, constants -----------------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_follow_the_source(name: str, dtype: torch.dtype) -> None:
    guide, source = random_problem(channels=3)
    out = run(name, guide.to(dtype), source.to(dtype), scale=4)
    assert out.shape == (2, 1, 24, 24)
    assert out.dtype == dtype
    assert out.device == source.device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_METHODS)
def test_guide_dtype_may_differ_from_the_source(name: str) -> None:
    guide, source = random_problem()
    out = run(name, guide.double(), source, scale=4)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ALL_METHODS)
def test_constant_depth_comes_out_unchanged(name: str) -> None:
    guide, _ = random_problem(seed=1)
    value = 1234.5
    source = torch.full((2, 1, 6, 6), value)
    out = run(name, guide, source, scale=4)
    torch.testing.assert_close(out, torch.full_like(out, value), rtol=FLOAT32_RTOL, atol=0)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_constant_depth_with_holes_comes_out_unchanged(name: str) -> None:
    guide, _ = random_problem(seed=2)
    value = 2500.0
    source = torch.full((2, 1, 6, 6), value)
    mask = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3)) > 0.3
    source[~mask] = float("nan")
    out = run(name, guide, source, scale=4, mask_lr=mask)
    torch.testing.assert_close(out, torch.full_like(out, value), rtol=FLOAT32_RTOL, atol=0)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_units_carry_through(name: str, motorcycle_crop: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A source in metres gives the millimetre result / 1000 (DADA told the unit
    through depth_scale); every method is linear in depth or picks depth values."""
    guide, depth_mm = motorcycle_crop
    guide, depth_mm = guide[..., :64, :64], depth_mm[..., :64, :64]
    source_mm, mask = degrade(depth_mm, 8)
    extra_mm: dict[str, object] = {}
    extra_m: dict[str, object] = {}
    if name in ("dada", "dada_ode"):
        extra_mm, extra_m = {"depth_scale": 1122.7}, {"depth_scale": 1.1227}
    out_mm = run(name, guide, source_mm, scale=8, mask_lr=mask, **extra_mm)
    out_m = run(name, guide, source_mm / 1000, scale=8, mask_lr=mask, **extra_m)
    if name != "weighted_median":
        torch.testing.assert_close(out_m * 1000, out_mm, rtol=1e-5, atol=0)
        return
    # The weighted median quantises depth to 256 adaptive levels; float32
    # rounding moves a level boundary now and then, so a few pixels pick the
    # neighbouring level.
    relative = ((out_m * 1000 - out_mm) / out_mm).abs()
    assert float((relative > 1e-5).float().mean()) < 0.01
    assert float(relative.max()) < 1e-3


# --- invalid source pixels --------------------------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_masked_source_ignores_the_values_of_invalid_pixels(
    name: str, motorcycle_crop: tuple[torch.Tensor, torch.Tensor]
) -> None:
    guide, depth = motorcycle_crop
    guide, depth = guide[..., :64, :64], depth[..., :64, :64]
    source, mask = degrade(depth, 8)
    mask = mask.clone()
    mask[..., 2:4, 3:6] = False  # a hole inside the image as well as the scene's own
    garbage = torch.where(mask, source, torch.full_like(source, 1e9))
    nan_holes = torch.where(mask, source, torch.full_like(source, float("nan")))
    out = run(name, guide, garbage, scale=8, mask_lr=mask)
    assert out.shape == (1, 1, 64, 64)
    assert torch.isfinite(out).all()
    assert float(out.max()) < 1e5  # the garbage never leaks in
    # mask_lr=None reads NaN (and 0) as invalid: the same result.
    torch.testing.assert_close(run(name, guide, nan_holes, scale=8), out)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_non_contiguous_inputs_give_the_same_result(name: str) -> None:
    guide, source = random_problem(seed=9)
    guide_t = guide.transpose(-1, -2).contiguous().transpose(-1, -2)
    source_t = source.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not guide_t.is_contiguous() and not source_t.is_contiguous()
    torch.testing.assert_close(
        run(name, guide_t, source_t, scale=4), run(name, guide, source, scale=4)
    )


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic"])
def test_interpolators_reproduce_valid_samples_at_their_centres(name: str) -> None:
    # At an odd scale, HR pixel (1 + 3i, 1 + 3j) is the centre of LR pixel (i, j).
    guide, source = random_problem(seed=4, scale=3)
    mask = torch.rand(source.shape, generator=torch.Generator().manual_seed(5)) > 0.25
    out = run(name, guide, source, scale=3, mask_lr=mask)
    centres = out[..., 1::3, 1::3]
    torch.testing.assert_close(centres[mask], source[mask], rtol=1e-6, atol=0)


def test_nearest_and_bilinear_match_torch_on_an_all_valid_source() -> None:
    guide, source = random_problem(seed=6)
    torch.testing.assert_close(
        run("nearest", guide, source, scale=4),
        F.interpolate(source, scale_factor=4, mode="nearest"),
    )
    torch.testing.assert_close(
        run("bilinear", guide, source, scale=4),
        F.interpolate(source, scale_factor=4, mode="bilinear", align_corners=False),
    )


def test_nearest_fills_a_hole_from_the_nearest_valid_sample() -> None:
    source = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[True, False], [True, True]]]])
    out = run("nearest", torch.rand(1, 1, 4, 4), source, scale=2, mask_lr=mask)[0, 0]
    # Centres sit at 0.5 and 2.5: HR pixel (0, 2) is closest to the sample 1
    # (squared distance 2.5 against 6.5), pixel (1, 3) to the sample 4 (2.5 against 6.5).
    assert (float(out[0, 2]), float(out[1, 3])) == (1.0, 4.0)
    torch.testing.assert_close(
        out[:, :2], torch.tensor([[1.0, 1.0], [1.0, 1.0], [3.0, 3.0], [3.0, 3.0]])
    )


def test_dada_is_source_consistent_and_leaves_inputs_alone(
    motorcycle_crop: tuple[torch.Tensor, torch.Tensor],
) -> None:
    guide, depth = motorcycle_crop
    source, mask = degrade(depth, 8)
    guide_before, source_before = guide.clone(), source.clone()
    out = run("dada", guide, source, scale=8, mask_lr=mask)
    torch.testing.assert_close(block_mean(out, 8)[mask], source[mask], rtol=1e-5, atol=0)
    assert torch.equal(guide, guide_before) and torch.equal(source, source_before)


def test_weighted_median_repeats(motorcycle_crop: tuple[torch.Tensor, torch.Tensor]) -> None:
    guide, depth = motorcycle_crop
    source, mask = degrade(depth, 8)
    first = run("weighted_median", guide, source, scale=8, mask_lr=mask)
    assert torch.equal(first, run("weighted_median", guide, source, scale=8, mask_lr=mask))


# --- parameters ---------------------------------------------------------------------


def test_default_params_scale_window_sizes_and_prefer_tuned_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(DEFAULT_PARAMS) == set(OPENCV_METHODS)
    params = default_params("guided_filter", 64)  # a scale the validation search left out
    assert params["radius"] == DEFAULT_PARAMS["guided_filter"]["radius_per_scale"] * 64
    assert default_params("guided_filter", 8) == TUNED_PARAMS["guided_filter"][8]
    monkeypatch.setitem(TUNED_PARAMS, "guided_filter", {8: {"radius": 5}})
    assert default_params("guided_filter", 8) == {
        "radius": 5,
        "eps": DEFAULT_PARAMS["guided_filter"]["eps"],
    }
    assert default_params("guided_filter", 4)["radius"] == 1.0  # other scales: the fallback
    with pytest.raises(InputValueError, match="expected one of"):
        default_params("bicubic", 8)


@pytest.mark.parametrize("name", OPENCV_METHODS)
def test_explicit_parameters_change_the_result(name: str) -> None:
    guide, source = random_problem(seed=7)
    knob = {
        "guided_filter": {"eps": 1e-4},
        "joint_bilateral": {"sigma_color": 1.0},
        "fast_global_smoother": {"lambda_": 1000.0},
        "weighted_median": {"radius": 1},
    }[name]
    assert not torch.equal(
        run(name, guide, source, scale=4), run(name, guide, source, scale=4, **knob)
    )


# --- errors before OpenCV ----------------------------------------------------------


@pytest.mark.parametrize("name", OPENCV_METHODS)
def test_opencv_wrappers_reject_unsupported_channel_counts(name: str) -> None:
    guide, source = random_problem(channels=4)
    with pytest.raises(ShapeError, match="takes a guide with 1.* or 3 channels, got 4"):
        run(name, guide, source, scale=4)


def test_only_the_guided_filter_takes_two_channels() -> None:
    guide, source = random_problem(channels=2)
    assert run("guided_filter", guide, source, scale=4).shape == (2, 1, 24, 24)
    with pytest.raises(ShapeError, match="1 or 3 channels, got 2"):
        run("joint_bilateral", guide, source, scale=4)


@pytest.mark.parametrize("name", ["bicubic", "dada", "dada_ode"])
def test_methods_without_opencv_take_any_channel_count(name: str) -> None:
    guide, source = random_problem(channels=5)
    assert run(name, guide, source, scale=4).shape == (2, 1, 24, 24)


def test_the_channel_check_stands_in_for_an_opencv_assertion() -> None:
    """The situation the wrappers guard against really is an OpenCV assertion."""
    guide = np.zeros((8, 8, 4), np.float32)
    with pytest.raises(cv2.error):
        cv2.ximgproc.jointBilateralFilter(guide, np.zeros((8, 8), np.float32), -1, 0.1, 2.0)


@pytest.mark.parametrize("name", OPENCV_METHODS)
@pytest.mark.parametrize(
    ("make_guide", "error", "phrase"),
    [
        (lambda g: (g * 255).to(torch.uint8), InputTypeError, r"guide.float\(\) / 255"),
        (lambda g: g.half(), InputTypeError, "expected dtype float32 or float64"),
        (lambda g: g * 255, InputValueError, "expects raw values in 0-1"),
        (lambda g: g.numpy(), InputTypeError, "expected a torch.Tensor"),
        (lambda g: torch.where(g > 0.99, float("nan"), g), InputValueError, "finite"),
        (lambda g: g[0], ShapeError, "4-D tensor"),
    ],
    ids=["uint8", "float16", "0-255", "numpy", "nan", "3-D"],
)
def test_opencv_wrappers_reject_bad_guides(name: str, make_guide, error, phrase: str) -> None:
    guide, source = random_problem()
    with pytest.raises(error, match=phrase):
        run(name, make_guide(guide), source, scale=4)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_method_rejects_bad_sources_and_masks(name: str) -> None:
    guide, source = random_problem()
    mask = torch.ones(source.shape, dtype=torch.bool)
    nan_source = source.clone()
    nan_source[0, 0, 1, 1] = float("nan")
    with pytest.raises(InputValueError, match="NaN or inf pixel.* marked valid"):
        run(name, guide, nan_source, scale=4, mask_lr=mask)
    with pytest.raises(InputValueError, match="at least one valid"):
        run(name, guide, source, scale=4, mask_lr=torch.zeros_like(mask))
    with pytest.raises(ShapeError, match="expected spatial size"):
        run(name, guide, source, scale=3)
    with pytest.raises(InputValueError, match="integer upsampling factor"):
        run(name, guide, source, scale=2.5)
    with pytest.raises(ShapeError, match="1 channel"):
        run(name, guide, source.expand(2, 2, 6, 6), scale=4)


@pytest.mark.parametrize(
    ("name", "params", "phrase"),
    [
        ("guided_filter", {"radius": -1}, "radius: expected a positive"),
        ("joint_bilateral", {"sigma_color": float("nan")}, "sigma_color: expected a positive"),
        ("fast_global_smoother", {"num_iter": 2.5}, "num_iter: expected a positive integer"),
        ("weighted_median", {"weight_type": "gauss"}, "weight_type: expected one of"),
        ("dada", {"depth_scale": 0.0}, "depth_scale: expected a positive"),
        ("dada_ode", {"depth_scale": 0.0}, "depth_scale: expected a positive"),
        ("dada_ode", {"method": "rk5"}, "method: expected one of"),
    ],
)
def test_bad_parameters_are_named(name: str, params: dict[str, object], phrase: str) -> None:
    guide, source = random_problem()
    with pytest.raises(InputValueError, match=phrase):
        run(name, guide, source, scale=4, **params)


@pytest.mark.parametrize("name", [*OPENCV_METHODS, "dada", "dada_ode"])
def test_precomputed_estimate_is_checked_and_used(name: str) -> None:
    guide, source = random_problem(seed=8)
    estimate = run("bicubic", guide, source, scale=4)
    torch.testing.assert_close(
        run(name, guide, source, scale=4, depth0=estimate), run(name, guide, source, scale=4)
    )
    with pytest.raises(ShapeError, match="depth0: expected shape"):
        run(name, guide, source, scale=4, depth0=estimate[..., :-1])


# --- sanity on real data ------------------------------------------------------------


def test_filters_do_not_make_bicubic_much_worse_on_motorcycle(
    motorcycle_crop: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """x8 on a 128 x 128 Motorcycle crop: each guided filter stays within 5 % of
    bicubic's MAE (measured: 0.92-1.00 x bicubic), and 500 iterations of
    learning-free DADA beat bicubic (measured 0.94 x). Motorcycle is a test
    scene: this only checks the wrappers, it tunes nothing."""
    guide, depth = motorcycle_crop
    source, mask = degrade(depth, 8)
    valid = torch.isfinite(depth)

    def mae(prediction: torch.Tensor) -> float:
        return float((prediction - depth)[valid].abs().mean())

    estimate = run("bicubic", guide, source, scale=8, mask_lr=mask)
    reference = mae(estimate)
    for name in OPENCV_METHODS:
        out = run(name, guide, source, scale=8, mask_lr=mask, depth0=estimate)
        assert mae(out) <= 1.05 * reference, name
    refined = run("dada", guide, source, scale=8, mask_lr=mask, depth0=estimate, num_iter=500)
    assert mae(refined) < reference
