"""Shared by the benchmark scripts: write a Markdown report and echo it."""

from __future__ import annotations

import sys
from pathlib import Path


def publish(out: Path, lines: list[str]) -> int:
    """Write ``lines`` to ``out/README.md`` (creating ``out``), print them; exit code 0."""
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    sys.stdout.write(text)
    return 0
