"""Where datasets live: the data root.

A dataset path is read as given when it is absolute or exists under the working
directory. Otherwise it is looked up under the *data root*: the folder named by
the environment variable ``NODE_DADA_DATA`` when it is set, else ``data/`` in the
working directory, which is where ``node-dada data download NAME --root data``
puts every dataset. The shipped configs name their datasets relative to the
data root (``middlebury0506/ThirdSize``, ``middlebury2014``, ``nyu_depth_v2``), so
one variable points all of them at a user's own copy::

    export NODE_DADA_DATA=/datasets/depth      # or keep the default ./data
    node-dada fit --config configs/trained/middlebury_x8_discrete.yaml
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "data_root", "describe_search", "resolve_data_path"]

#: Environment variable that names the data root.
DATA_ENV = "NODE_DADA_DATA"
#: The data root when :data:`DATA_ENV` is unset: ``data/`` in the working directory.
DEFAULT_DATA_ROOT = "data"


def data_root() -> Path:
    """The folder datasets are looked up in: ``$NODE_DADA_DATA``, else ``./data``."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else Path(DEFAULT_DATA_ROOT)


def resolve_data_path(path: str | Path) -> Path:
    """``path`` itself when it is absolute or exists; else ``data_root() / path`` when
    that exists; else ``path`` unchanged (the caller reports it missing, with
    :func:`describe_search`)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidate = data_root() / path
    return candidate if candidate.exists() else path


def describe_search(path: str | Path) -> str:
    """Where :func:`resolve_data_path` looked for ``path``, for an error message."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return str(path)
    source = f"${DATA_ENV}" if os.environ.get(DATA_ENV, "").strip() else (
        f"the default data root; set ${DATA_ENV} to use another")
    return f"{path} (working directory) or {data_root() / path} ({source})"
