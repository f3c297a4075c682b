"""Loading trained models safely and running them on tensors.

Checkpoints are read with ``torch.load(weights_only=True)``: a file whose
unpickling would run code or build arbitrary objects is refused with a
``DataError``, never executed.
"""

from __future__ import annotations

import functools
import inspect
import io
import lzma
from pathlib import Path
from typing import Any

import torch

from node_dada.errors import DataError, InputValueError
from node_dada.models.registry import (  # noqa: F401 (re-exported)
    NAMED_CHECKPOINTS,
    SHIPPED_MODELS,
    read_aliases,
    resolve_checkpoint,
)
from node_dada.models.weights import load_checkpoint_safely

__all__ = [
    "NAMED_CHECKPOINTS",
    "SHIPPED_MODELS",
    "cached_model",
    "export_model",
    "load_checkpoint_file",
    "load_model",
    "model_from_content",
    "read_aliases",
    "resolve_checkpoint",
    "training_scale",
]

def _model_hparams(raw: Any) -> dict[str, Any]:
    """The ``DADAModule`` arguments among saved hyper-parameters: LightningCLI adds
    bookkeeping entries (e.g. ``"_instantiator"``), and ``pretrained`` and
    ``init_from`` are dropped because the weights come with the state dict."""
    from node_dada.models.dada_module import DADAModule

    accepted = inspect.signature(DADAModule.__init__).parameters
    hparams = {k: v for k, v in dict(raw).items() if k in accepted}
    hparams.pop("pretrained", None)
    hparams.pop("init_from", None)
    return hparams


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors (see ``models.weights``)."""
    return load_checkpoint_safely(path)


def load_model(checkpoint: str | Path):
    """Build a :class:`~node_dada.models.DADAModule` from a Lightning checkpoint or a
    shipped ``{"hyper_parameters", "state_dict"}`` file, in eval mode."""
    path = resolve_checkpoint(checkpoint)
    return model_from_content(load_checkpoint_file(path), path)


def cached_model(checkpoint: str | Path):
    """:func:`load_model`, read once per process for a given file (its path, size and
    modification time): many frames with one model pay for one load. The model is
    shared between callers; ``node_dada.upsample`` moves it to the input's device
    and dtype."""
    path = resolve_checkpoint(checkpoint).resolve()
    stat = path.stat()
    return _load_model_once(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_model_once(path: str, size: int, mtime_ns: int):
    return load_model(path)


def model_from_content(content: dict[str, Any], path: str | Path):
    """:func:`load_model` on a file already read with :func:`load_checkpoint_file`
    (``path`` only names it in errors)."""
    from node_dada.models.dada_module import DADAModule

    if "state_dict" not in content or "hyper_parameters" not in content:
        raise DataError(
            f"checkpoint: {path} lacks 'state_dict' and 'hyper_parameters'; expected a "
            "node-dada Lightning checkpoint or a file written by node_dada.models.export_model"
        )
    hparams = _model_hparams(content["hyper_parameters"])
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
    model.training_scale = training_scale(content)
    return model.eval()


def training_scale(content: dict[str, Any]) -> int | None:
    """The upsampling factor a model was trained for: a shipped file's ``metadata``,
    or a Lightning checkpoint's DataModule settings (None when neither says)."""
    for section in ("metadata", "datamodule_hyper_parameters"):
        value = (content.get(section) or {}).get("scale")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def export_model(model, path: str | Path, *, half: bool = False, compress: bool = False,
                 metadata: dict[str, Any] | None = None) -> None:
    """Save weights + hyper-parameters only (small, loadable with weights_only).

    ``half`` stores floating-point weights in float16 (half the size; they load back
    into the float32 model, and metrics must then be measured on the exported file).
    ``compress`` writes the file as an xz stream (lossless, about 13 % smaller for
    float16 weights), which ``load_checkpoint_safely`` reads like any other.
    ``metadata``: plain values (str, numbers, lists, dicts) kept under ``"metadata"``.
    """
    hparams = _model_hparams(model.hparams)
    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    content = {"hyper_parameters": hparams, "state_dict": state}
    if metadata:
        content["metadata"] = metadata
    write_content(content, path, compress=compress)


def write_content(content: dict[str, Any], path: str | Path, *, compress: bool) -> None:
    """``torch.save`` of an exported model's dict, xz-compressed with ``compress``,
    written atomically."""
    from node_dada.models.checkpointing import atomic_write

    buffer = io.BytesIO()
    torch.save(content, buffer)
    data = buffer.getvalue()
    if compress:
        data = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    # a reader (a process loading the shipped model) never sees a half-written file
    atomic_write(path, lambda stream: stream.write(data))
