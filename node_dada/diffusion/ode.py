"""The continuous formulation (docs/design.md section 4): DADA's diffusion-adjustment
iteration as an ODE on the constraint manifold ``P(I) = source``, solved with
torchdiffeq, and its gradient modes looked up by name.

The solve is in rooms, one mechanism each:

- ``field.py``: the vector field ``f(I)`` (the projected diffusion, ``multiplicative``
  or ``additive``, or the relaxed field of a noisy source) and its NFE budget;
- ``grid.py``: the time grid (steps, leaves) and ``SolveInfo``, what a solve cost;
- ``segmented.py``: a solve without a graph whose backward runs leaf by leaf on the
  binomial checkpoint schedule;
- ``adjoint.py``: the stable adjoint's per-leaf backward and torchdiffeq's own
  ``odeint_adjoint``.

``solve_ode`` applies the hard adjustment before and after the integration, so the
output is exactly source-consistent whatever the solver's drift.

Gradient modes (``GRADIENT_MODES``):

- ``direct``: backprop through the solver's operations (memory grows with NFE).
- ``checkpointed``: the solve is cut into leaf segments and at most
  ``segmented.CHECKPOINT_SLOTS`` states between them are held at any time, placed
  by the binomial (revolve) schedule; the backward pass replays each leaf segment
  with autograd. Exact gradient of the discretised solve; memory ``O(slots + leaf)``
  whatever the horizon.
- ``adjoint`` (stable): the same schedule, but each leaf is replayed without a graph
  to recover its states, and the adjoint equation is integrated backward in time
  against them. Nothing anti-diffuses; the gradient is that of the continuous
  problem (differs from ``direct`` by the solver's order in ``h``).
- ``adjoint_naive``: torchdiffeq's ``odeint_adjoint`` over the whole horizon, which
  reconstructs the state backward in time: anti-diffusion, unstable beyond a short
  horizon. Kept for comparison; divergence is detected and raised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from node_dada.diffusion import fused as _fused
from node_dada.diffusion import rkc as _rkc
from node_dada.diffusion.adjoint import backward_leaf_adjoint, solve_naive
from node_dada.diffusion.discrete import DEFAULT_STEP, check_fidelity, prepare_problem
from node_dada.diffusion.field import PROJECTIONS, ProjectedDiffusion, projected_field
from node_dada.diffusion.grid import (
    ADAPTIVE_METHODS,
    FIXED_GRID_METHODS,
    Plan,
    SolveInfo,
    check_growth,
    growing_knots,
    integrate,
    make_plan,
)
from node_dada.diffusion.operators import hard_adjust
from node_dada.diffusion.segmented import backward_leaf_autograd, segmented
from node_dada.errors import InputValueError

__all__ = [
    "FIXED_GRID_METHODS",
    "ADAPTIVE_METHODS",
    "GRAD_MODES",
    "GRADIENT_MODES",
    "PROJECTIONS",
    "DEFAULT_ADAPTIVE_MAX_NFE",
    "ProjectedDiffusion",
    "SolveInfo",
    "growing_knots",
    "projected_field",
    "solve_ode",
]

#: Function-evaluation budget of adaptive solves when ``max_nfe`` is not given.
DEFAULT_ADAPTIVE_MAX_NFE = 200_000


def _check_options(method: str, projection: str, grad_mode: str, t_end: float) -> None:
    if method not in FIXED_GRID_METHODS + ADAPTIVE_METHODS:
        raise InputValueError(
            f"method: expected one of {FIXED_GRID_METHODS + ADAPTIVE_METHODS}, got {method!r}"
        )
    if projection not in PROJECTIONS:
        raise InputValueError(f"projection: expected one of {PROJECTIONS}, got {projection!r}")
    if grad_mode not in GRAD_MODES:
        raise InputValueError(f"grad_mode: expected one of {GRAD_MODES}, got {grad_mode!r}")
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end >= 0):
        raise InputValueError(f"t_end: expected a finite time >= 0, got {t_end!r}")


def solve_ode(
    depth0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    t_end: float,
    *,
    method: str = "euler",
    step_size: float | None = 0.24,
    step_growth: float = 1.0,
    rtol: float | None = None,
    atol: float | None = None,
    projection: str = "multiplicative",
    grad_mode: str = "direct",
    max_nfe: int | None = None,
    options: dict[str, Any] | None = None,
    fidelity: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SolveInfo]:
    """Integrate the projected diffusion from ``A(depth0)`` to ``t_end``, then apply ``A``
    (with ``fidelity``: the relaxed field from ``depth0``, no adjustment).

    Args:
        depth0: (B, 1, H, W) initial estimate.
        cv, ch: (B, 1, H-1, W), (B, 1, H, W-1) coefficients.
        source: (B, 1, h, w) low-resolution depth; mask_lr: its validity.
        t_end: horizon; ``t_end = 0.24 * N`` corresponds to ``N`` discrete iterations.
        method: any torchdiffeq method by name (fixed grid: euler, midpoint, heun2,
            heun3, rk4, explicit_adams, implicit_adams; adaptive: dopri5, dopri8, bosh3,
            fehlberg2, adaptive_heun) or ``"rkc"``, the stabilised Runge-Kutta-Chebyshev
            method. Explicit fixed-grid methods are stability-limited on this stiff
            problem (Euler ``h <= 0.25``, RK4 ``h <= ~0.35`` for ``max(c) = 1``); RKC is
            not (its stage count grows with ``sqrt(h * 8 max(c))``).
        step_size: step of fixed-grid methods (ignored by adaptive ones); with
            ``step_growth``, the first step.
        step_growth: ratio of each step to the one before it (1: uniform steps).
            Only for ``"rkc"``, e.g. ``step_size=10, step_growth=1.5`` (``growing_knots``).
            Growing steps suit inference. In training, ``direct`` and ``checkpointed``
            give the exact gradient of the growing grid, but ``adjoint`` loses accuracy
            in the long last steps, where its adjoint state changes fastest.
        rtol, atol: tolerances of adaptive methods (default 1e-5, 1e-7).
        projection: ``"multiplicative"`` or ``"additive"``.
        grad_mode: ``"direct"``, ``"checkpointed"``, ``"adjoint"`` or ``"adjoint_naive"``.
        max_nfe: budget of function evaluations per pass; exceeding it raises
            ``SolverError``. Default: none for fixed grids (their cost is known),
            ``DEFAULT_ADAPTIVE_MAX_NFE`` for adaptive methods.
        options: extra solver options (e.g. ``{"stages": 20}`` for rkc).
        fidelity: ``None`` (exact consistency) or per-block weights ``mu`` (B, 1, h, w),
            >= 0, of the relaxed consistency ``D(I) + U(mu * (source - P(I)))`` for a
            noisy source (``noise.fidelity_weights``); ``projection`` is then unused,
            and the output's block means follow the source only as far as ``mu`` asks.

    On CPU the vector field, its vector-Jacobian product and (without gradient)
    whole RKC stages run in the fused kernels of ``fused.py`` when the solve is
    large enough to repay their compilation (``NODE_DADA_FUSED=0`` turns them off).

    Returns:
        The (B, 1, H, W) depth and a ``SolveInfo`` (NFE forward/backward, steps,
        wall time; backward fields fill in during ``backward()``).
    """
    _check_options(method, projection, grad_mode, t_end)
    step_growth = check_growth(method, step_growth)
    source, mask, scale = prepare_problem(depth0, cv, ch, source, mask_lr)
    if fidelity is not None:
        fidelity = check_fidelity(fidelity, source)
    if max_nfe is None and method in ADAPTIVE_METHODS:
        max_nfe = DEFAULT_ADAPTIVE_MAX_NFE
    options = dict(options or {})
    info = SolveInfo(method, grad_mode, projection, float(t_end),
                     step_size if method in FIXED_GRID_METHODS else None)
    clock = time.perf_counter()
    exact = fidelity is None
    y0 = hard_adjust(depth0, source, mask, scale) if exact else depth0
    if t_end == 0:
        info.wall_time_s = time.perf_counter() - clock
        return (hard_adjust(y0, source, mask, scale) if exact else y0), info
    func = ProjectedDiffusion(cv, ch, mask, scale, projection, max_nfe, source=source,
                              fidelity=fidelity)
    if method == "rkc" and "stages" not in options and "spectral_radius" not in options:
        # Gershgorin bound of D, with room for the projection (or fidelity) term
        radius = 8.0 * float(torch.maximum(cv.max(), ch.max()).detach()) * 1.2
        options["spectral_radius"] = radius + (0.0 if exact else float(fidelity.max()))
    plan = make_plan(float(t_end), method, step_size, rtol, atol, options, step_growth)
    stage_counts = None
    if plan.fixed:
        info.steps = len(plan.knots) - 1
        if method == "rkc":
            stage_counts = [options.get("stages") or _rkc.rkc_stages_for(
                float(step), options["spectral_radius"]) for step in plan.knots.diff()]
            info.stages = max(stage_counts)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (depth0, cv, ch, source))
    # work of the solve in function evaluations (adaptive: as many as Euler would take)
    planned_nfe = sum(stage_counts) if stage_counts else info.steps
    evaluations = planned_nfe if plan.fixed else t_end / DEFAULT_STEP
    func.fused = exact and _fused.supports(y0, cv, ch, work=y0.numel() * evaluations)
    if not needs_grad and method == "rkc" and func.fused and (
            max_nfe is None or planned_nfe <= max_nfe):
        # every stage in one fused pass (same arithmetic as torchdiffeq running RKC2)
        y_end, nfe = _fused.rkc_solve(y0, cv, ch, mask, scale, projection, plan.knots,
                                      stages=options.get("stages"),
                                      spectral_radius=options.get("spectral_radius"))
        func.budget.nfe += nfe
    elif not needs_grad and method == "euler" and func.fused and max_nfe is None:
        # the whole Euler grid in fused passes, one per step (same arithmetic as torchdiffeq)
        y_end, nfe = _fused.euler_solve(y0, cv, ch, mask, scale, projection, plan.knots)
        func.budget.nfe += nfe
    else:
        y_end = GRADIENT_MODES[grad_mode if needs_grad else "direct"](func, y0, cv, ch, plan,
                                                                     info)
    info.nfe_forward = func.nfe
    info.wall_time_s = time.perf_counter() - clock
    return (hard_adjust(y_end, source, mask, scale) if exact else y_end), info


def _solve_direct(func: ProjectedDiffusion, y0, cv, ch, plan: Plan,
                  info: SolveInfo) -> torch.Tensor:
    """One torchdiffeq solve over the whole grid; autograd records every step."""
    whole = plan.whole()
    return integrate(func, y0, whole.leaf_times(whole.leaves[0]), whole)


#: Gradient modes by name, as torchdiffeq names its solvers: each runs the forward
#: solve ``(func, y0, cv, ch, plan, info) -> y_end`` and decides what its backward
#: keeps. ``direct``: autograd through every step (memory grows with the horizon);
#: ``checkpointed``: the binomial schedule keeps a few states and replays leaves with
#: autograd (exact gradient of the discretised solve); ``adjoint``: the same schedule,
#: each leaf's backward the stable adjoint (docs/design.md); ``adjoint_naive``:
#: torchdiffeq's ``odeint_adjoint``, which integrates the state backwards and is
#: unstable for diffusion. A new mode is one entry here (docs/contributing.md).
GRADIENT_MODES: dict[str, Callable[..., torch.Tensor]] = {
    "direct": _solve_direct,
    "checkpointed": segmented(backward_leaf_autograd),
    "adjoint": segmented(backward_leaf_adjoint),
    "adjoint_naive": solve_naive,
}
GRAD_MODES = tuple(GRADIENT_MODES)
