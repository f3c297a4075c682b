"""Runge-Kutta-Chebyshev (RKC2), a stabilised explicit solver for parabolic problems.

Second-order, damped (``eps = 2/13``), after Sommeijer, Shampine and Verwer,
"RKC: an explicit solver for parabolic PDEs" (J. Comput. Appl. Math. 88, 1997).
With ``s`` stages its real stability interval is ``[-beta(s), 0]`` with
``beta(s) ~ 0.65 s^2``, so a step ``h`` is stable once ``beta(s) >= h * rho``
(``rho`` the spectral radius): the cost per unit time falls like ``1/s`` while
Euler's stays fixed. The diffusion operator has ``rho <= 8 max(c)``.

Registered in torchdiffeq's solver table as ``"rkc"`` (fixed grid): it is
chosen by name like torchdiffeq's own methods, e.g.
``odeint(f, y0, t, method="rkc", options={"step_size": 20.0})``.
"""

from __future__ import annotations

import importlib
import math
from functools import cache

import torch
from torchdiffeq._impl.solvers import FixedGridODESolver

__all__ = ["RKC2", "rkc_coefficients", "rkc_stages_for", "estimate_spectral_radius"]

_DAMPING = 2.0 / 13.0
_SAFETY = 1.1


@cache
def rkc_coefficients(stages: int, damping: float = _DAMPING) -> dict[str, list[float]]:
    """Coefficients of the ``stages``-stage RKC2 method and its stability bound ``beta``."""
    if stages < 2:
        raise ValueError(f"stages: expected at least 2, got {stages}")
    s = stages
    w0 = 1.0 + damping / s**2
    # Chebyshev polynomials T_j and their first two derivatives at w0.
    t = [1.0, w0]
    dt = [0.0, 1.0]
    ddt = [0.0, 0.0]
    for _ in range(2, s + 1):
        t.append(2 * w0 * t[-1] - t[-2])
        dt.append(2 * t[-2] + 2 * w0 * dt[-1] - dt[-2])
        ddt.append(4 * dt[-2] + 2 * w0 * ddt[-1] - ddt[-2])
    w1 = dt[s] / ddt[s]
    b = [0.0] * (s + 1)
    for j in range(2, s + 1):
        b[j] = ddt[j] / dt[j] ** 2
    b[0] = b[1] = b[2]
    a = [1.0 - b[j] * t[j] for j in range(s + 1)]
    mu = [0.0] * (s + 1)
    nu = [0.0] * (s + 1)
    mu_t = [0.0] * (s + 1)
    gamma_t = [0.0] * (s + 1)
    c = [0.0] * (s + 1)
    mu_t[1] = b[1] * w1
    for j in range(2, s + 1):
        mu[j] = 2 * w0 * b[j] / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_t[j] = 2 * w1 * b[j] / b[j - 1]
        gamma_t[j] = -a[j - 1] * mu_t[j]
        c[j] = w1 * ddt[j] / dt[j]
    c[1] = c[2] / dt[2]
    return {
        "mu": mu,
        "nu": nu,
        "mu_t": mu_t,
        "gamma_t": gamma_t,
        "c": c,
        "beta": [(1.0 + w0) / w1],
    }


def rkc_stages_for(step: float, spectral_radius: float, *, max_stages: int = 1000) -> int:
    """Smallest stage count whose stability interval covers ``step * spectral_radius``."""
    need = abs(step) * spectral_radius * _SAFETY
    stages = max(2, math.ceil(math.sqrt(need / 0.65)))
    while rkc_coefficients(stages)["beta"][0] < need and stages < max_stages:
        stages += 1
    return min(stages, max_stages)


@torch.no_grad()
def estimate_spectral_radius(func, t: torch.Tensor, y: torch.Tensor, *, iters: int = 25) -> float:
    """Nonlinear power iteration for the spectral radius of ``df/dy`` at ``y``.

    Starts from a checkerboard (the stiffest, highest-frequency mode of a
    diffusion), so a few iterations suffice; returns the largest ratio seen.
    """
    f0 = func(t, y)
    rows = torch.arange(y.shape[-2], device=y.device).view(-1, 1)
    cols = torch.arange(y.shape[-1], device=y.device).view(1, -1)
    vector = ((rows + cols) % 2 * 2 - 1).to(y.dtype).expand_as(y).contiguous()
    scale = float(y.abs().max()) + 1.0
    best = 0.0
    for _ in range(iters):
        vector = vector / (vector.norm() + 1e-30)
        eps = 1e-4 * scale if y.dtype == torch.float64 else 1e-2 * scale
        jv = (func(t, y + eps * vector) - f0) / eps
        ratio = float(jv.norm())
        if not math.isfinite(ratio):
            break
        best = max(best, ratio)
        vector = jv
    return best


class RKC2(FixedGridODESolver):
    """torchdiffeq fixed-grid solver: ``options = {"step_size": h, "stages": s}`` or
    ``{"step_size": h, "spectral_radius": rho}`` (stages chosen per step from rho);
    with neither, rho is estimated once by power iteration at the first step."""

    order = 2

    def __init__(self, func, y0, stages: int | None = None, spectral_radius: float | None = None,
                 **kwargs):
        super().__init__(func, y0, **kwargs)
        self.stages = stages
        self.spectral_radius = spectral_radius

    def _stages(self, func, t0, dt, y0) -> int:
        if self.stages is not None:
            return int(self.stages)
        if self.spectral_radius is None:
            self.spectral_radius = estimate_spectral_radius(func, t0, y0)
        return rkc_stages_for(float(dt), float(self.spectral_radius))

    def _step_func(self, func, t0, dt, t1, y0):
        coeff = rkc_coefficients(self._stages(func, t0, dt, y0))
        mu, nu, mu_t, gamma_t, c = (coeff[k] for k in ("mu", "nu", "mu_t", "gamma_t", "c"))
        f0 = func(t0, y0)
        prev2 = y0
        prev = y0 + (mu_t[1] * dt) * f0
        for j in range(2, len(mu)):
            f_prev = func(t0 + c[j - 1] * dt, prev)
            stage = (
                (1 - mu[j] - nu[j]) * y0
                + mu[j] * prev
                + nu[j] * prev2
                + (mu_t[j] * dt) * f_prev
                + (gamma_t[j] * dt) * f0
            )
            prev2, prev = prev, stage
        return prev - y0, f0


# torchdiffeq looks methods up in this table (its package re-exports a function
# under the same name, hence the import by module path).
importlib.import_module("torchdiffeq._impl.odeint").SOLVERS.setdefault("rkc", RKC2)
