"""Noise-aware consistency (node_dada.diffusion.noise): the relaxed field, its discrete
splitting, the noise estimate and ``upsample(source_noise=...)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import node_dada
from node_dada.diffusion import block_mean, discrete_dada, solve_ode
from node_dada.diffusion.noise import (
    MAX_FIDELITY,
    check_source_noise,
    estimate_source_noise,
    fidelity_weights,
)
from node_dada.errors import InputValueError, ShapeError


def piecewise_scene(seed=0, h=12, w=16, scale=4, sigma=0.0):
    """Two planes split by a vertical edge that the guide shows; noisy source."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h * scale, 0:w * scale].astype(np.float64)
    left = cols < w * scale // 2
    depth = np.where(left, 1500 + 3 * rows, 2500 - 2 * cols)
    guide = np.where(left, 0.2, 0.8)[..., None].repeat(3, -1)
    guide = guide + 0.01 * rng.standard_normal(guide.shape)
    source = depth.reshape(h, scale, w, scale).mean((1, 3))
    noisy = source + sigma * rng.standard_normal(source.shape)
    return np.clip(guide, 0, 1), depth, noisy


def problem(seed=0, b=1, h=4, w=5, scale=4, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    big_h, big_w = h * scale, w * scale
    depth0 = torch.rand(b, 1, big_h, big_w, generator=gen, dtype=dtype) + 1
    cv = torch.rand(b, 1, big_h - 1, big_w, generator=gen, dtype=dtype)
    ch = torch.rand(b, 1, big_h, big_w - 1, generator=gen, dtype=dtype)
    source = torch.rand(b, 1, h, w, generator=gen, dtype=dtype) + 1
    mask = torch.ones_like(source, dtype=torch.bool)
    return depth0, cv, ch, source, mask, scale


def test_large_fidelity_is_the_exact_consistency_and_small_lets_go():
    depth0, cv, ch, source, mask, scale = problem()
    strong = discrete_dada(depth0, cv, ch, source, mask, 200, fidelity=torch.full_like(source, 1e4))
    torch.testing.assert_close(block_mean(strong, scale), source, rtol=1e-10, atol=1e-10)
    weak = discrete_dada(depth0, cv, ch, source, mask, 200, fidelity=torch.full_like(source, 1e-3))
    assert (block_mean(weak, scale) - source).abs().max() > 1e-2


def test_ode_and_discrete_relaxed_solves_agree():
    depth0, cv, ch, source, mask, scale = problem(seed=1)
    fidelity = torch.full_like(source, 0.05)
    discrete = discrete_dada(depth0, cv, ch, source, mask, 400, 0.1, fidelity=fidelity)
    euler, _ = solve_ode(depth0, cv, ch, source, mask, 40.0, method="euler", step_size=0.1,
                         fidelity=fidelity)
    fast, info = solve_ode(depth0, cv, ch, source, mask, 40.0, method="rkc", step_size=1.0,
                           fidelity=fidelity)
    # the same ODE: splitting and solver errors only
    assert (discrete - euler).abs().max() < 2e-2
    assert (fast - euler).abs().max() < 2e-2
    assert info.nfe_forward < 400


@pytest.mark.parametrize("mu", [1e-4, 0.3, MAX_FIDELITY, 1e3])
def test_relaxed_solves_never_diverge(mu):
    depth0, cv, ch, source, mask, scale = problem(seed=2)
    cv, ch = torch.ones_like(cv), torch.ones_like(ch)  # the stiffest field
    fidelity = torch.full_like(source, mu)
    outputs = [discrete_dada(depth0, cv, ch, source, mask, 8000, fidelity=fidelity)]
    outputs.append(solve_ode(depth0, cv, ch, source, mask, 1920.0, method="rkc", step_size=10.0,
                             step_growth=1.5, fidelity=fidelity)[0])
    if mu <= MAX_FIDELITY:  # the weights upsample() uses keep Euler at h = 0.24 stable
        outputs.append(solve_ode(depth0, cv, ch, source, mask, 1920.0, method="euler",
                                 step_size=0.24, fidelity=fidelity)[0])
    low = min(float(depth0.min()), float(source.min()))
    high = max(float(depth0.max()), float(source.max()))
    for out in outputs:
        # block-mean fidelity may overshoot the data's range a little (as the exact
        # adjustment does), never grow
        assert torch.isfinite(out).all()
        assert 2 * low - high <= float(out.min()) and float(out.max()) <= 2 * high - low


def test_relaxed_solve_is_differentiable_in_every_gradient_mode():
    depth0, cv, ch, source, mask, scale = problem(seed=3, h=3, w=3)
    fidelity = torch.full_like(source, 0.2)
    weights = torch.rand(depth0.shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)

    def loss(cv_, mode, step=0.24):
        out, _ = solve_ode(depth0, cv_, ch, source, mask, 4.8, method="euler",
                           step_size=step, grad_mode=mode, fidelity=fidelity)
        return (out * weights).sum()

    def gradient(mode, step=0.24):
        cv_ = cv.clone().requires_grad_(True)
        return torch.autograd.grad(loss(cv_, mode, step), cv_)[0]

    direct = gradient("direct")
    direction = torch.randn(cv.shape, generator=torch.Generator().manual_seed(1),
                            dtype=torch.float64)
    eps = 1e-6
    numeric = (loss(cv + eps * direction, "direct") - loss(cv - eps * direction, "direct")) / (
        2 * eps)
    assert abs(float((direct * direction).sum() - numeric)) < 1e-8
    torch.testing.assert_close(gradient("checkpointed"), direct, rtol=1e-9, atol=1e-12)
    # the adjoint is the continuous problem's gradient: it meets the discrete one as h -> 0
    gaps = []
    for step in (0.06, 0.015):
        gaps.append(float((gradient("adjoint", step) - gradient("direct", step)).norm()
                          / direct.norm()))
    assert gaps[1] < 0.012 and gaps[1] < gaps[0] / 3


def test_discrete_relaxed_iteration_trains():
    depth0, cv, ch, source, mask, scale = problem(seed=4)
    cv = cv.clone().requires_grad_(True)
    out = discrete_dada(depth0, cv, ch, source, mask, 20, fidelity=torch.full_like(source, 0.1))
    (grad,) = torch.autograd.grad(out.square().sum(), cv)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_noise_estimate_recovers_white_noise_on_planes_and_ignores_edges():
    gen = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(80.0), torch.arange(120.0), indexing="ij")
    plane = 1000 + 3 * rows - 2 * cols + 400 * (cols > 60)  # two planes and a step
    mask = torch.ones(1, 1, 80, 120, dtype=torch.bool)
    clean = estimate_source_noise(plane[None, None].double(), mask)
    assert float(clean.median()) < 1e-6
    for sigma in (2.0, 20.0):
        noisy = plane + sigma * torch.randn(plane.shape, generator=gen)
        estimate = estimate_source_noise(noisy[None, None], mask)
        assert abs(float(estimate.median()) / sigma - 1) < 0.1


