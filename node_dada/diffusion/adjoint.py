"""Adjoint gradients of the ODE solve: the stable adjoint and torchdiffeq's own.

- ``adjoint`` (stable, ``backward_leaf_adjoint``): on the checkpoint schedule of
  ``segmented.py``, each leaf is replayed without a graph to recover its states,
  and the adjoint equation ``da/dt = -(df/dI)^T a`` is integrated backward in time
  against those recomputed states (cubic Hermite in between). The state is never
  integrated backward, so nothing anti-diffuses; the gradient is that of the
  continuous problem (differs from ``direct`` by the solver's order in ``h``).
- ``adjoint_naive`` (``solve_naive``): torchdiffeq's ``odeint_adjoint`` over the
  whole horizon, which reconstructs the state backward in time: anti-diffusion,
  unstable beyond a short horizon. Kept for comparison; divergence is detected and
  raised.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torchdiffeq import odeint, odeint_adjoint

from node_dada.diffusion import fused as _fused
from node_dada.diffusion.field import ProjectedDiffusion
from node_dada.diffusion.grid import Plan, SolveInfo, integrate, odeint_kwargs
from node_dada.errors import SolverError

__all__ = ["backward_leaf_adjoint", "solve_naive"]

# The stable adjoint raises if its state grows by more than this over a leaf.
ADJOINT_GROWTH_LIMIT = 1e8


def _hermite(t: float, t0: float, t1: float, y0, y1, f0, f1):
    h = t1 - t0
    s = (t - t0) / h
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


def _bisect(values: list[float], x: float) -> int:
    low, high = 0, len(values)
    while low < high:
        mid = (low + high) // 2
        if values[mid] <= x:
            low = mid + 1
        else:
            high = mid
    return low


class _AdjointField(nn.Module):
    """Adjoint system in reversed time ``tau = t_b - t`` on one leaf:
    ``d(a, g_cv, g_ch)/dtau = a^T (df/dI, df/dcv, df/dch)`` at the recomputed ``I(t)``.

    States between the recomputed ones are cubic Hermite interpolants; their slopes
    are evaluated only when a solver asks for such a time (never for Euler, whose
    adjoint steps land on the forward grid)."""

    def __init__(self, func: ProjectedDiffusion, times: torch.Tensor, states: torch.Tensor,
                 cv: torch.Tensor, ch: torch.Tensor) -> None:
        super().__init__()
        self.live = func.with_coefficients(cv, ch)
        self.frozen = func.with_coefficients(cv.detach(), ch.detach())
        self.times = [float(x) for x in times]
        self.states = states
        self._slopes: torch.Tensor | None = None
        self.t_end = self.times[-1]

    @property
    def slopes(self) -> torch.Tensor:
        if self._slopes is None:
            with torch.no_grad():
                self._slopes = torch.stack([self.frozen(torch.as_tensor(t), state) for t, state
                                            in zip(self.times, self.states, strict=True)])
        return self._slopes

    def state_at(self, t: float) -> torch.Tensor:
        times = self.times
        index = min(max(0, _bisect(times, t) - 1), len(times) - 2)
        t0, t1 = times[index], times[index + 1]
        # A solver's time on the grid arrives rounded (torchdiffeq carries float32
        # times for float32 states: ~1e-5 off at T = 100): within 1e-3 of a step of a
        # recomputed state, that state is the answer (the interpolant differs from it
        # by less than the rounding), and no slopes are needed.
        snap = 1e-3 * (t1 - t0)
        if abs(t - t0) <= snap:
            return self.states[index]
        if abs(t - t1) <= snap:
            return self.states[index + 1]
        return _hermite(t, t0, t1, self.states[index], self.states[index + 1],
                        self.slopes[index], self.slopes[index + 1])

    def forward(self, tau: torch.Tensor, state: tuple[torch.Tensor, ...]):
        adjoint = state[0]
        t = self.t_end - float(tau)
        live = self.live
        if live.uses_fused(adjoint):
            # the vector-Jacobian product in two fused passes, no graph
            live.count(t)
            return _fused.field_vjp(self.state_at(t), live.cv, live.ch, live.mask_lr,
                                    live.scale, live.projection, adjoint)
        with torch.enable_grad():
            image = self.state_at(t).detach().requires_grad_(True)
            value = live(torch.as_tensor(t), image)
            grads = torch.autograd.grad(value, (image, live.cv, live.ch), adjoint,
                                        allow_unused=True)
        return tuple(torch.zeros_like(x) if g is None else g
                     for g, x in zip(grads, (image, live.cv, live.ch), strict=True))


def backward_leaf_adjoint(func: ProjectedDiffusion, plan: Plan, leaf: tuple[int, int],
                          start: torch.Tensor, totals: list[torch.Tensor],
                          cv_req: torch.Tensor, ch_req: torch.Tensor) -> None:
    """``adjoint``: recover the leaf's states without a graph, then integrate the
    adjoint equation backward across it (``segmented.LeafBackward``)."""
    times = plan.leaf_times(leaf)
    frozen = func.with_coefficients(cv_req.detach(), ch_req.detach())
    with torch.no_grad():
        if plan.fixed:
            dense_times = times
        else:
            # adaptive: recover the leaf on a uniform grid fine enough for the Hermite
            # interpolation, sized by the work the forward solve needed
            nfe_before = func.nfe
            integrate(frozen, start, times, plan)
            points = max(4, (func.nfe - nfe_before) // 4)
            dense_times = torch.linspace(float(times[0]), float(times[-1]), points + 1,
                                         dtype=torch.float64)
        states = integrate(frozen, start, dense_times, plan, all_points=True)
    field = _AdjointField(func, dense_times, states, cv_req, ch_req)
    t_b = float(dense_times[-1])
    taus = (t_b - dense_times).flip(0)
    incoming = totals[0]
    state0 = (incoming, torch.zeros_like(totals[1]), torch.zeros_like(totals[2]))
    try:
        if plan.fixed:
            grid = taus
            options = dict(plan.options, grid_constructor=lambda f, y0, t: grid)
            result = odeint(field, state0, taus[[0, -1]], method=plan.method, options=options)
        else:
            result = odeint(field, state0, taus[[0, -1]], method=plan.method,
                            rtol=plan.rtol, atol=plan.atol, options=dict(plan.options))
    except AssertionError as error:
        raise SolverError(f"adjoint: {plan.method} failed on the adjoint equation: {error}") \
            from error
    adjoint, g_cv, g_ch = (part[-1] for part in result)
    _guard_adjoint(adjoint, incoming, g_cv, g_ch, float(times[0]), t_b)
    totals[0] = adjoint
    totals[1] = totals[1] + g_cv
    totals[2] = totals[2] + g_ch


def _guard_adjoint(adjoint, incoming, g_cv, g_ch, t_a: float, t_b: float) -> None:
    finite = torch.isfinite(adjoint).all() and torch.isfinite(g_cv).all() and \
        torch.isfinite(g_ch).all()
    size_in = float(incoming.abs().max())
    size_out = float(adjoint.abs().max()) if finite else math.inf
    if not finite or size_out > ADJOINT_GROWTH_LIMIT * max(size_in, 1e-30):
        raise SolverError(
            f"adjoint: the adjoint state diverged on t in [{t_a:.4g}, {t_b:.4g}] (max |a| "
            f"{size_in:.3g} -> {size_out:.3g}); the step is likely beyond the method's "
            "stability limit: reduce step_size or tighten rtol/atol"
        )


class _NaiveGuard(torch.autograd.Function):
    """Identity whose backward arms ``adjoint_naive``'s watch on the reconstructed state
    (it runs just before ``odeint_adjoint``'s backward) and checks the returned gradient."""

    @staticmethod
    def forward(ctx, y, func, low, high):  # noqa: D102
        ctx.func, ctx.low, ctx.high = func, low, high
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        ctx.func.budget.phase = "backward"
        ctx.func.watch_range = (ctx.low, ctx.high)
        return grad, None, None, None


class _FiniteGradGuard(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, name):  # noqa: D102
        ctx.name = name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        if not torch.isfinite(grad).all():
            raise SolverError(
                f"adjoint_naive: the gradient w.r.t. {ctx.name} is not finite; the backward "
                "reconstruction of the state is unstable for this horizon. Use "
                "grad_mode='adjoint' (stable) or 'checkpointed'"
            )
        return grad, None


def solve_naive(func: ProjectedDiffusion, y0, cv, ch, plan: Plan,
                info: SolveInfo) -> torch.Tensor:
    """``adjoint_naive``: torchdiffeq's own adjoint (``odeint_adjoint``), guarded against
    blow-ups."""
    cv_g = _FiniteGradGuard.apply(cv, "cv")
    ch_g = _FiniteGradGuard.apply(ch, "ch")
    guarded = func.with_coefficients(cv_g, ch_g)
    times = plan.knots
    kwargs = odeint_kwargs(plan, times)
    if plan.fixed:
        # the adjoint pass integrates from t_end to 0: the grid must follow the span given
        kwargs["options"]["grid_constructor"] = lambda func, y, t: (
            times if t[0] < t[-1] else times.flip(0)).to(t)
    try:
        states = odeint_adjoint(guarded, y0, times[[0, -1]], adjoint_params=(cv_g, ch_g),
                                adjoint_method=plan.method,
                                adjoint_options=dict(kwargs["options"]), **kwargs)
    except AssertionError as error:
        raise SolverError(f"solve_ode: {plan.method} failed: {error}") from error
    y_end = states[-1]
    low, high = float(y0.detach().min()), float(y0.detach().max())
    _track_naive_backward(guarded, info)
    return _NaiveGuard.apply(y_end, guarded, low, high)


def _track_naive_backward(func: ProjectedDiffusion, info: SolveInfo) -> None:
    """Count the backward NFE of adjoint_naive (torchdiffeq runs it inside its backward)."""
    forward_nfe = func.nfe
    original = func.forward

    def counting(t, y):
        result = original(t, y)
        info.nfe_backward = func.nfe - forward_nfe
        return result

    func.forward = counting  # type: ignore[method-assign]
