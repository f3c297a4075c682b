"""Loading weight files without executing pickled code.

A ``.pt``/``.pth``/``.ckpt`` file is a pickle, and unpickling an untrusted one can run
arbitrary code. Everything here reads files with
``torch.load(path, map_location="cpu", weights_only=True)``, whose restricted unpickler
accepts tensors and plain containers only; anything else is refused with a
:class:`~node_dada.errors.DataError` before any of the file's code can run. A file
that is an xz stream (``lzma``-compressed ``torch.save`` output, as the shipped
models are stored) is decompressed first and then read the same way.

Example:
    >>> from node_dada.models.extractors import build_extractor
    >>> phi = build_extractor("resnet50")
    >>> report = load_encoder_weights(phi, "resnet50-11ad3fa6.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import lzma
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from node_dada.errors import DataError, InputValueError, ShapeError

__all__ = [
    "EncoderLoadReport",
    "adapt_input_conv",
    "load_checkpoint_safely",
    "load_encoder_weights",
    "load_state_dict_safely",
]

_EXPECTED = (
    "a PyTorch weights file written by torch.save (a state dict, or a Lightning checkpoint "
    "with a 'state_dict' entry)"
)
# What torch.load raises on truncated or corrupt files, depending on where the file is
# cut and whether it is a zip or a legacy pickle (measured with torch 2.13).
_CORRUPT_FILE_ERRORS = (
    RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, struct.error,
    zipfile.BadZipFile, lzma.LZMAError,
)
_XZ_MAGIC = b"\xfd7zXZ\x00"
#: Key of the first convolution, whose input channels are adapted.
_FIRST_CONV = "conv1.weight"


def load_checkpoint_safely(path: str | Path) -> dict[str, Any]:
    """The top-level dict of a weights file, read without executing pickled code.

    Args:
        path: a file written by ``torch.save`` holding a dict (a state dict, a Lightning
            checkpoint, ...).

    Returns:
        The dict, with every tensor on the CPU.

    Raises:
        DataError: the file is missing, truncated or corrupt, holds something other
            than a dict, or holds code or Python objects beyond tensors and plain
            containers (it is then never unpickled past the first such object).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"weights file {path} does not exist; expected {_EXPECTED}. Check the path "
            f"(relative paths start from {Path.cwd()})"
        )
    if not path.is_file():
        raise DataError(f"weights file {path} is not a file; expected {_EXPECTED}")
    try:
        with warnings.catch_warnings():
            # torch notes protocols it did not write; the verdict below is what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            content = torch.load(_readable(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickler_detail(error)
        raise DataError(
            f"weights file {path} was refused: it contains pickled code or Python objects "
            f"beyond tensors and plain containers ({detail}), or is not a PyTorch file at "
            "all. It will not be loaded, because unpickling it could execute arbitrary code. "
            f"Expected {_EXPECTED}; if you trust its origin, re-save only the weights with "
            "torch.save(model.state_dict(), path)"
        ) from None
    except _CORRUPT_FILE_ERRORS as error:
        raise DataError(
            f"weights file {path} could not be read: it looks truncated or corrupt "
            f"({type(error).__name__}: {error}). Expected {_EXPECTED}; download or copy it "
            "again"
        ) from None
    if not isinstance(content, dict):
        raise DataError(
            f"weights file {path} holds a {type(content).__name__}; expected {_EXPECTED}"
        )
    return content


def _readable(path: Path) -> Path | io.BytesIO:
    """``path`` itself, or its decompressed bytes if it is an xz stream."""
    with open(path, "rb") as handle:
        compressed = handle.read(len(_XZ_MAGIC)) == _XZ_MAGIC
    return io.BytesIO(lzma.decompress(path.read_bytes())) if compressed else path