def test_noise_estimate_follows_depth_proportional_noise():
    gen = torch.Generator().manual_seed(1)
    depth = torch.linspace(1000, 4000, 160).repeat(60, 1)
    noisy = depth + 0.01 * depth * torch.randn(depth.shape, generator=gen)
    estimate = estimate_source_noise(noisy[None, None], torch.ones(1, 1, 60, 160,
                                                                    dtype=torch.bool))[0, 0]
    near, far = float(estimate[:, 10:30].median()), float(estimate[:, 130:150].median())
    assert 0.8 < near / 14.0 < 1.25 and 0.8 < far / 36.0 < 1.25


def test_noise_estimate_reads_the_noise_where_the_guide_is_flat():
    gen = torch.Generator().manual_seed(2)
    rows, cols = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    bumps = ((rows // 3 + cols // 3) % 2 == 0) & (rows > 24)  # structure the guide shows
    depth = 2000 + 2 * rows + 40 * bumps
    guide = bumps.double().repeat_interleave(4, 0).repeat_interleave(4, 1)[None, None]
    mask = torch.ones(1, 1, 60, 80, dtype=torch.bool)
    noisy = (depth + 5 * torch.randn(depth.shape, generator=gen))[None, None]
    blind = float(estimate_source_noise(noisy, mask).median())
    seeing = float(estimate_source_noise(noisy, mask, guide.expand(1, 3, -1, -1)).median())
    assert blind > 6.5 and abs(seeing / 5 - 1) < 0.15


def test_fidelity_weights_fall_with_relative_noise_and_are_unit_free():
    source = torch.full((1, 1, 4, 4), 2000.0)
    mask = torch.ones_like(source, dtype=torch.bool)
    weak, strong = (fidelity_weights(s, source, mask) for s in (40.0, 4.0))
    assert (weak < strong).all()
    metres = fidelity_weights(0.04, source / 1000, mask)
    torch.testing.assert_close(metres, weak)
    assert float(fidelity_weights(0.0, source, mask).max()) == MAX_FIDELITY
    holes = mask.clone()
    holes[0, 0, 0, 0] = False
    assert float(fidelity_weights(4.0, source, holes)[0, 0, 0, 0]) == 0.0


def test_default_and_zero_noise_are_the_exact_consistency_to_the_bit():
    guide, depth, noisy = piecewise_scene(sigma=20.0)
    default = node_dada.upsample(guide, noisy, scale=4, num_iter=200)
    zero = node_dada.upsample(guide, noisy, scale=4, num_iter=200, source_noise=0.0)
    assert np.array_equal(default, zero)
    np.testing.assert_allclose(default.reshape(12, 4, 16, 4).mean((1, 3)), noisy, rtol=1e-5)


@pytest.mark.parametrize("solver", ["fast", "exact"])
def test_noisy_source_upsamples_closer_to_the_truth(solver):
    guide, depth, noisy = piecewise_scene(sigma=30.0)
    exact = node_dada.upsample(guide, noisy, scale=4, solver=solver, num_iter=2000)
    for noise in (30.0, "auto"):
        relaxed = node_dada.upsample(guide, noisy, scale=4, solver=solver, num_iter=2000,
                                     source_noise=noise)
        assert np.abs(relaxed - depth).mean() < 0.6 * np.abs(exact - depth).mean()


@pytest.mark.parametrize("value, phrase", [
    (-1.0, "standard deviation >= 0"), (float("nan"), "standard deviation >= 0"),
    ("loud", "'auto'"), (True, "'auto'"), ([1.0], "'auto'"),
])
def test_bad_source_noise_is_refused_with_one_clear_error(value, phrase):
    with pytest.raises(InputValueError, match=phrase):
        check_source_noise(value)
    guide, _, noisy = piecewise_scene()
    with pytest.raises(InputValueError, match="source_noise"):
        node_dada.upsample(guide, noisy, scale=4, source_noise=value)


def test_bad_fidelity_tensors_are_refused():
    depth0, cv, ch, source, mask, scale = problem()
    with pytest.raises(ShapeError, match="fidelity"):
        discrete_dada(depth0, cv, ch, source, mask, 2, fidelity=torch.ones(1, 1, 2, 2))
    with pytest.raises(InputValueError, match="fidelity"):
        solve_ode(depth0, cv, ch, source, mask, 1.0, fidelity=-torch.ones_like(source))


def test_command_line_source_noise(tmp_path):
    import cv2

    from node_dada.cli import main

    guide, _, noisy = piecewise_scene(sigma=20.0)
    cv2.imwrite(str(tmp_path / "guide.png"), (guide * 255).astype(np.uint8))
    np.save(tmp_path / "source.npy", noisy.astype(np.float32))
    out = tmp_path / "out.npy"
    code = main(["upsample", "--guide", str(tmp_path / "guide.png"), "--source",
                 str(tmp_path / "source.npy"), "--scale", "4", "--source-noise", "auto",
                 "--out", str(out)])
    assert code == 0 and np.load(out).shape == (48, 64)
    assert main(["upsample", "--guide", "g.png", "--source", "s.npy", "--scale", "4",
                 "--source-noise", "-2"]) == 2


# --- sensor-like degradations (node_dada.data.noise) ----------------------------------

@pytest.mark.parametrize("spec, phrase", [
    ("", "spec"), ("speckle:3", "unknown kind"), ("gaussian", "level"),
    ("dropout:1.5", "< 1"), ("tof:-0.1", ">= 0"), ("gaussian:20+tof:x", "level"),
])
def test_bad_noise_specs_are_refused(spec, phrase):
    from node_dada.data.noise import parse_sensor_noise

    with pytest.raises(InputValueError, match=phrase):
        parse_sensor_noise(spec)


@pytest.mark.parametrize("spec", ["gaussian:20", "tof:0.01", "stereo:0.02"])
def test_noise_models_have_the_standard_deviation_they_claim(spec):
    from node_dada.data.noise import parse_sensor_noise

    noise = parse_sensor_noise(spec)
    assert str(noise) == spec
    depth = torch.linspace(1000, 3000, 200 * 300).reshape(1, 1, 200, 300)
    mask = torch.ones_like(depth, dtype=torch.bool)
    noisy, kept = noise.apply(depth, mask, torch.Generator().manual_seed(0))
    error = (noisy - depth)[kept]
    sigma = noise.sigma(depth)[kept]
    assert abs(float(error.std() / sigma.square().mean().sqrt()) - 1) < 0.1
    again, _ = noise.apply(depth, mask, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_dropout_loses_the_fraction_asked_and_marks_it_invalid():
    from node_dada.data.noise import parse_sensor_noise

    depth = torch.full((1, 1, 100, 100), 2000.0)
    mask = torch.ones_like(depth, dtype=torch.bool)
    noisy, kept = parse_sensor_noise("tof:0.01+dropout:0.2").apply(
        depth, mask, torch.Generator().manual_seed(0))
    assert abs(float((~kept).float().mean()) - 0.2) < 0.02
    assert (noisy[~kept] == 0).all() and (noisy[kept] > 0).all()


def test_dataset_source_noise_is_fixed_in_evaluation_and_leaves_the_target():
    from node_dada.data.dataset import GuidedDepthDataset
    from node_dada.data.motorcycle import MotorcycleScenes

    clean = GuidedDepthDataset(MotorcycleScenes(), mode="eval", scale=8, crop_size=64)
    noisy = GuidedDepthDataset(MotorcycleScenes(), mode="eval", scale=8, crop_size=64,
                               source_noise="gaussian:20")
    first, again, reference = noisy[3], noisy[3], clean[3]
    assert torch.equal(first.source, again.source)
    assert torch.equal(first.target, reference.target)
    residual = (first.source - reference.source)[first.mask_lr] * first.depth_scale
    assert 14 < float(residual.std()) < 26
    assert not torch.equal(first.depth0, reference.depth0)


def test_noise_mixture_draws_each_alternative_and_keeps_clean_samples():
    from node_dada.data.noise import NoiseMixture, parse_sensor_noise

    spec = "clean|gaussian:20|tof:0.01+dropout:0.1"
    mixture = parse_sensor_noise(spec)
    assert isinstance(mixture, NoiseMixture) and str(mixture) == spec
    generator = torch.Generator().manual_seed(0)
    drawn = [mixture.draw(generator) for _ in range(300)]
    assert all(70 < count < 130 for count in (drawn.count(n) for n in mixture.alternatives))
    with pytest.raises(InputValueError, match="unknown kind"):
        parse_sensor_noise("clean|speckle:3")


def test_dataset_mixture_leaves_some_samples_clean_and_degrades_others():
    from node_dada.data.dataset import GuidedDepthDataset
    from node_dada.data.motorcycle import MotorcycleScenes

    clean = GuidedDepthDataset(MotorcycleScenes(), mode="eval", scale=8, crop_size=64)
    mixed = GuidedDepthDataset(MotorcycleScenes(), mode="eval", scale=8, crop_size=64,
                               source_noise="clean|gaussian:20")
    same = [torch.equal(mixed[i].source, clean[i].source) for i in range(12)]
    assert any(same) and not all(same)
    assert [torch.equal(mixed[i].source, clean[i].source) for i in range(12)] == same


def _noisy_batch(seed: int = 0, size: int = 32, scale: int = 4):
    import torch.nn.functional as F

    from node_dada.data.pipeline import Batch

    gen = torch.Generator().manual_seed(seed)
    target = torch.ones(2, 1, size, size)
    target[..., size // 2:] = 1.5
    source = F.avg_pool2d(target, scale) + 0.02 * torch.randn(2, 1, size // scale,
                                                              size // scale, generator=gen)
    depth0 = F.interpolate(source, scale_factor=scale, mode="bicubic", align_corners=False)
    return Batch(guide=torch.rand(2, 3, size, size, generator=gen), source=source,
                 mask_lr=torch.ones_like(source, dtype=torch.bool), depth0=depth0,
                 target=target, mask_hr=torch.ones_like(target, dtype=torch.bool),
                 depth_scale=1122.7, scale=scale, name=("a", "b"))


@pytest.mark.parametrize("noise", ["auto", 20.0])
def test_a_noise_aware_model_trains_through_the_relaxed_consistency(noise):
    from node_dada.models import DADAModule

    torch.manual_seed(0)
    batch = _noisy_batch()
    exact = DADAModule(extractor="light", kappa_map=True, lead_in=8, train_iter=4)
    aware = DADAModule(extractor="light", kappa_map=True, lead_in=8, train_iter=4,
                       assume_noise=noise)
    aware.load_state_dict(exact.state_dict())
    assert exact.batch_fidelity(batch) is None
    weights = aware.batch_fidelity(batch)
    assert weights.shape == batch.source.shape and (weights > 0).all()
    assert not weights.requires_grad
    exact.eval()
    aware.eval()
    relaxed, _ = aware(batch)
    strict, _ = exact(batch)
    # the exact model copies the noise into every block mean; the relaxed one does not
    assert torch.allclose(block_mean(strict, 4), batch.source, atol=1e-4)
    assert not torch.allclose(block_mean(relaxed, 4), batch.source, atol=1e-3)
    aware.train()
    prediction, _ = aware(batch, train=True)
    aware.loss(prediction, batch).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in aware.parameters())


def test_a_noise_aware_model_needs_the_discrete_solver():
    from node_dada.models import DADAModule

    with pytest.raises(InputValueError, match="solver 'discrete'"):
        DADAModule(extractor="light", solver="ode", grad_mode="adjoint", assume_noise="auto")
    with pytest.raises(InputValueError, match="assume_noise"):
        DADAModule(extractor="light", assume_noise="sometimes")
