"""Command: convert the raw DIML download to the npy files the DIML loader reads.

    python -m node_dada.data.diml_convert <raw_root> [--out DIR] [--val-fraction 0.1]

The conversion is :func:`node_dada.data.diml.convert_diml_raw`; the command line (its
options and ``main``) is :mod:`node_dada.commands.diml_convert`.
"""

from __future__ import annotations

__all__: list[str] = []


if __name__ == "__main__":
    from node_dada.commands.diml_convert import main

    raise SystemExit(main())
