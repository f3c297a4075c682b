"""Shared by the benchmark scripts: the process's memory readings, and writing a
Markdown report."""

from __future__ import annotations

import sys
from pathlib import Path

from node_dada.libc import resident_kib


def publish(out: Path, lines: list[str]) -> int:
    """Write ``lines`` to ``out/README.md`` (creating ``out``), print them; exit code 0."""
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    sys.stdout.write(text)
    return 0


def rss_kib(field: str) -> int:
    """``VmRSS``, ``VmHWM``, ... of this process in KiB (Linux ``/proc/self/status``)."""
    value = resident_kib(field)
    if value is None:
        raise RuntimeError(f"{field} not in /proc/self/status (the benchmarks need Linux)")
    return value


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (``/proc/loadavg``), or ``"?"``."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
