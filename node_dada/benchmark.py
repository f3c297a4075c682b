"""``node-dada benchmark``: every method on the same deterministic test crops, in
one table (docs/design.md section 7).

    python -m node_dada.benchmark --dataset middlebury --scales 4 8 16 32 \\
        --methods bicubic guided_filter joint_bilateral fast_global_smoother \\
        weighted_median dada dada_ode

The evaluation itself lives in :mod:`node_dada.evaluation` (the crops, the methods,
the run and its reports); the command line (its options and ``main``) is
:mod:`node_dada.commands.benchmark`. This module is the ``python -m
node_dada.benchmark`` entry point, and every public name of
:mod:`node_dada.evaluation` reads through it as well
(``from node_dada.benchmark import load_scenes``).
"""

from __future__ import annotations

from typing import Any

from node_dada import evaluation

__all__ = list(evaluation.__all__)


def __getattr__(name: str) -> Any:
    """The public names of :mod:`node_dada.evaluation`, read through this module."""
    if name in evaluation.__all__:
        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if __name__ == "__main__":
    from node_dada.commands.benchmark import main

    raise SystemExit(main())
