"""Contracts of public functions: they refuse what they cannot do and leave the
caller's tensors as they came."""

from __future__ import annotations

import pytest
import torch

from node_dada.diffusion import block_mean, hard_adjust
from node_dada.diffusion.fidelity import coefficient_gradient
from node_dada.errors import ShapeError


def test_block_mean_refuses_a_size_that_is_not_a_multiple_of_the_scale() -> None:
    with pytest.raises(ShapeError, match="divisible by scale 4, got shape \\(1, 1, 9, 9\\)"):
        block_mean(torch.zeros(1, 1, 9, 9), 4)
    with pytest.raises(ShapeError):
        hard_adjust(torch.ones(1, 1, 9, 8), torch.ones(1, 1, 2, 2),
                    torch.ones(1, 1, 2, 2, dtype=torch.bool), 4)
    assert block_mean(torch.ones(1, 1, 8, 12), 4).shape == (1, 1, 2, 3)


def test_coefficient_gradient_leaves_the_callers_coefficients_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    depth0 = torch.rand(1, 1, 16, 16, generator=generator) + 0.5
    cv = torch.rand(1, 1, 15, 16, generator=generator)
    ch = torch.rand(1, 1, 16, 15, generator=generator)
    source = block_mean(depth0, 4)
    mask = torch.ones_like(source, dtype=torch.bool)
    before = cv.clone(), ch.clone()
    grad = coefficient_gradient(depth0, cv, ch, source, mask, 2.4, grad_mode="unrolled")
    assert grad.shape == (cv.numel() + ch.numel(),) and torch.isfinite(grad).all()
    assert not cv.requires_grad and not ch.requires_grad
    assert torch.equal(cv, before[0]) and torch.equal(ch, before[1])


def test_release_reads_the_validation_score_of_any_checkpoint_callback() -> None:
    from node_dada.models.release import best_validation_score

    score = torch.tensor(0.9072)
    for key in ("ModelCheckpoint{'monitor': 'val/mae_cm'}", "LastCheckpoint{'monitor': 'v'}"):
        content = {"callbacks": {"EpochSeeding": {}, key: {"best_model_score": score}}}
        assert best_validation_score(content) == pytest.approx(0.9072)
    assert best_validation_score({"callbacks": {"LastCheckpoint{}": {
        "best_model_score": None}}}) is None
