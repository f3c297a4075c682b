"""``node-dada card`` and ``python -m node_dada.models.card``: the options and the
command of :mod:`node_dada.models.card` (write the model card of the shipped models)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node_dada.models import card

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Write the model card to ``--out``."""
    parser = argparse.ArgumentParser(description=card.__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/models.md"))
    parser.add_argument("--results", type=Path, default=Path("results/trained"))
    args = parser.parse_args(argv)
    args.out.write_text(card.render_card(args.out, args.results))
    sys.stdout.write(f"written {args.out}\n")
    return 0
