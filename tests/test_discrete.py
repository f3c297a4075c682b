"""The discrete iteration against an independent implementation of docs/design.md s. 3."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from node_dada.diffusion import (
    block_mean,
    discrete_dada,
    discrete_dada_two_phase,
    edge_coefficients,
    hard_adjust,
)
from node_dada.errors import InputTypeError, InputValueError, NodeDadaError, ShapeError


def reference_dada(depth0, cv, ch, source, mask, num_iter, lam=0.24, eps=1e-8):
    """Straightforward numpy transcription of the three steps, in place, float32."""
    image = depth0.copy()
    scale = image.shape[-1] // source.shape[-1]
    batch, _, height, width = image.shape
    for _ in range(num_iter):
        d = image[:, :, 1:, :] - image[:, :, :-1, :]
        t = lam * cv * d
        image[:, :, 1:, :] -= t
        image[:, :, :-1, :] += t
        d = image[:, :, :, 1:] - image[:, :, :, :-1]
        t = lam * ch * d
        image[:, :, :, 1:] -= t
        image[:, :, :, :-1] += t
        pooled = image.reshape(batch, 1, height // scale, scale, width // scale, scale).mean(
            axis=(3, 5)
        )
        ratio = source / (pooled + eps)
        ratio[~mask] = 1.0
        image = image * np.repeat(np.repeat(ratio, scale, axis=2), scale, axis=3)
    return image


def random_problem(batch=2, h=6, w=5, scale=4, dtype=torch.float32, holes=False):
    big_h, big_w = h * scale, w * scale
    depth0 = (torch.rand(batch, 1, big_h, big_w) + 0.5).to(dtype)
    features = torch.rand(batch, 4, big_h, big_w).to(dtype)
    cv, ch = edge_coefficients(features, 0.3)
    source = (torch.rand(batch, 1, h, w) + 0.5).to(dtype)
    mask = torch.ones(batch, 1, h, w, dtype=torch.bool)
    if holes:
        mask[:, :, 1:3, 2] = False
        mask[0, 0, 4, 0] = False
        source[~mask] = float("nan")
    return depth0, cv, ch, source, mask


@pytest.mark.parametrize("holes", [False, True], ids=["all-valid", "masked"])
def test_matches_independent_implementation_after_1000_iterations(holes):
    depth0, cv, ch, source, mask = random_problem(holes=holes)
    ours = discrete_dada(depth0, cv, ch, source, mask, 1000)
    theirs = reference_dada(
        depth0.numpy(), cv.numpy(), ch.numpy(), source.numpy(), mask.numpy(), 1000
    )
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=2e-6, atol=2e-6)


def test_block_means_equal_source_after_every_iteration():
    depth0, cv, ch, source, mask = random_problem(holes=True)
    image = depth0
    for _ in range(20):
        image = discrete_dada(image, cv, ch, source, mask, 1)
        pooled = block_mean(image, 4)
        torch.testing.assert_close(pooled[mask], source[mask], rtol=1e-6, atol=1e-6)


def test_invalid_blocks_are_diffused_not_adjusted():
    depth0, cv, ch, source, mask = random_problem(holes=True)
    out = discrete_dada(depth0, cv, ch, source, mask, 50)
    assert torch.isfinite(out).all()
    assert not torch.allclose(block_mean(out, 4)[~mask], block_mean(depth0, 4)[~mask])


def test_constant_image_stays_constant():
    depth0 = torch.full((1, 1, 16, 16), 2.5)
    cv, ch = edge_coefficients(torch.rand(1, 3, 16, 16), 0.03)
    source = torch.full((1, 1, 4, 4), 2.5)
    out = discrete_dada(depth0, cv, ch, source, torch.ones_like(source, dtype=torch.bool), 200)
    torch.testing.assert_close(out, depth0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("factor", [0.01, 7.0, 1000.0])
def test_scaling_source_and_estimate_scales_output(factor):
    depth0, cv, ch, source, mask = random_problem(dtype=torch.float64)
    base = discrete_dada(depth0, cv, ch, source, mask, 100)
    scaled = discrete_dada(depth0 * factor, cv, ch, source * factor, mask, 100)
    # Exact but for eps = 1e-8 in the adjustment: each step perturbs by at most
    # eps / P(I) relative, with P(I) >= 0.5 * factor here (and >= 0.5 in the base run).
    rtol = 1e-12 + 100 * 1e-8 / (0.5 * min(factor, 1.0))
    torch.testing.assert_close(scaled, base * factor, rtol=rtol, atol=0)


def test_inputs_come_back_unchanged():
    depth0, cv, ch, source, mask = random_problem(holes=True)
    copies = [t.clone() for t in (depth0, cv, ch, source, mask)]
    discrete_dada(depth0, cv, ch, source, mask, 10)
    discrete_dada_two_phase(depth0, cv, ch, source, mask, num_pre=5, num_train=5)
    for before, after in zip(copies, (depth0, cv, ch, source, mask), strict=True):
        assert torch.equal(before.nan_to_num(-1), after.nan_to_num(-1))


def test_non_contiguous_inputs_give_the_same_result():
    depth0, cv, ch, source, mask = random_problem(h=5, w=5)
    contiguous = discrete_dada(depth0, cv, ch, source, mask, 30)
    depth_t = depth0.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not depth_t.is_contiguous()
    torch.testing.assert_close(discrete_dada(depth_t, cv, ch, source, mask, 30), contiguous)


def test_gradcheck_float64():
    depth0, cv, ch, source, mask = random_problem(batch=1, h=2, w=2, scale=2, dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (depth0, cv, ch, source)]

    def run(d0, c_v, c_h, src):
        return discrete_dada(d0, c_v, c_h, src, mask, 3)

    assert torch.autograd.gradcheck(run, inputs)


def test_matches_reference_in_float64_too():
    depth0, cv, ch, source, mask = random_problem(dtype=torch.float64, holes=True)
    ours = discrete_dada(depth0, cv, ch, source, mask, 200)
    theirs = reference_dada(
        depth0.numpy(), cv.numpy(), ch.numpy(), source.numpy(), mask.numpy(), 200
    )
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-12, atol=1e-12)


def test_two_phase_equals_plain_run_and_only_trains_the_tail():
    depth0, cv, ch, source, mask = random_problem()
    cv = cv.clone().requires_grad_()
    out, num_pre = discrete_dada_two_phase(depth0, cv, ch, source, mask, num_pre=30, num_train=7)
    assert num_pre == 30
    torch.testing.assert_close(out, discrete_dada(depth0, cv, ch, source, mask, 37))
    out.sum().backward()
    assert cv.grad is not None and cv.grad.abs().sum() > 0


def test_two_phase_lead_in_is_drawn_below_num_pre():
    depth0, cv, ch, source, mask = random_problem()
    rng = random.Random(3)
    drawn = {
        discrete_dada_two_phase(
            depth0, cv, ch, source, mask, num_pre=4, num_train=1, randomize_pre=True, rng=rng
        )[1]
        for _ in range(40)
    }
    assert drawn == {0, 1, 2, 3}


def test_hard_adjust_restores_block_means():
    image = torch.rand(2, 1, 12, 9) + 0.1
    source = torch.rand(2, 1, 4, 3) + 0.1
    mask = torch.rand(2, 1, 4, 3) > 0.3
    out = hard_adjust(image, source, mask, 3)
    torch.testing.assert_close(block_mean(out, 3)[mask], source[mask])
    torch.testing.assert_close(block_mean(out, 3)[~mask], block_mean(image, 3)[~mask])


@pytest.mark.parametrize(
    ("change", "error", "phrase"),
    [
        (lambda a: a.update(depth0=a["depth0"][0]), ShapeError, "depth0"),
        (lambda a: a.update(source=a["source"][:, :, :5]), ShapeError, "source"),
        (lambda a: a.update(cv=a["cv"][..., 1:, :]), ShapeError, "cv"),
        (lambda a: a.update(ch=a["ch"][..., 1:]), ShapeError, "ch"),
        (lambda a: a.update(depth0=a["depth0"].to(torch.int64)), InputTypeError, "float32"),
        (lambda a: a.update(mask_lr=torch.zeros_like(a["mask_lr"])), InputValueError, "all-invalid"),
        (lambda a: a.update(mask_lr=a["mask_lr"][:, :, :2]), ShapeError, "mask_lr"),
        (lambda a: a.update(depth0=a["depth0"] * float("nan")), InputValueError, "depth0"),
        (lambda a: a.update(num_iter=2.5), InputValueError, "num_iter"),
        (lambda a: a.update(source=a["source"][:1]), ShapeError, "batch"),
        (lambda a: a.update(depth0=a["depth0"].numpy()), InputTypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_named_errors(change, error, phrase):
    depth0, cv, ch, source, mask = random_problem()
    args = {"depth0": depth0, "cv": cv, "ch": ch, "source": source, "mask_lr": mask, "num_iter": 3}
    change(args)
    with pytest.raises(error, match=phrase) as info:
        discrete_dada(**args)
    assert isinstance(info.value, NodeDadaError)
