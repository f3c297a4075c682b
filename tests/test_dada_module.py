"""DADAModule's learned local edge sensitivity (``kappa_map``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from node_dada.data.pipeline import Batch
from node_dada.diffusion import learning_free_coefficients, perona_malik
from node_dada.errors import InputValueError
from node_dada.models import DADAModule


def _batch(seed: int = 0, size: int = 32, scale: int = 4) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    target = torch.ones(2, 1, size, size)
    target[..., size // 2:] = 1.5  # one vertical depth step in each image
    target += 0.001 * torch.rand(2, 1, size, size, generator=gen)
    source = F.avg_pool2d(target, scale)
    depth0 = F.interpolate(source, scale_factor=scale, mode="bicubic", align_corners=False)
    return Batch(guide=torch.rand(2, 3, size, size, generator=gen), source=source,
                 mask_lr=torch.ones_like(source, dtype=torch.bool), depth0=depth0,
                 target=target, mask_hr=torch.ones_like(target, dtype=torch.bool),
                 depth_scale=1122.7, scale=scale, name=("a", "b"))


@pytest.mark.parametrize("head", ["residual", "kappa_map"])
def test_learned_heads_start_at_the_learning_free_coefficients_and_learn(head) -> None:
    torch.manual_seed(0)
    model = DADAModule(extractor="light", **{head: True})
    guide, depth0 = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32) + 1
    cv, ch = model.coefficients(guide, depth0)
    reference = learning_free_coefficients(guide, depth0)
    torch.testing.assert_close(cv, reference[0], rtol=0, atol=0)
    torch.testing.assert_close(ch, reference[1], rtol=0, atol=0)
    (cv.sum() + ch.sum()).backward()
    # the zero head still receives a gradient, so training moves away from the start
    assert model.extractor.head.weight.grad.abs().sum() > 0
    with pytest.raises(InputValueError, match=head):
        DADAModule(extractor="none", **{head: True})


def test_kappa_map_gain_scales_the_edge_strength_like_a_local_kappa() -> None:
    model = DADAModule(extractor="light", kappa_map=True)
    with torch.no_grad():
        model.extractor.head.bias.copy_(torch.tensor([1.0, -2.0]))  # a_v = 1, a_h = -2
    guide, depth0 = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 16) + 1
    cv, ch = model.coefficients(guide, depth0)
    features = torch.cat([guide, depth0], dim=1)
    strength_v = (features[:, :, 1:] - features[:, :, :-1]).abs().mean(1, keepdim=True)
    strength_h = (features[..., 1:] - features[..., :-1]).abs().mean(1, keepdim=True)
    kappa = model.log_kappa.exp()
    gain = lambda a: 6.0 * torch.tanh(torch.tensor(a) / 6.0)  # noqa: E731 (bounded gain)
    torch.testing.assert_close(cv, perona_malik(strength_v, kappa / gain(1.0).exp()))
    torch.testing.assert_close(ch, perona_malik(strength_h, kappa / gain(-2.0).exp()))


def test_kappa_map_and_residual_are_exclusive() -> None:
    with pytest.raises(InputValueError, match="choose one"):
        DADAModule(extractor="light", kappa_map=True, residual=True)


def test_rkc_lead_in_draws_the_start_with_growing_rkc_steps(monkeypatch) -> None:
    import node_dada.models.dada_module as module

    calls = []
    real = module.solve_ode

    def recording(*args, **kwargs):
        calls.append((args[5], kwargs.get("method"), kwargs.get("step_growth"),
                      kwargs.get("grad_mode")))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "solve_ode", recording)
    model = DADAModule(extractor="light", kappa_map=True, solver="ode", grad_mode="adjoint",
                       lead_in=400, train_iter=4, lead_in_solver="rkc")
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(2, 1, 4, 4, generator=gen) + 1
    depth0 = torch.nn.functional.interpolate(source, scale_factor=8, mode="bicubic")
    cv, ch = model.coefficients(torch.rand(2, 3, 32, 32, generator=gen), depth0)
    mask = torch.ones_like(source, dtype=torch.bool)
    depth, info = model._forward_ode(depth0, cv, ch, source, mask, train=True)
    (lead, method, growth, _), (horizon, train_method, _, mode) = calls
    assert 0 < lead < 0.24 * 400 and info["lead_in"] == lead
    assert (method, growth) == ("rkc", 1.5)
    assert train_method == "euler" and mode == "adjoint" and horizon == pytest.approx(0.24 * 4)
    depth.sum().backward()  # the horizon with gradient still reaches the coefficients
    assert model.extractor.head.weight.grad.abs().sum() > 0


def test_lead_in_solver_is_checked() -> None:
    with pytest.raises(InputValueError, match="expected 'training' or 'rkc'"):
        DADAModule(extractor="light", solver="ode", grad_mode="adjoint", lead_in_solver="euler")
    with pytest.raises(InputValueError, match="discrete solver"):
        DADAModule(extractor="light", lead_in_solver="rkc")
