"""The trained models shipped inside the package, by name: which file a name means.

Imports nothing heavier than ``pathlib`` and ``json``, so that the model itself
(``init_from``) and the loaders can both resolve a name.
"""

from __future__ import annotations

import json
from pathlib import Path

from node_dada.errors import DataError

__all__ = ["NAMED_CHECKPOINTS", "SHIPPED_MODELS", "read_aliases", "resolve_checkpoint"]

#: The trained models shipped inside the package (weights only): ``<name>.pt``.
_CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "weights"
#: ``{"short-name": "file-stem"}``: e.g. the best model of a scale under the scale's name.
_ALIASES_FILE = _CHECKPOINT_DIR / "aliases.json"


def read_aliases() -> dict[str, str]:
    """The shipped aliases, ``{"alias": "file-stem"}`` (empty when there are none)."""
    return json.loads(_ALIASES_FILE.read_text()) if _ALIASES_FILE.is_file() else {}


def _named_checkpoints() -> dict[str, str]:
    if not _CHECKPOINT_DIR.is_dir():
        return {}
    named = {path.stem: path.name for path in sorted(_CHECKPOINT_DIR.glob("*.pt"))}
    named |= {alias: named[stem] for alias, stem in read_aliases().items() if stem in named}
    return named


#: Trained models shipped with the package, by name (file in node_dada/weights/).
NAMED_CHECKPOINTS: dict[str, str] = _named_checkpoints()
#: The shipped files' own names (``NAMED_CHECKPOINTS`` without the aliases).
SHIPPED_MODELS: tuple[str, ...] = tuple(
    sorted(name for name, file in NAMED_CHECKPOINTS.items() if file == f"{name}.pt"))


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A shipped model's name or a path -> an existing file."""
    name = str(checkpoint)
    if name in NAMED_CHECKPOINTS:
        return _CHECKPOINT_DIR / NAMED_CHECKPOINTS[name]
    path = Path(checkpoint)
    if path.is_file():
        return path
    known = ", ".join(NAMED_CHECKPOINTS) or "none are shipped yet"
    raise DataError(
        f"checkpoint: {name!r} is neither a shipped model name ({known}) nor an existing file"
    )
