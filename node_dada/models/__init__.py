"""Feature extractors and the LightningModule (docs/design.md sections 5 and 8)."""

from node_dada.models.dada_module import LOSS_WEIGHT, DADAModule
from node_dada.models.extractors import build_extractor
from node_dada.models.inference import (
    NAMED_CHECKPOINTS,
    export_model,
    load_checkpoint_file,
    load_model,
)

__all__ = [
    "LOSS_WEIGHT",
    "NAMED_CHECKPOINTS",
    "DADAModule",
    "build_extractor",
    "export_model",
    "load_checkpoint_file",
    "load_model",
]
