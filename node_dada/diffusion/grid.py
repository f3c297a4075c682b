"""The time grid of an ODE solve and what the solve cost.

A solve's horizon is cut into knots (every step on a fixed grid, leaf boundaries for
an adaptive method) and the knots into leaves: the units the checkpointed and
adjoint gradient modes store, replay and differentiate (``checkpointing.py``,
``adjoint.py``). ``integrate`` is the one place torchdiffeq's ``odeint`` is called
for the forward state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torchdiffeq import odeint

from node_dada.diffusion import rkc as _rkc  # noqa: F401  (registers "rkc" with torchdiffeq)
from node_dada.errors import InputValueError, SolverError

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_GRID_METHODS",
    "Plan",
    "SolveInfo",
    "check_growth",
    "growing_knots",
    "integrate",
    "make_plan",
    "odeint_kwargs",
    "run_leaves",
]

FIXED_GRID_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams",
                      "implicit_adams", "rkc")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
# Leaves of this many steps (fixed grid) or this much time (adaptive).
LEAF_STEPS = 8
LEAF_SPAN = 4.0


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
class Plan:
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

    def whole(self) -> Plan:
        """The same grid as one leaf (one torchdiffeq call over the horizon)."""
        return Plan(self.method, self.fixed, self.knots, [(0, len(self.knots) - 1)],
                    self.options, self.rtol, self.atol)


def odeint_kwargs(plan: Plan, times: torch.Tensor) -> dict[str, Any]:
    """torchdiffeq's method, tolerances and options for a solve over ``times``."""
    if plan.fixed:
        grid = times
        options = dict(plan.options, grid_constructor=lambda func, y0, t: grid)
        return {"method": plan.method, "options": options}
    return {"method": plan.method, "rtol": plan.rtol, "atol": plan.atol,
            "options": dict(plan.options)}


def integrate(func: nn.Module, y0: torch.Tensor, times: torch.Tensor, plan: Plan,
              *, all_points: bool = False) -> torch.Tensor:
    """One torchdiffeq call over ``times``; returns the last state (or all of them)."""
    out_times = times if (all_points or not plan.fixed) else times[[0, -1]]
    try:
        states = odeint(func, y0, out_times, **odeint_kwargs(plan, times))
    except AssertionError as error:  # torchdiffeq signals step-size underflow this way
        raise SolverError(f"solve_ode: {plan.method} failed: {error}") from error
    return states if all_points else states[-1]


def run_leaves(func: nn.Module, y: torch.Tensor, plan: Plan, first: int,
               last: int) -> torch.Tensor:
    """Advance ``y`` over leaves ``[first, last)``, one torchdiffeq call each."""
    for leaf in plan.leaves[first:last]:
        y = integrate(func, y, plan.leaf_times(leaf), plan)
    return y


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


def check_growth(method: str, step_growth: object) -> float:
    """``step_growth`` as a float, or an ``InputValueError`` saying what is allowed."""
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


def make_plan(t_end: float, method: str, step_size: float | None, rtol: float | None,
              atol: float | None, options: dict[str, Any], step_growth: float = 1.0) -> Plan:
    """The knots and leaves of a solve to ``t_end`` (tolerances default 1e-5, 1e-7)."""
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
        leaves = [(i, min(i + LEAF_STEPS, steps)) for i in range(0, steps, LEAF_STEPS)]
    else:
        count = max(1, math.ceil(t_end / LEAF_SPAN - 1e-9))
        knots = torch.linspace(0.0, t_end, count + 1, dtype=torch.float64)
        leaves = [(i, i + 1) for i in range(count)]
    return Plan(method, fixed, knots, leaves, options,
                1e-5 if rtol is None else rtol, 1e-7 if atol is None else atol)
