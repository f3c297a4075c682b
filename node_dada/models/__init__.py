"""Feature extractors and the LightningModule (docs/design.md sections 5 and 8).

The names below load on first use, so that ``import node_dada.models.weights`` (the
safe loader) or ``node_dada.models.registry`` does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node_dada.models.dada_module import LOSS_WEIGHT, DADAModule
    from node_dada.models.extractors import build_extractor
    from node_dada.models.inference import export_model, load_checkpoint_file, load_model
    from node_dada.models.registry import NAMED_CHECKPOINTS

_WHERE = {
    "LOSS_WEIGHT": "node_dada.models.dada_module",
    "DADAModule": "node_dada.models.dada_module",
    "build_extractor": "node_dada.models.extractors",
    "NAMED_CHECKPOINTS": "node_dada.models.registry",
    "export_model": "node_dada.models.inference",
    "load_checkpoint_file": "node_dada.models.inference",
    "load_model": "node_dada.models.inference",
}

__all__ = [
    "LOSS_WEIGHT",
    "NAMED_CHECKPOINTS",
    "DADAModule",
    "build_extractor",
    "export_model",
    "load_checkpoint_file",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'node_dada.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
