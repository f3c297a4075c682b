"""The fused unrolled gradient of the discrete iteration (``diffusion/unrolled.py``)
against autograd through the eager loop it replaces.

Expected values come from the eager loop itself (``fused.using("never")``), run in
the same test, and from ``torch.autograd.gradcheck`` (finite differences, float64).
"""

from __future__ import annotations

import pytest
import torch

from node_dada.diffusion import discrete_dada, discrete_dada_two_phase, edge_coefficients, fused
from node_dada.diffusion.unrolled import unrolled_iterate
from node_dada.errors import InputValueError

needs_numba = pytest.mark.skipif(not fused.available(), reason="numba is not installed")
F64 = torch.float64


def problem(batch=3, h=5, w=7, scale=4, dtype=F64, seed=0):
    """A problem with invalid blocks and coefficients from features (some edges near 0)."""
    gen = torch.Generator().manual_seed(seed)
    big_h, big_w = h * scale, w * scale
    depth0 = (torch.rand(batch, 1, big_h, big_w, generator=gen) + 0.5).to(dtype)
    cv, ch = edge_coefficients(torch.rand(batch, 4, big_h, big_w, generator=gen).to(dtype), 0.3)
    source = (torch.rand(batch, 1, h, w, generator=gen) + 0.5).to(dtype)
    mask = torch.rand(batch, 1, h, w, generator=gen) > 0.25
    mask[0, 0, 0, 0] = False
    return depth0, cv, ch, source, mask


def gradients(depth0, cv, ch, source, mask, num_iter, weights, mode):
    inputs = [t.clone().requires_grad_(True) for t in (depth0, cv, ch)]
    with fused.using(mode):
        out = discrete_dada(*inputs, source, mask, num_iter)
    return out, torch.autograd.grad((out * weights).sum(), inputs)


@needs_numba
@pytest.mark.parametrize(("dtype", "tolerance"), [(F64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize(("scale", "num_iter"), [(4, 37), (2, 1), (8, 16)])
def test_gradients_match_autograd_through_the_eager_loop(dtype, tolerance, scale, num_iter):
    problem_ = problem(scale=scale, dtype=dtype)
    weights = torch.randn(problem_[0].shape, generator=torch.Generator().manual_seed(1),
                          dtype=dtype)
    eager, expected = gradients(*problem_, num_iter, weights, "never")
    fast, got = gradients(*problem_, num_iter, weights, "always")
    assert fast.grad_fn is not None and "Unrolled" in type(fast.grad_fn).__name__
    assert torch.equal(fast, eager)  # the forward is the fused kernel: bit-identical
    for name, want, have in zip(("depth0", "cv", "ch"), expected, got, strict=True):
        error = float((have - want).abs().max() / want.abs().max())
        assert error < tolerance, f"{name}: relative error {error:.2e}"


@needs_numba
def test_gradcheck_against_finite_differences():
    depth0, cv, ch, source, mask = problem(batch=2, h=2, w=3, scale=2)
    inputs = tuple(t.clone().requires_grad_(True) for t in (depth0, cv, ch))

    def run(image, cv_, ch_):
        return unrolled_iterate(image, cv_, ch_, source, mask, 2, 6, 0.24)

    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-8)


@needs_numba
def test_training_phases_take_the_fused_backward_and_report_progress():
    depth0, cv, ch, source, mask = problem(dtype=torch.float32)
    cv = cv.clone().requires_grad_(True)
    with fused.using("always"):
        out, lead = discrete_dada_two_phase(depth0, cv, ch, source, mask, num_pre=20,
                                            num_train=10)
        seen: list[int] = []
        discrete_dada(depth0, cv, ch, source, mask, 10, callback=seen.append)
    assert "Unrolled" in type(out.grad_fn).__name__ and lead == 20
    assert seen == [4, 8, 10]  # segments of ceil(sqrt(10)) iterations
    out.sum().backward()
    assert torch.isfinite(cv.grad).all() and cv.grad.abs().sum() > 0


@needs_numba
def test_a_source_that_takes_gradient_keeps_the_eager_loop():
    depth0, cv, ch, source, mask = problem()
    source = source.clone().requires_grad_(True)
    with fused.using("always"):
        out = discrete_dada(depth0, cv, ch, source, mask, 5)
    assert "Unrolled" not in type(out.grad_fn).__name__
    out.sum().backward()
    assert source.grad is not None
    with pytest.raises(InputValueError, match="source"):
        unrolled_iterate(depth0, cv, ch, source, mask, 4, 5, 0.24)
