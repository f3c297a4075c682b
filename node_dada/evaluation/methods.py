"""The methods of the benchmark table: the baselines of
:data:`node_dada.baselines.BASELINES` with DADA's settings fixed, and trained
checkpoints joined through :func:`checkpoint_method` (``NAME=PATH@SCALE``
evaluates one only at the scale it was trained for).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from node_dada.baselines import BASELINES, default_params, get_baseline
from node_dada.baselines.dada import ODE_METHOD, ODE_STEP_GROWTH, ODE_STEP_SIZE
from node_dada.diffusion import DEFAULT_KAPPA, DEFAULT_STEP, INFERENCE_PRE_ITER
from node_dada.errors import InputValueError

__all__ = [
    "DEFAULT_METHODS",
    "ESTIMATE",
    "MethodSpec",
    "checkpoint_method",
    "method_specs",
    "takes",
]

DEFAULT_METHODS = (
    "bicubic",
    "guided_filter",
    "joint_bilateral",
    "fast_global_smoother",
    "weighted_median",
    "dada",
    "dada_ode",
)
#: The method whose result the others refine: methods whose signature takes a
#: precomputed estimate (``depth0``) get this one's.
ESTIMATE = "bicubic"


def checkpoint_method(name: str, path: Path, solver: str = "exact"
                      ) -> Callable[..., torch.Tensor]:
    """A trained model as benchmark method ``name``, with the baselines' signature
    ``method(guide, source, *, scale, mask_lr=None, depth0=None) -> (B, 1, H, W)``
    (raw 0-1 guide, source and result in mm), run with ``solver`` (``"exact"``: its
    training solver; ``"fast"``: RKC, see ``node_dada.upsample``). The checkpoint is
    loaded once, weights-only, so a bad or untrusted file fails here with a clear error."""
    import node_dada
    from node_dada.models.inference import cached_model

    cached_model(path)  # fail early, before any crop; upsample reuses this load

    def method(guide: torch.Tensor, source: torch.Tensor, *, scale: int,
               mask_lr: torch.Tensor | None = None, depth0: torch.Tensor | None = None,
               ) -> torch.Tensor:
        return node_dada.upsample(guide, source, scale=scale, mask_lr=mask_lr,
                                  checkpoint=str(path), solver=solver)

    method.__name__ = name
    return method


def takes(method: Callable[..., Any], parameter: str) -> bool:
    """Whether ``method``'s signature has a parameter named ``parameter``."""
    try:
        return parameter in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class MethodSpec:
    """A method of the table: its callable, fixed keyword arguments and descriptions."""

    name: str
    function: Callable[..., torch.Tensor]
    kwargs: dict[str, Any] = field(default_factory=dict)
    solver: str = ""
    scales: tuple[int, ...] = ()  # the scales it runs at; empty: every scale

    def runs_at(self, scale: int) -> bool:
        return not self.scales or scale in self.scales

    @property
    def uses_estimate(self) -> bool:
        return self.name != ESTIMATE and takes(self.function, "depth0")

    def params(self, scale: int) -> str:
        """The parameters this method runs with at ``scale``, as ``key=value`` text."""
        try:
            values: dict[str, Any] = default_params(self.name, scale)
        except InputValueError:
            values = {}
        values.update({k: v for k, v in self.kwargs.items() if not callable(v)})
        return " ".join(f"{key}={_short(value)}" for key, value in values.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def method_specs(
    methods: Sequence[str],
    *,
    dada_iters: int = INFERENCE_PRE_ITER,
    ode_step: float = ODE_STEP_SIZE,
    ode_step_growth: float = ODE_STEP_GROWTH,
    checkpoints: Sequence[tuple[str, Path, int | None]] = (),
    model_solver: str = "exact",
) -> list[MethodSpec]:
    """Look the methods up (unknown names raise) and fix DADA's settings.

    ``dada`` runs ``dada_iters`` discrete iterations; ``dada_ode`` integrates to
    the matching horizon ``T = 0.24 * dada_iters`` with RKC steps growing from
    ``ode_step`` by the factor ``ode_step_growth``; ``checkpoints`` run with
    ``model_solver``.
    """
    specs = []
    t_end = DEFAULT_STEP * dada_iters
    for name in methods:
        spec = MethodSpec(name, get_baseline(name))
        if name == "dada":
            spec.kwargs = {"num_iter": dada_iters}
            spec.solver = (
                f"discrete, {dada_iters} iterations, step {DEFAULT_STEP}, kappa {DEFAULT_KAPPA}"
            )
        elif name == "dada_ode":
            spec.kwargs = {"t_end": t_end, "method": ODE_METHOD, "step_size": ode_step,
                           "step_growth": ode_step_growth}
            steps = (f"steps {ode_step:g} x {ode_step_growth:g}^k" if ode_step_growth > 1
                     else f"step {ode_step:g}")
            spec.solver = f"{ODE_METHOD}, {steps}, T = {t_end:g}, kappa {DEFAULT_KAPPA}"
        specs.append(spec)
    for name, path, scale in checkpoints:
        if name in BASELINES or name in methods:
            raise InputValueError(
                f"--checkpoint {name}={path}: the name {name!r} is already a method; pick another"
            )
        specs.append(MethodSpec(name, checkpoint_method(name, path, model_solver),
                                solver="trained" if model_solver == "exact"
                                else "trained, fast (rkc)",
                                scales=() if scale is None else (scale,)))
    return specs