def load_state_dict_safely(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path``, read without executing pickled code.

    Accepts a bare state dict (``torch.save(model.state_dict(), path)``) and a
    Lightning checkpoint (whose ``"state_dict"`` entry is returned).

    Returns:
        ``{parameter name: tensor}`` with every tensor on the CPU.

    Raises:
        DataError: as :func:`load_checkpoint_safely`, or the dict does not map names
            to tensors.
    """
    content = load_checkpoint_safely(path)
    state = content.get("state_dict", content)
    if not isinstance(state, Mapping):
        raise DataError(
            f"weights file {path}: its 'state_dict' entry is a {type(state).__name__}; "
            f"expected {_EXPECTED}"
        )
    odd = [str(key) for key, value in state.items()
           if not isinstance(key, str) or not isinstance(value, Tensor)]
    if odd:
        raise DataError(
            f"weights file {path}: expected a mapping of parameter names to tensors, but "
            f"{len(odd)} entries are not (first: {odd[:5]}); top-level keys: "
            f"{list(content)[:10]}. Expected {_EXPECTED}"
        )
    return dict(state)


class EncoderLoadReport(NamedTuple):
    """What :func:`load_encoder_weights` did, key by key (encoder key names)."""

    loaded: list[str]
    #: encoder entries the file lacks (they keep their random initialisation)
    missing: list[str]
    #: file entries the encoder has no place for (``fc.*`` is dropped silently)
    unexpected: list[str]


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Extend RGB first-conv filters ``(O, 3, k, k)`` to ``(O, in_channels, k, k)``.

    With ``in_channels >= 3`` the RGB filters are kept and every extra channel (the
    depth, further spectral bands) gets the mean of the three. With fewer, the first
    channel (a grayscale guide) gets their sum (the response of the RGB filters to a
    gray image) and the others their mean.
    """
    mean = weight.mean(dim=1, keepdim=True)
    if in_channels >= 3:
        return torch.cat([weight, mean.expand(-1, in_channels - 3, -1, -1)], dim=1)
    gray = weight.sum(dim=1, keepdim=True)
    return torch.cat([gray, mean.expand(-1, in_channels - 1, -1, -1)], dim=1)


def load_encoder_weights(model: nn.Module, path: str | Path) -> EncoderLoadReport:
    """Load a torchvision-format ImageNet ResNet state dict into ``model.encoder``.

    The file is what ``torch.save(torchvision.models.resnet50(weights=...).state_dict(),
    path)`` writes (keys ``conv1.weight``, ``layer1.0.conv1.weight``, ..., ``fc.weight``);
    ``fc.*`` is ignored and a ``module.`` prefix (DataParallel) is stripped. A 3-channel
    ``conv1`` is extended to the encoder's input channels by :func:`adapt_input_conv`.
    Missing and unexpected entries are returned and reported with a warning.

    Args:
        model: a ``ResNetUNet`` (weights go to ``model.encoder``) or a ``ResNetEncoder``.
        path: the local weights file; nothing is downloaded.

    Raises:
        InputValueError: ``model`` has no ResNet encoder.
        DataError: unreadable file (see :func:`load_state_dict_safely`), or no entry of
            the file matches the encoder.
        ShapeError: an entry's shape differs from the encoder's (another architecture).
    """
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, nn.Module) or not hasattr(encoder, "conv1"):
        raise InputValueError(
            f"model: expected a ResNet U-Net or encoder (with a 'conv1'), got "
            f"{type(model).__name__}; ImageNet weights fit the resnet* extractors only"
        )
    state = load_state_dict_safely(path)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    own = encoder.state_dict()
    matched = {key: value for key, value in state.items() if key in own}
    if not matched:
        raise DataError(
            f"weights file {path}: none of its {len(state)} entries (first: "
            f"{list(state)[:5]}) names a parameter of the encoder (first: {list(own)[:5]}); "
            "expected a torchvision ResNet state dict"
        )
    if _FIRST_CONV in matched:
        matched[_FIRST_CONV] = _fit_first_conv(matched[_FIRST_CONV], own[_FIRST_CONV], path)
    wrong = [
        f"{key}: file {tuple(value.shape)}, model {tuple(own[key].shape)}"
        for key, value in matched.items() if value.shape != own[key].shape
    ]
    if wrong:
        raise ShapeError(
            f"weights file {path} does not fit this encoder ({len(wrong)} shape mismatches, "
            f"first: {'; '.join(wrong[:3])}); it is probably for another ResNet depth or "
            "width: build the extractor whose name matches the file (resnet18/34/50)"
        )
    encoder.load_state_dict(matched, strict=False)
    report = EncoderLoadReport(
        loaded=sorted(matched),
        missing=[key for key in own
                 if key not in matched and not key.endswith("num_batches_tracked")],
        unexpected=[key for key in state if key not in own],
    )
    if report.missing or report.unexpected:
        warnings.warn(
            f"weights file {path}: {len(report.missing)} encoder entries are missing from "
            f"the file and keep their random initialisation (first: {report.missing[:5]}); "
            f"{len(report.unexpected)} file entries were not used (first: "
            f"{report.unexpected[:5]})",
            stacklevel=2,
        )
    return report


def _fit_first_conv(weight: Tensor, target: Tensor, path: str | Path) -> Tensor:
    """``weight`` adapted to ``target``'s input channels when it has RGB filters."""
    if weight.shape == target.shape:
        return weight
    same_filters = weight.ndim == 4 and weight.shape[0] == target.shape[0] and (
        weight.shape[2:] == target.shape[2:]
    )
    if same_filters and weight.shape[1] == 3:
        return adapt_input_conv(weight, target.shape[1])
    raise ShapeError(
        f"weights file {path}: {_FIRST_CONV} has shape {tuple(weight.shape)}, the encoder "
        f"expects {tuple(target.shape)}; only 3-channel (RGB) filters of the same size can "
        "be extended to other input channels"
    )


def _unpickler_detail(error: pickle.UnpicklingError) -> str:
    """The sentence of torch's long weights-only message that names the refused content."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0].split(". ")[0].rstrip(".")
