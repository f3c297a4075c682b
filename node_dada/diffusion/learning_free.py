"""Learning-free DADA on prepared tensors: coefficients from the normalised guide
and the initial estimate with a fixed ``kappa`` (docs/design.md section 2), then the
discrete iteration (``learning_free_dada``) or its ODE (``learning_free_ode``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from node_dada.diffusion.checks import check_mask, check_pair, check_tensor, infer_scale
from node_dada.diffusion.discrete import DEFAULT_STEP, INFERENCE_PRE_ITER, discrete_dada
from node_dada.diffusion.ode import SolveInfo, solve_ode
from node_dada.diffusion.operators import edge_coefficients
from node_dada.diffusion.sampling import initial_estimate, shift_positive

__all__ = [
    "DEFAULT_KAPPA",
    "ODE_METHOD",
    "ODE_STEP_GROWTH",
    "ODE_STEP_SIZE",
    "learning_free_solver",
    "learning_free_coefficients",
    "learning_free_dada",
    "learning_free_ode",
]

#: Fixed ``kappa`` of the learning-free variant (the learned one starts there too).
DEFAULT_KAPPA = 0.03
#: Default solver of the learning-free ODE: RKC2 with growing steps, the first 10 and
#: each 1.5 times the one before (12 steps, 536 evaluations to T = 1920). On Motorcycle
#: crops at x4, x8 and x16 it reproduces the 8000-iteration discrete result to 1.0e-4 to
#: 2.1e-4 relative L2, closer than uniform steps of 40 (1248 evaluations, 2.6e-4 to
#: 3.5e-4) at 2.3x fewer evaluations (``benchmarks/speed.py``, results/speed/).
ODE_METHOD, ODE_STEP_SIZE, ODE_STEP_GROWTH = "rkc", 10.0, 1.5


def learning_free_solver(method: str = ODE_METHOD, step_size: float | None = ODE_STEP_SIZE,
                         step_growth: float | None = None) -> dict[str, Any]:
    """``solve_ode`` settings; ``step_growth=None``: ``ODE_STEP_GROWTH`` for ``"rkc"``
    (the only method growing steps suit), uniform steps for any other."""
    if step_growth is None:
        step_growth = ODE_STEP_GROWTH if method == "rkc" else 1.0
    return {"method": method, "step_size": step_size, "step_growth": step_growth}


def learning_free_coefficients(
    guide: torch.Tensor, depth0: torch.Tensor, kappa: float = DEFAULT_KAPPA
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cv, ch`` from ``F = cat(guide, I0)``; ``guide`` normalised, ``depth0`` scaled depth."""
    return edge_coefficients(torch.cat([guide, depth0], dim=1), kappa)


def learning_free_dada(
    guide: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    depth0: torch.Tensor | None = None,
    *,
    kappa: float = DEFAULT_KAPPA,
    num_iter: int = INFERENCE_PRE_ITER,
    step: float = DEFAULT_STEP,
    callback: Callable[[int], None] | None = None,
    fidelity: torch.Tensor | None = None,
) -> torch.Tensor:
    """Learning-free DADA.

    Args:
        guide: (B, C, H, W) normalised guide (see ``normalize_guide``).
        source: (B, 1, h, w) depth divided by the dataset's depth scale (positive).
        mask_lr: (B, 1, h, w) validity.
        depth0: (B, 1, H, W) initial estimate; computed with ``initial_estimate`` if None.
        kappa: Perona-Malik parameter.
        num_iter: discrete iterations (8000 for inference).
        step: ``lambda``.
        callback: progress callback, called with the number of finished iterations.
        fidelity: ``None`` (exact consistency) or per-block weights of the relaxed
            consistency for a noisy source (``noise.fidelity_weights``).

    Returns:
        (B, 1, H, W) depth in the units of ``source``.
    """
    source_s, depth0_s, shift, mask, cv, ch = _problem(guide, source, mask_lr, depth0, kappa)
    result = discrete_dada(depth0_s, cv, ch, source_s, mask, num_iter, step, callback=callback,
                           fidelity=fidelity)
    return result - shift if shift else result


def learning_free_ode(
    guide: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    depth0: torch.Tensor | None = None,
    *,
    t_end: float,
    kappa: float = DEFAULT_KAPPA,
    method: str = ODE_METHOD,
    step_size: float | None = ODE_STEP_SIZE,
    step_growth: float | None = None,
    **solver: Any,
) -> tuple[torch.Tensor, SolveInfo]:
    """Learning-free DADA as an ODE: the coefficients of :func:`learning_free_dada`,
    the projected diffusion integrated to ``t_end`` by ``solve_ode`` with ``method``,
    ``step_size`` and ``step_growth`` as :func:`learning_free_solver` settles them
    (``solver``: the rest of its keyword arguments, e.g. ``fidelity`` for a noisy
    source). Returns the depth in the units of ``source`` and the solve's
    ``SolveInfo``."""
    source_s, depth0_s, shift, mask, cv, ch = _problem(guide, source, mask_lr, depth0, kappa)
    steps = learning_free_solver(method, step_size, step_growth)
    result, info = solve_ode(depth0_s, cv, ch, source_s, mask, t_end, **steps, **solver)
    return (result - shift if shift else result), info


def _problem(guide, source, mask_lr, depth0, kappa):
    """Checked inputs, shifted to positive depth, and their coefficients:
    ``(source, depth0, shift, mask, cv, ch)``."""
    check_tensor("guide", guide)
    check_tensor("source", source, channels=1)
    scale = infer_scale(tuple(guide.shape[-2:]), tuple(source.shape[-2:]), "source")
    check_pair("guide", guide, "source", source, scale)
    mask = check_mask(mask_lr, source)
    if depth0 is None:
        depth0 = initial_estimate(source, mask, scale)
    source_s, depth0_s, shift = shift_positive(source, depth0, mask)
    cv, ch = learning_free_coefficients(guide, depth0_s, kappa)
    return source_s, depth0_s, shift, mask, cv, ch
