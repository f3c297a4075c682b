"""Exceptions raised by node_dada.

Every error derives from :class:`NodeDadaError` and from the matching built-in,
so ``except ValueError`` in user code keeps working while ``except
NodeDadaError`` catches everything this package raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "NodeDadaError",
    "ShapeError",
    "InputTypeError",
    "InputValueError",
    "SolverError",
    "DataError",
]


class NodeDadaError(Exception):
    """Base class of every error node_dada raises deliberately."""


class ShapeError(NodeDadaError, ValueError):
    """An argument has the wrong rank or size."""


class InputTypeError(NodeDadaError, TypeError):
    """An argument has the wrong type or dtype."""


class InputValueError(NodeDadaError, ValueError):
    """An argument has a value that cannot be used (NaN guide, empty source, bad option)."""


class SolverError(NodeDadaError, RuntimeError):
    """A solver failed: budget exceeded, non-finite state or gradient."""


class DataError(NodeDadaError, OSError):
    """A file or dataset folder is missing, truncated, corrupt or of the wrong kind."""
