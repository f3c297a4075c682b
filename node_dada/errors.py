"""Exceptions raised by node_dada.

Every error derives from :class:`NodeDadaError` and from the matching built-in,
so ``except ValueError`` in user code keeps working while ``except
NodeDadaError`` catches everything this package raises on purpose.
"""

from __future__ import annotations

import re

__all__ = [
    "error_line",
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


def error_line(error: BaseException, limit: int | None = None) -> str:
    """The message of ``error`` on one line (at most ``limit`` characters). An error
    re-raised from a DataLoader worker carries the worker's traceback in its text:
    only the original message is kept."""
    text = str(error)
    if "Original Traceback" in text:
        raised = list(re.finditer(r"^[\w.]+: ", text, re.MULTILINE))
        if raised:
            text = text[raised[-1].end():]
    text = re.sub(r"\s+", " ", text).strip()
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
