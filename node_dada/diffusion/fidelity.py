"""Gradient fidelity (docs/design.md section 4): how close a gradient mode's gradient
w.r.t. the coefficients is to a float64 reference on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from node_dada.diffusion.discrete import discrete_dada
from node_dada.diffusion.ode import solve_ode

__all__ = ["Fidelity", "coefficient_gradient", "gradient_fidelity"]


@dataclass(frozen=True)
class Fidelity:
    cosine: float
    relative_error: float
    reference_norm: float


def _loss_weights(depth0: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(depth0.shape, generator=generator, dtype=torch.float64)


def coefficient_gradient(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    t_end: float,
    *,
    grad_mode: str,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    **solve_kwargs: Any,
) -> torch.Tensor:
    """Gradient of the fixed random linear loss ``sum(w * output)`` w.r.t. ``(cv, ch)``,
    flattened, for one gradient mode (``"unrolled"`` = the discrete iteration with
    ``t_end / step`` iterations)."""
    dtype = dtype or depth0.dtype
    depth0_, source_ = depth0.to(dtype), source.to(dtype)
    # fresh leaves: the caller's cv and ch are left as they came (no requires_grad set)
    cv_ = cv.detach().to(dtype).clone().requires_grad_(True)
    ch_ = ch.detach().to(dtype).clone().requires_grad_(True)
    with torch.enable_grad():
        if grad_mode == "unrolled":
            step = solve_kwargs.get("step_size", 0.24)
            output = discrete_dada(depth0_, cv_, ch_, source_, mask_lr,
                                   int(round(t_end / step)), step)
        else:
            output, _ = solve_ode(depth0_, cv_, ch_, source_, mask_lr, t_end,
                                  grad_mode=grad_mode, **solve_kwargs)
        loss = (output * _loss_weights(depth0, seed).to(output)).sum()
        grad_cv, grad_ch = torch.autograd.grad(loss, (cv_, ch_))
    return torch.cat([grad_cv.flatten(), grad_ch.flatten()]).double()


def gradient_fidelity(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    t_end: float,
    *,
    grad_mode: str,
    reference_mode: str = "direct",
    reference: torch.Tensor | None = None,
    seed: int = 0,
    **solve_kwargs: Any,
) -> Fidelity:
    """Cosine similarity and relative error of ``grad_mode``'s coefficient gradient
    (in the inputs' dtype) against ``reference_mode``'s in float64 with the same
    solver settings. Pass a precomputed ``reference`` (from ``coefficient_gradient``)
    to compare several modes against one reference."""
    if reference is None:
        reference = coefficient_gradient(depth0, cv, ch, source, mask_lr, t_end,
                                         grad_mode=reference_mode, dtype=torch.float64,
                                         seed=seed, **solve_kwargs)
    gradient = coefficient_gradient(depth0, cv, ch, source, mask_lr, t_end,
                                    grad_mode=grad_mode, seed=seed, **solve_kwargs)
    ref_norm = float(reference.norm())
    cosine = float(gradient @ reference / (gradient.norm() * reference.norm() + 1e-300))
    return Fidelity(cosine, float((gradient - reference).norm()) / max(ref_norm, 1e-300),
                    ref_norm)
