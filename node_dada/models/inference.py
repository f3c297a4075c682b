"""Loading trained models safely and running them on tensors.

Checkpoints are read with ``torch.load(weights_only=True)``: a file whose
unpickling would run code or build arbitrary objects is refused with a
``DataError``, never executed.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from node_dada.errors import DataError, InputValueError
from node_dada.models.weights import load_checkpoint_safely

__all__ = [
    "NAMED_CHECKPOINTS",
    "export_model",
    "load_checkpoint_file",
    "load_model",
    "resolve_checkpoint",
]

_CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: ``{"short-name": "file-stem"}``: e.g. the best model of a scale under the scale's name.
_ALIASES_FILE = _CHECKPOINT_DIR / "aliases.json"


def _named_checkpoints() -> dict[str, str]:
    if not _CHECKPOINT_DIR.is_dir():
        return {}
    named = {path.stem: path.name for path in sorted(_CHECKPOINT_DIR.glob("*.pt"))}
    if _ALIASES_FILE.is_file():
        aliases = json.loads(_ALIASES_FILE.read_text())
        named |= {alias: named[stem] for alias, stem in aliases.items() if stem in named}
    return named


#: Trained models shipped with the package, by name (file in node_dada/models/checkpoints/).
NAMED_CHECKPOINTS: dict[str, str] = _named_checkpoints()


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


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors (see ``models.weights``)."""
    return load_checkpoint_safely(path)


def load_model(checkpoint: str | Path):
    """Build a :class:`~node_dada.models.DADAModule` from a Lightning checkpoint or a
    shipped ``{"hyper_parameters", "state_dict"}`` file, in eval mode."""
    from node_dada.models.dada_module import DADAModule

    path = resolve_checkpoint(checkpoint)
    content = load_checkpoint_file(path)
    if "state_dict" not in content or "hyper_parameters" not in content:
        raise DataError(
            f"checkpoint: {path} lacks 'state_dict' and 'hyper_parameters'; expected a "
            "node-dada Lightning checkpoint or a file written by node_dada.models.export_model"
        )
    accepted = inspect.signature(DADAModule.__init__).parameters
    # LightningCLI adds bookkeeping entries (e.g. "_instantiator"); keep the model's own.
    hparams = {k: v for k, v in dict(content["hyper_parameters"]).items() if k in accepted}
    hparams.pop("pretrained", None)  # encoder weights come from the state dict
    try:
        model = DADAModule(**hparams)
    except TypeError as error:
        raise InputValueError(f"checkpoint: {path} has unknown hyper-parameters: {error}") from None
    missing, unexpected = model.load_state_dict(content["state_dict"], strict=False)
    if missing or unexpected:
        raise DataError(
            f"checkpoint: {path} does not fit the model it describes (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    return model.eval()


def export_model(model, path: str | Path, *, half: bool = False,
                 metadata: dict[str, Any] | None = None) -> None:
    """Save weights + hyper-parameters only (small, loadable with weights_only).

    ``half`` stores floating-point weights in float16 (half the size; they load back
    into the float32 model, and metrics must then be measured on the exported file).
    ``metadata``: plain values (str, numbers, lists, dicts) kept under ``"metadata"``.
    """
    from node_dada.models.dada_module import DADAModule

    accepted = inspect.signature(DADAModule.__init__).parameters
    hparams = {k: v for k, v in dict(model.hparams).items() if k in accepted}
    hparams.pop("pretrained", None)  # encoder weights are in the state dict
    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    content = {"hyper_parameters": hparams, "state_dict": state}
    if metadata:
        content["metadata"] = metadata
    torch.save(content, path)
