"""The ODE's right-hand side (docs/design.md section 4): diffusion projected onto the
tangent space of the constraint ``P(I) = source``, or relaxed by a fidelity term.

Vector fields (``D`` the diffusion operator, ``P``/``U`` block mean and nearest
upsampling):

- ``multiplicative`` (default): ``f(I) = D(I) - I * U(P(D(I)) / P(I))`` on valid
  blocks, ``D(I)`` on invalid ones. One Euler step with ``h = lam`` is one
  discrete iteration up to ``O(lam^2)`` and the operator splitting.
- ``additive``: ``f(I) = D(I) - U(P(D(I)))`` (linear; its steady state minimises
  ``sum c |grad I|^2`` under the constraint).

Both keep ``P(I)`` fixed on valid blocks (``P(f) = 0``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from node_dada.diffusion import compiled as _compiled
from node_dada.diffusion import fused as _fused
from node_dada.diffusion.noise import relaxed_field_term
from node_dada.diffusion.operators import block_mean, diffusion_operator, upsample_nearest
from node_dada.errors import SolverError

__all__ = ["PROJECTIONS", "EvaluationBudget", "ProjectedDiffusion", "projected_field"]

PROJECTIONS = ("multiplicative", "additive")


def projected_field(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    projection: str = "multiplicative",
    *,
    source: torch.Tensor | None = None,
    fidelity: torch.Tensor | None = None,
) -> torch.Tensor:
    """The right-hand side ``f(I)``: diffusion projected onto the constraint's tangent
    space, or with ``fidelity`` (per-block weights ``mu``, and ``source``) the relaxed
    field ``D(I) + U(mu * (source - P(I)))`` (``noise.py``)."""
    diffused = diffusion_operator(image, cv, ch)
    if fidelity is not None:
        return diffused + relaxed_field_term(image, source, mask_lr, scale, fidelity)
    pooled = block_mean(diffused, scale)
    if projection == "multiplicative":
        ratio = torch.where(mask_lr, pooled / block_mean(image, scale), torch.zeros_like(pooled))
        return diffused - image * upsample_nearest(ratio, scale)
    correction = torch.where(mask_lr, pooled, torch.zeros_like(pooled))
    return diffused - upsample_nearest(correction, scale)


@dataclass
class EvaluationBudget:
    """Function evaluations of one solve, counted against ``max_nfe`` (``None``: no
    budget); ``phase`` names the pass that is counting, for the error message. Shared
    by a field and every copy of it bound to other coefficients."""

    max_nfe: int | None
    nfe: int = 0
    phase: str = "forward"

    def count(self, t: torch.Tensor | float) -> None:
        self.nfe += 1
        if self.max_nfe is not None and self.nfe > self.max_nfe:
            raise SolverError(
                f"solve_ode: the {self.phase} pass exceeded the budget of max_nfe={self.max_nfe} "
                f"function evaluations at t={float(t):.4g}; loosen rtol/atol, take a larger "
                "step, use a stabilised method ('rkc') or raise max_nfe"
            )


class ProjectedDiffusion(nn.Module):
    """torchdiffeq vector field ``f(t, I)`` with an NFE counter and budget.

    ``cv``/``ch`` are plain attributes (not parameters) so that the same tensors
    can be handed to ``odeint_adjoint`` as ``adjoint_params``. The backward passes
    evaluate the field with other versions of them (detached, or leaves that
    collect a gradient): ``with_coefficients`` gives such a copy, which counts
    against the same budget.
    """

    def __init__(self, cv: torch.Tensor, ch: torch.Tensor, mask_lr: torch.Tensor, scale: int,
                 projection: str, max_nfe: int | None, *, source: torch.Tensor | None = None,
                 fidelity: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cv, self.ch, self.mask_lr, self.scale = cv, ch, mask_lr, scale
        # relaxed consistency (noise.py): the fidelity term instead of the projection
        self.source, self.fidelity = source, fidelity
        self.projection = projection
        self.budget = EvaluationBudget(max_nfe)
        # adjoint_naive's guard: the range a backward-reconstructed state must stay in
        self.watch_range: tuple[float, float] | None = None
        # fused kernels (fused.py): None decides per call from the state's size;
        # solve_ode sets it from the whole solve's work
        self.fused: bool | None = None

    @property
    def nfe(self) -> int:
        """Evaluations so far, by this field and every copy of it."""
        return self.budget.nfe

    def with_coefficients(self, cv: torch.Tensor, ch: torch.Tensor) -> ProjectedDiffusion:
        """The same field with coefficients ``cv``/``ch`` (same shapes), counting against
        this field's budget; ``self`` is left as it is."""
        bound = copy.copy(self)
        bound.cv, bound.ch = cv, ch
        return bound

    def uses_fused(self, image: torch.Tensor) -> bool:
        if self.fused is False or self.fidelity is not None:
            return False
        return _fused.supports(image, self.cv, self.ch,
                               work=math.inf if self.fused else None) and _fused.fits(
            image, self.cv, self.ch, self.mask_lr, self.scale)

    def forward(self, t: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        t = self.count(t)
        if self.watch_range is not None:
            self._check_reconstructed(t, image)
        if self.fidelity is not None:
            return projected_field(image, self.cv, self.ch, self.mask_lr, self.scale,
                                   source=self.source, fidelity=self.fidelity)
        if self.uses_fused(image):
            return _fused.projected_field(image, self.cv, self.ch, self.mask_lr, self.scale,
                                          self.projection)
        if _compiled.supports(image):
            return _compiled.call(projected_field, image, self.cv, self.ch, self.mask_lr,
                                  self.scale, self.projection)
        return projected_field(image, self.cv, self.ch, self.mask_lr, self.scale, self.projection)

    def count(self, t: torch.Tensor | float) -> torch.Tensor | float:
        """Count one evaluation against the budget; returns ``t`` detached."""
        t = t.detach() if isinstance(t, torch.Tensor) else t
        self.budget.count(t)
        return t

    def _check_reconstructed(self, t: torch.Tensor, image: torch.Tensor) -> None:
        low, high = self.watch_range
        margin = high - low + abs(high)
        values = image.detach()
        if not torch.isfinite(values).all() or values.min() < low - margin or \
                values.max() > high + margin:
            raise SolverError(
                f"adjoint_naive: the state reconstructed backward in time diverged at "
                f"t={float(t):.4g} (range [{float(values.min()):.3g}, {float(values.max()):.3g}] "
                f"against [{low:.3g}, {high:.3g}] in the forward pass): integrating a diffusion "
                "backward is anti-diffusion and amplifies round-off. Use grad_mode='adjoint' "
                "(stable) or 'checkpointed'"
            )
