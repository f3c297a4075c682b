from __future__ import annotations

import math

import pytest
import torch

from node_dada.diffusion import (
    DEFAULT_LOG_KAPPA,
    block_mean,
    diffusion_operator,
    discrete_dada,
    edge_coefficients,
    perona_malik,
    upsample_nearest,
)
from node_dada.errors import InputValueError, ShapeError


def test_edge_coefficients_shapes_range_and_values():
    features = torch.rand(2, 5, 9, 7)
    cv, ch = edge_coefficients(features, 0.1)
    assert cv.shape == (2, 1, 8, 7) and ch.shape == (2, 1, 9, 6)
    assert (cv > 0).all() and (cv <= 1).all() and (ch > 0).all() and (ch <= 1).all()
    # one entry by hand: g(mean_k |F[k,1,0] - F[k,0,0]|)
    x = (features[0, :, 1, 0] - features[0, :, 0, 0]).abs().mean()
    assert torch.isclose(cv[0, 0, 0, 0], 1 / (1 + x**2 / 0.01))
    x = (features[1, :, 3, 5] - features[1, :, 3, 4]).abs().mean()
    assert torch.isclose(ch[1, 0, 3, 4], 1 / (1 + x**2 / 0.01))


def test_edge_coefficients_flat_features_give_one_and_kappa_tensor_is_differentiable():
    log_kappa = torch.tensor(DEFAULT_LOG_KAPPA, requires_grad=True)
    assert math.isclose(log_kappa.exp().item(), 0.03, rel_tol=1e-6)
    cv, ch = edge_coefficients(torch.ones(1, 3, 4, 4), log_kappa.exp())
    assert torch.equal(cv, torch.ones_like(cv)) and torch.equal(ch, torch.ones_like(ch))
    cv, _ = edge_coefficients(torch.rand(1, 3, 4, 4), log_kappa.exp())
    cv.sum().backward()
    assert log_kappa.grad is not None and log_kappa.grad != 0


def test_edge_coefficients_gradcheck():
    features = torch.rand(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: edge_coefficients(f, 0.5), (features,))


@pytest.mark.parametrize(
    ("features", "kappa", "error"),
    [
        (torch.rand(3, 4, 4), 0.1, ShapeError),
        (torch.rand(1, 1, 1, 4), 0.1, ShapeError),
        (torch.rand(1, 3, 4, 4), 0.0, InputValueError),
        (torch.rand(1, 3, 4, 4), -1.0, InputValueError),
    ],
)
def test_edge_coefficients_bad_input(features, kappa, error):
    with pytest.raises(error):
        edge_coefficients(features, kappa)


def test_perona_malik_known_values():
    assert perona_malik(torch.tensor(0.0), 0.5) == 1.0
    assert torch.isclose(perona_malik(torch.tensor(0.5), 0.5), torch.tensor(0.5))


def test_pooling_and_upsampling_are_adjoint_up_to_scale_squared():
    image = torch.rand(2, 1, 12, 8, dtype=torch.float64)
    low = torch.rand(2, 1, 3, 2, dtype=torch.float64)
    lhs = (block_mean(image, 4) * low).sum()
    rhs = (image * upsample_nearest(low, 4)).sum() / 16
    assert torch.isclose(lhs, rhs)
    torch.testing.assert_close(block_mean(upsample_nearest(low, 4), 4), low)


def test_diffusion_operator_matches_the_formula_and_conserves_mass():
    image = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    cv, ch = edge_coefficients(torch.rand(1, 3, 5, 6, dtype=torch.float64), 0.4)
    out = diffusion_operator(image, cv, ch)
    i, j = 2, 3
    expected = (
        cv[0, 0, i, j] * (image[0, 0, i + 1, j] - image[0, 0, i, j])
        - cv[0, 0, i - 1, j] * (image[0, 0, i, j] - image[0, 0, i - 1, j])
        + ch[0, 0, i, j] * (image[0, 0, i, j + 1] - image[0, 0, i, j])
        - ch[0, 0, i, j - 1] * (image[0, 0, i, j] - image[0, 0, i, j - 1])
    )
    assert torch.isclose(out[0, 0, i, j], expected)
    # zero flux across the border: the operator conserves the total
    assert abs(out.sum().item()) < 1e-12


def test_one_iteration_is_diffusion_plus_adjustment_to_first_order():
    """Without the operator splitting, one step is I + lam * D(I), then A."""
    image = torch.rand(1, 1, 8, 8, dtype=torch.float64) + 1
    cv, ch = edge_coefficients(torch.rand(1, 3, 8, 8, dtype=torch.float64), 0.5)
    source = block_mean(image, 2)
    mask = torch.ones_like(source, dtype=torch.bool)
    lam = 1e-4
    step = discrete_dada(image, cv, ch, source, mask, 1, step=lam)
    from node_dada.diffusion import hard_adjust

    first_order = hard_adjust(image + lam * diffusion_operator(image, cv, ch), source, mask, 2)
    assert (step - first_order).abs().max() < 10 * lam**2
