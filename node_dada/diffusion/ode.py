"""The continuous formulation (docs/design.md section 4): DADA's diffusion-adjustment
iteration as an ODE on the constraint manifold ``P(I) = source``.

Vector fields (``D`` the diffusion operator, ``P``/``U`` block mean and nearest
upsampling):

- ``multiplicative`` (default): ``f(I) = D(I) - I * U(P(D(I)) / P(I))`` on valid
  blocks, ``D(I)`` on invalid ones. One Euler step with ``h = lam`` is one
  discrete iteration up to ``O(lam^2)`` and the operator splitting.
- ``additive``: ``f(I) = D(I) - U(P(D(I)))`` (linear; its steady state minimises
  ``sum c |grad I|^2`` under the constraint).

Both keep ``P(I)`` fixed on valid blocks (``P(f) = 0``). ``solve_ode`` applies the
hard adjustment before and after the integration, so the output is exactly
source-consistent whatever the solver's drift.

Gradient modes:

- ``direct``: backprop through the solver's operations (memory grows with NFE).
- ``checkpointed``: the solve is cut into leaf segments and at most
  ``_CHECKPOINT_SLOTS`` states between them are held at any time, placed by the
  binomial (revolve) schedule, which needs the fewest recomputations for that
  many slots; the backward pass replays each leaf segment with autograd. Exact
  gradient of the discretised solve; memory ``O(slots + leaf)`` whatever the
  horizon, each step recomputed about ``r`` times where ``C(slots + r, r)``
  reaches the number of leaves (r = 4 for 1000 leaves, T = 1920 at h = 0.24).
- ``adjoint`` (stable): the same schedule, but each leaf is replayed without
  a graph to recover its states, and the adjoint equation
  ``da/dt = -(df/dI)^T a`` is integrated backward in time against those
  recomputed states (cubic Hermite in between). The state is never integrated
  backward, so nothing anti-diffuses; the gradient is that of the continuous
  problem (differs from ``direct`` by the solver's order in ``h``).
- ``adjoint_naive``: torchdiffeq's ``odeint_adjoint`` over the whole horizon,
  which reconstructs the state backward in time: anti-diffusion, unstable beyond
  a short horizon. Kept for comparison; divergence is detected and raised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torchdiffeq import odeint, odeint_adjoint

from node_dada.diffusion import compiled as _compiled
from node_dada.diffusion import fused as _fused
from node_dada.diffusion import rkc as _rkc  # noqa: F401  (registers "rkc" with torchdiffeq)
from node_dada.diffusion.discrete import DEFAULT_STEP, check_fidelity, prepare_problem
from node_dada.diffusion.noise import relaxed_field_term
from node_dada.diffusion.operators import (
    block_mean,
    diffusion_operator,
    hard_adjust,
    upsample_nearest,
)
from node_dada.errors import InputValueError, SolverError

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

FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams",
                      "implicit_adams", "rkc")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
PROJECTIONS = ("multiplicative", "additive")
#: Function-evaluation budget of adaptive solves when ``max_nfe`` is not given.
DEFAULT_ADAPTIVE_MAX_NFE = 200_000
# Checkpointed and adjoint modes: leaves of this many steps (fixed grid) or this
# much time (adaptive), and at most this many states between leaves held at once.
_LEAF_STEPS = 8
_LEAF_SPAN = 4.0
_CHECKPOINT_SLOTS = 12
# The stable adjoint raises if its state grows by more than this over a leaf.
_ADJOINT_GROWTH_LIMIT = 1e8


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


class ProjectedDiffusion(nn.Module):
    """torchdiffeq vector field ``f(t, I)`` with an NFE counter and budget.

    ``cv``/``ch`` are plain attributes (not parameters) so that the same tensors
    can be handed to ``odeint_adjoint`` as ``adjoint_params``.
    """

    def __init__(self, cv: torch.Tensor, ch: torch.Tensor, mask_lr: torch.Tensor, scale: int,
                 projection: str, max_nfe: int | None, *, source: torch.Tensor | None = None,
                 fidelity: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cv, self.ch, self.mask_lr, self.scale = cv, ch, mask_lr, scale
        # relaxed consistency (noise.py): the fidelity term instead of the projection
        self.source, self.fidelity = source, fidelity
        self.projection = projection
        self.max_nfe = max_nfe
        self.nfe = 0
        self.phase = "forward"
        # adjoint_naive's guard: the range a backward-reconstructed state must stay in
        self.watch_range: tuple[float, float] | None = None
        # fused kernels (fused.py): None decides per call from the state's size;
        # solve_ode sets it from the whole solve's work
        self.fused: bool | None = None

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
        self.nfe += 1
        if self.max_nfe is not None and self.nfe > self.max_nfe:
            raise SolverError(
                f"solve_ode: the {self.phase} pass exceeded the budget of max_nfe={self.max_nfe} "
                f"function evaluations at t={float(t):.4g}; loosen rtol/atol, take a larger "
                "step, use a stabilised method ('rkc') or raise max_nfe"
            )
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


@dataclass
class SolveInfo:
    """What a solve cost. Backward fields fill in when the backward pass runs."""

    method: str
    grad_mode: str
    projection: str
    t_end: float
    step_size: float | None
    nfe_forward: int = 0
    nfe_backward: int = 0
    steps: int | None = None
    stages: int | None = None  # RKC stages per step (the most, with growing steps)
    wall_time_s: float = 0.0
    backward_time_s: float = 0.0
    segments: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notes"}


@dataclass
class _Plan:
    """Time discretisation: ``knots`` split the horizon into leaves of the segment tree."""

    method: str
    fixed: bool
    knots: torch.Tensor  # float64 times; fixed grid: every step; adaptive: leaf boundaries
    leaves: list[tuple[int, int]]  # (first knot, last knot) of each leaf
    options: dict[str, Any]
    rtol: float
    atol: float

    def leaf_times(self, leaf: tuple[int, int]) -> torch.Tensor:
        # float64 whatever the state's dtype: step times stay exact at long horizons
        return self.knots[leaf[0]: leaf[1] + 1]


def _odeint_kwargs(plan: _Plan, times: torch.Tensor) -> dict[str, Any]:
    if plan.fixed:
        grid = times
        options = dict(plan.options, grid_constructor=lambda func, y0, t: grid)
        return {"method": plan.method, "options": options}
    return {"method": plan.method, "rtol": plan.rtol, "atol": plan.atol,
            "options": dict(plan.options)}


def _integrate(func: nn.Module, y0: torch.Tensor, times: torch.Tensor, plan: _Plan,
               *, all_points: bool = False) -> torch.Tensor:
    """One torchdiffeq call over ``times``; returns the last state (or all of them)."""
    out_times = times if (all_points or not plan.fixed) else times[[0, -1]]
    try:
        states = odeint(func, y0, out_times, **_odeint_kwargs(plan, times))
    except AssertionError as error:  # torchdiffeq signals step-size underflow this way
        raise SolverError(f"solve_ode: {plan.method} failed: {error}") from error
    return states if all_points else states[-1]


def growing_knots(t_end: float, first_step: float, growth: float) -> torch.Tensor:
    """Times ``0 = t_0 < ... < t_n = t_end`` of steps ``first_step * growth**k``.

    The last step ends at ``t_end``; a remainder under 30 % of the step before it
    is merged into that step rather than taken alone. Diffusion smooths the state
    geometrically in time, so its later steps can be ever longer for the same local
    error: with RKC, whose cost per step grows only with ``sqrt(h)``, this reaches
    the 8000-iteration result with fewer evaluations than any uniform step does
    (``benchmarks/speed.py``).
    """
    knots, step = [0.0], first_step
    while knots[-1] < t_end:
        knots.append(min(knots[-1] + step, t_end))
        step *= growth
    if len(knots) > 2 and t_end - knots[-2] < 0.3 * (knots[-2] - knots[-3]):
        del knots[-2]
    return torch.tensor(knots, dtype=torch.float64)


def _check_growth(method: str, step_growth: object) -> float:
    if isinstance(step_growth, bool) or not (
            isinstance(step_growth, (int, float)) and math.isfinite(step_growth)
            and step_growth >= 1):
        raise InputValueError(f"step_growth: expected a finite number >= 1, got {step_growth!r}")
    if step_growth > 1 and method != "rkc":
        raise InputValueError(
            f"step_growth: growing steps need the stabilised method 'rkc', got method "
            f"{method!r}: explicit fixed-grid methods are stability-limited (Euler h <= 0.25) "
            "and adaptive ones choose their own steps; use step_growth=1 or method='rkc'"
        )
    return float(step_growth)


def _make_plan(t_end: float, method: str, step_size: float | None, rtol: float | None,
               atol: float | None, options: dict[str, Any], step_growth: float = 1.0) -> _Plan:
    fixed = method in FIXED_GRID_METHODS
    if fixed:
        if step_size is None or not step_size > 0:
            raise InputValueError(
                f"step_size: expected a positive step for the fixed-grid method {method!r}, "
                f"got {step_size!r}"
            )
        if step_growth > 1:
            knots = growing_knots(t_end, step_size, step_growth)
        else:
            # Uniform steps of at most step_size; an exact multiple keeps step_size
            # itself (T = 1920, h = 0.24 gives exactly 8000 steps).
            steps = max(1, math.ceil(t_end / step_size - 1e-9))
            knots = torch.linspace(0.0, t_end, steps + 1, dtype=torch.float64)
        steps = len(knots) - 1
        leaves = [(i, min(i + _LEAF_STEPS, steps)) for i in range(0, steps, _LEAF_STEPS)]
    else:
        count = max(1, math.ceil(t_end / _LEAF_SPAN - 1e-9))
        knots = torch.linspace(0.0, t_end, count + 1, dtype=torch.float64)
        leaves = [(i, i + 1) for i in range(count)]
    return _Plan(method, fixed, knots, leaves, options,
                 1e-5 if rtol is None else rtol, 1e-7 if atol is None else atol)


def _reversible(slots: int, sweeps: int) -> int:
    """Leaves that ``slots`` stored states reverse when no leaf is advanced more than
    ``sweeps`` times: ``C(slots + sweeps, slots)`` (Griewank's binomial bound)."""
    return math.comb(slots + sweeps, slots)


def _split(leaves: int, slots: int) -> int:
    """Where the binomial schedule stores its next state when ``leaves`` (> 1) leaves
    are to be reversed with ``slots`` (> 0) free slots: the left part is then
    reversed with the same slots and one sweep fewer, the right one with a slot
    fewer and the same sweeps."""
    sweeps = 1
    while _reversible(slots, sweeps) < leaves:
        sweeps += 1
    return min(_reversible(slots, sweeps - 1), leaves - 1)


def _first_sweep(leaves: int, slots: int) -> list[int]:
    """The leaf indices the schedule stores on its first (forward) sweep."""
    stored, position = [], 0
    while leaves - position > 1 and slots > 0:
        position += _split(leaves - position, slots)
        stored.append(position)
        slots -= 1
    return stored


def _run_leaves(func, y: torch.Tensor, plan: _Plan, first: int, last: int) -> torch.Tensor:
    for leaf in plan.leaves[first:last]:
        y = _integrate(func, y, plan.leaf_times(leaf), plan)
    return y


def _hermite(t: float, t0: float, t1: float, y0, y1, f0, f1):
    h = t1 - t0
    s = (t - t0) / h
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


class _AdjointField(nn.Module):
    """Adjoint system in reversed time ``tau = t_b - t`` on one leaf:
    ``d(a, g_cv, g_ch)/dtau = a^T (df/dI, df/dcv, df/dch)`` at the recomputed ``I(t)``.

    States between the recomputed ones are cubic Hermite interpolants; their slopes
    are evaluated only when a solver asks for such a time (never for Euler, whose
    adjoint steps land on the forward grid)."""

    def __init__(self, func: ProjectedDiffusion, times: torch.Tensor, states: torch.Tensor,
                 cv: torch.Tensor, ch: torch.Tensor) -> None:
        super().__init__()
        self.func, self.cv, self.ch = func, cv, ch
        self.times = [float(x) for x in times]
        self.states = states
        self._slopes: torch.Tensor | None = None
        self.t_end = self.times[-1]

    @property
    def slopes(self) -> torch.Tensor:
        if self._slopes is None:
            with torch.no_grad():
                self.func.cv, self.func.ch = self.cv.detach(), self.ch.detach()
                self._slopes = torch.stack([self.func(torch.as_tensor(t), state) for t, state
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
        func = self.func
        if func.uses_fused(adjoint):
            # the vector-Jacobian product in two fused passes, no graph
            func.count(t)
            return _fused.field_vjp(self.state_at(t), self.cv, self.ch, func.mask_lr,
                                    func.scale, func.projection, adjoint)
        with torch.enable_grad():
            image = self.state_at(t).detach().requires_grad_(True)
            self.func.cv, self.func.ch = self.cv, self.ch
            value = self.func(torch.as_tensor(t), image)
            grads = torch.autograd.grad(value, (image, self.cv, self.ch), adjoint,
                                        allow_unused=True)
        return tuple(torch.zeros_like(x) if g is None else g
                     for g, x in zip(grads, (image, self.cv, self.ch), strict=True))


def _bisect(values: list[float], x: float) -> int:
    low, high = 0, len(values)
    while low < high:
        mid = (low + high) // 2
        if values[mid] <= x:
            low = mid + 1
        else:
            high = mid
    return low


class _SegmentedSolve(torch.autograd.Function):
    """Forward without a graph, keeping the binomial schedule's first states; backward
    per leaf, last to first, recomputing the states the schedule dropped."""

    @staticmethod
    def forward(ctx, y0, cv, ch, func, plan, leaf_backward, info):  # noqa: D102
        ctx.func, ctx.plan, ctx.leaf_backward, ctx.info = func, plan, leaf_backward, info
        stored = _first_sweep(len(plan.leaves), _CHECKPOINT_SLOTS)
        with torch.no_grad():
            func.cv, func.ch = cv, ch
            states = []
            y, done = y0, 0
            for position in [*stored, len(plan.leaves)]:
                y = _run_leaves(func, y, plan, done, position)
                states.append(y)
                done = position
        # held on ctx, not saved for backward, so each is freed once the backward used it
        ctx.kept = dict(zip(stored, states[:-1], strict=True))
        ctx.save_for_backward(cv, ch, y0)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        cv, ch, y0 = ctx.saved_tensors
        kept, ctx.kept = ctx.kept, None
        func, info = ctx.func, ctx.info
        nfe_before = func.nfe
        func.phase = "backward"
        clock = time.perf_counter()
        cv_req = cv.detach().requires_grad_(True)
        ch_req = ch.detach().requires_grad_(True)
        totals = [grad_out, torch.zeros_like(cv), torch.zeros_like(ch)]
        _reverse(ctx, y0, 0, len(ctx.plan.leaves), _CHECKPOINT_SLOTS, kept, totals,
                 cv_req, ch_req)
        info.nfe_backward += func.nfe - nfe_before
        info.backward_time_s += time.perf_counter() - clock
        return totals[0], totals[1], totals[2], None, None, None, None


def _reverse(ctx, start, first, last, slots, kept, totals, cv_req, ch_req) -> None:
    """Accumulate into ``totals = [a, g_cv, g_ch]`` the gradient through leaves
    [first, last) from the state ``start`` at leaf ``first``, holding at most
    ``slots`` more states (``kept``: those the forward sweep already stored).
    The right part recurses with a slot fewer (depth <= slots); the left part loops."""
    func, plan = ctx.func, ctx.plan

    def advance(y, begin, end):
        with torch.no_grad():
            func.cv, func.ch = cv_req.detach(), ch_req.detach()
            return _run_leaves(func, y, plan, begin, end)

    while last - first > 1:
        if slots == 0:  # no slot left (not reached by the schedule itself): replay per leaf
            _backward_leaf(ctx, advance(start, first, last - 1), last - 1, totals, cv_req,
                           ch_req)
            last -= 1
            continue
        middle = first + _split(last - first, slots)
        middle_state = kept.pop(middle, None)
        if middle_state is None:
            middle_state = advance(start, first, middle)
        _reverse(ctx, middle_state, middle, last, slots - 1, kept, totals, cv_req, ch_req)
        del middle_state
        last = middle
    _backward_leaf(ctx, start, first, totals, cv_req, ch_req)


def _backward_leaf(ctx, start, index, totals, cv_req, ch_req) -> None:
    ctx.leaf_backward(ctx.func, ctx.plan, ctx.plan.leaves[index], start, totals, cv_req, ch_req)


def _backward_leaf_autograd(func, plan, leaf, start, totals, cv_req, ch_req) -> None:
    with torch.enable_grad():
        y = start.detach().requires_grad_(True)
        func.cv, func.ch = cv_req, ch_req
        out = _integrate(func, y, plan.leaf_times(leaf), plan)
        grads = torch.autograd.grad(out, (y, cv_req, ch_req), totals[0], allow_unused=True)
    totals[0] = grads[0]
    for index in (1, 2):
        if grads[index] is not None:
            totals[index] = totals[index] + grads[index]


def _backward_leaf_adjoint(func, plan, leaf, start, totals, cv_req, ch_req) -> None:
    times = plan.leaf_times(leaf)
    with torch.no_grad():
        func.cv, func.ch = cv_req.detach(), ch_req.detach()
        if plan.fixed:
            dense_times = times
        else:
            # adaptive: recover the leaf on a uniform grid fine enough for the Hermite
            # interpolation, sized by the work the forward solve needed
            nfe_before = func.nfe
            _integrate(func, start, times, plan)
            points = max(4, (func.nfe - nfe_before) // 4)
            dense_times = torch.linspace(float(times[0]), float(times[-1]), points + 1,
                                         dtype=torch.float64)
        states = _integrate(func, start, dense_times, plan, all_points=True)
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
    if not finite or size_out > _ADJOINT_GROWTH_LIMIT * max(size_in, 1e-30):
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
        ctx.func.phase = "backward"
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
    step_growth = _check_growth(method, step_growth)
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
    plan = _make_plan(float(t_end), method, step_size, rtol, atol, options, step_growth)
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
        func.nfe += nfe
    elif not needs_grad and method == "euler" and func.fused and max_nfe is None:
        # the whole Euler grid in fused passes, one per step (same arithmetic as torchdiffeq)
        y_end, nfe = _fused.euler_solve(y0, cv, ch, mask, scale, projection, plan.knots)
        func.nfe += nfe
    else:
        y_end = GRADIENT_MODES[grad_mode if needs_grad else "direct"](func, y0, cv, ch, plan,
                                                                     info)
    info.nfe_forward = func.nfe
    info.wall_time_s = time.perf_counter() - clock
    return (hard_adjust(y_end, source, mask, scale) if exact else y_end), info


def _solve_direct(func: ProjectedDiffusion, y0, cv, ch, plan: _Plan,
                  info: SolveInfo) -> torch.Tensor:
    """One torchdiffeq solve over the whole grid; autograd records every step."""
    whole = _Plan(plan.method, plan.fixed, plan.knots, [(0, len(plan.knots) - 1)],
                  plan.options, plan.rtol, plan.atol)
    return _integrate(func, y0, whole.leaf_times(whole.leaves[0]), whole)


def _segmented(leaf_backward: Callable[..., None]) -> Callable[..., torch.Tensor]:
    """A solve without a graph whose backward runs ``leaf_backward`` per leaf."""

    def solve(func: ProjectedDiffusion, y0, cv, ch, plan: _Plan,
              info: SolveInfo) -> torch.Tensor:
        info.segments = len(plan.leaves)
        return _SegmentedSolve.apply(y0, cv, ch, func, plan, leaf_backward, info)

    return solve


def _solve_naive(func: ProjectedDiffusion, y0, cv, ch, plan: _Plan,
                 info: SolveInfo) -> torch.Tensor:
    """torchdiffeq's own adjoint (``odeint_adjoint``), guarded against blow-ups."""
    cv_g = _FiniteGradGuard.apply(cv, "cv")
    ch_g = _FiniteGradGuard.apply(ch, "ch")
    func.cv, func.ch = cv_g, ch_g
    times = plan.knots
    kwargs = _odeint_kwargs(plan, times)
    if plan.fixed:
        # the adjoint pass integrates from t_end to 0: the grid must follow the span given
        kwargs["options"]["grid_constructor"] = lambda func, y, t: (
            times if t[0] < t[-1] else times.flip(0)).to(t)
    try:
        states = odeint_adjoint(func, y0, times[[0, -1]], adjoint_params=(cv_g, ch_g),
                                adjoint_method=plan.method,
                                adjoint_options=dict(kwargs["options"]), **kwargs)
    except AssertionError as error:
        raise SolverError(f"solve_ode: {plan.method} failed: {error}") from error
    y_end = states[-1]
    low, high = float(y0.detach().min()), float(y0.detach().max())
    _track_naive_backward(func, info)
    return _NaiveGuard.apply(y_end, func, low, high)


def _track_naive_backward(func: ProjectedDiffusion, info: SolveInfo) -> None:
    """Count the backward NFE of adjoint_naive (torchdiffeq runs it inside its backward)."""
    forward_nfe = func.nfe
    original = func.forward

    def counting(t, y):
        result = original(t, y)
        info.nfe_backward = func.nfe - forward_nfe
        return result

    func.forward = counting  # type: ignore[method-assign]


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
    "checkpointed": _segmented(_backward_leaf_autograd),
    "adjoint": _segmented(_backward_leaf_adjoint),
    "adjoint_naive": _solve_naive,
}
GRAD_MODES = tuple(GRADIENT_MODES)
