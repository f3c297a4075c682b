"""The GPU path: the discrete iteration and the projected field through ``torch.compile``.

On CUDA, Inductor turns each of them into a few generated Triton kernels (the
exchanges, the block means and the adjustment fused) instead of the dozen
launches of the eager ops. The compiled functions are the eager ones
(``discrete.discrete_step``, ``field.projected_field``), so results agree with the
eager path to float32 round-off, and autograd runs through them as through the
eager ops. CPU work keeps the numba kernels of ``fused.py``.

``NODE_DADA_COMPILE`` (or :func:`set_mode`) picks where it runs: ``auto`` (the
default) on CUDA tensors only, ``always`` on any device (CPU too, through
Inductor's C++ backend: the tests check it there), ``never`` nowhere. If
compiling fails (no Triton, no compiler), a warning says so once and the eager
ops run from then on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ENV_SWITCH", "MODES", "call", "mode", "set_mode", "supports"]

ENV_SWITCH = "NODE_DADA_COMPILE"
MODES = ("never", "auto", "always")


def _initial_mode() -> str:
    value = os.environ.get(ENV_SWITCH, "auto").strip().lower()
    if value not in MODES:
        warnings.warn(f"{ENV_SWITCH}: expected one of {MODES}, got {value!r}; using 'auto'",
                      stacklevel=2)
        return "auto"
    return value


_state: dict[str, Any] = {"mode": _initial_mode(), "compiled": {}, "failed": False}


def mode() -> str:
    """The current mode (``never``, ``auto`` or ``always``)."""
    return _state["mode"]


def set_mode(value: str) -> str:
    """Set the mode for this process; returns the previous one."""
    if value not in MODES:
        raise ValueError(f"compiled.set_mode: expected one of {MODES}, got {value!r}")
    previous, _state["mode"] = _state["mode"], value
    return previous


def supports(tensor: torch.Tensor) -> bool:
    """Whether work on ``tensor`` goes through the compiled functions."""
    if _state["failed"] or _state["mode"] == "never":
        return False
    return _state["mode"] == "always" or tensor.is_cuda


def call(function: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    """``function(*args)`` through its compiled version (compiled once per function;
    shapes are specialised, so each new shape compiles once more). Falls back to
    ``function`` itself, for good, if compiling fails."""
    compiled = _state["compiled"].get(function)
    if compiled is None:
        compiled = torch.compile(function, dynamic=False)
        _state["compiled"][function] = compiled
    try:
        return compiled(*args)
    except Exception as error:  # noqa: BLE001 - any backend failure: run the eager ops
        _state["failed"] = True
        warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); the eager "
                      f"ops run instead (set {ENV_SWITCH}=never to skip compiling)",
                      RuntimeWarning, stacklevel=2)
        return function(*args)
