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


def _perturbed_model(extractor: str, **head) -> DADAModule:
    """A float64 model in eval mode whose weights and batch statistics are all non-zero."""
    torch.manual_seed(0)
    model = DADAModule(extractor=extractor, **head).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter += 0.05 * torch.randn_like(parameter)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer += 0.1 * torch.randn_like(buffer)
    return model


def _image(height: int = 161, width: int = 601) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (torch.rand(1, 3, height, width, generator=gen, dtype=torch.float64),
            1 + torch.rand(1, 1, height, width, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("head", [{"kappa_map": True}, {"residual": True}, {}])
def test_tiled_coefficients_equal_the_untiled_ones(head) -> None:
    """Tiles of 128 with margins of the receptive radius (160), on an image whose sides
    are not multiples of the stride and wide enough for windows cut on both sides:
    every core pixel sees what it sees untiled."""
    model = _perturbed_model("light", **head)
    guide, depth0 = _image()
    calls = []
    model.extractor.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        whole = model.coefficients(guide, depth0)
        tiled = model.coefficients(guide, depth0, tile=128)
    assert len(calls) == 1 + 2 * 5  # one untiled call, then 2 x 5 tiles (192 x 608 / 128)
    for one, other in zip(whole, tiled, strict=True):
        assert one.shape == other.shape
        torch.testing.assert_close(other, one, rtol=0, atol=1e-12)


def test_tiles_need_their_margin(monkeypatch) -> None:
    """The same comparison with one stride of margin fails: the margin is what makes tiles exact."""
    model = _perturbed_model("light", kappa_map=True)
    guide, depth0 = _image()
    with torch.no_grad():
        whole = model.coefficients(guide, depth0)
        monkeypatch.setattr(type(model.extractor), "receptive_radius", property(lambda _: 1))
        tiled = model.coefficients(guide, depth0, tile=128)
    assert (whole[0] - tiled[0]).abs().max() > 1e-6


def test_receptive_radius_bounds_the_reach_of_one_input_pixel() -> None:
    model = _perturbed_model("light", kappa_map=True)
    x = torch.rand(1, 4, 512, 512, dtype=torch.float64)
    with torch.no_grad():
        changed = (model.extractor(x) - model.extractor(x.index_put(
            (torch.tensor([0]), torch.tensor([0]), torch.tensor([250]), torch.tensor([261])),
            torch.tensor(1.0, dtype=torch.float64), accumulate=True))).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(changed > 0, as_tuple=True)
    reach = max(int((rows - 250).abs().max()), int((cols - 261).abs().max()))
    assert 60 < reach <= model.extractor.receptive_radius


def test_paper_recipe_extractors_run_untiled() -> None:
    model = _perturbed_model("resnet18", kappa_map=True)
    guide, depth0 = _image(96, 96)
    with torch.no_grad():
        assert model._tiled_coefficients(guide, depth0, 32) is None
    with pytest.raises(InputValueError, match="multiple of 32"):
        _perturbed_model("light").coefficients(guide, depth0, tile=48)


def test_init_from_starts_at_another_models_weights_and_checks_the_architecture() -> None:
    from node_dada.models.inference import _model_hparams, load_model

    parent = load_model("middlebury-x16-discrete")
    hp = parent.hparams
    child = DADAModule(extractor=hp["extractor"], kappa_map=hp["kappa_map"], solver="ode",
                       grad_mode="adjoint", lead_in_solver="rkc",
                       init_from="middlebury-x16-discrete")
    theirs, ours = parent.state_dict(), child.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    # a checkpoint of the fine-tuned model loads without the parent
    assert "init_from" not in _model_hparams(dict(child.hparams))
    with pytest.raises(InputValueError, match="kappa_map=True.*--model.kappa_map"):
        DADAModule(extractor=hp["extractor"], kappa_map=False,
                   init_from="middlebury-x16-discrete")
