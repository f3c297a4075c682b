"""File readers for the formats of the field (docs/design.md section 6): 8/16-bit PNG,
JPEG, PPM/PGM, TIFF, PFM, NPY.

Every reader checks what it gets and raises :class:`~node_dada.errors.DataError`
(an ``OSError``) on a missing, truncated, corrupt or wrong-kind file, with a
message that says what was expected, what came and what to do. Headers are
checked against the file size before any pixel buffer is allocated, so a file
that lies about its size fails fast instead of exhausting memory.

Raster formats are decoded by OpenCV; PFM by :func:`read_pfm` (a header check
plus ``numpy.frombuffer``, tested against OpenCV's decoder); NPY by numpy after
the same header check. Colour images come back in RGB(A) order.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from node_dada.data.root import describe_search, resolve_data_path
from node_dada.errors import DataError, InputTypeError, InputValueError, ShapeError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "convert_guide_channels",
    "guide_to_float",
    "read_image",
    "read_npy",
    "read_number",
    "read_pfm",
    "require_dir",
    "warn_if_8bit_in_16bit",
    "write_pfm",
]

#: Suffixes :func:`read_image` understands (lower case).
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".bmp", ".pfm", ".npy",
)
#: Largest image (pixels) any reader accepts: 2**28 is ~50x a full-size Middlebury 2014 view.
MAX_IMAGE_PIXELS = 1 << 28
_RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".bmp")
_PFM_TOKEN = re.compile(rb"\S+")
# A PFM header is three short tokens; anything longer is not a PFM file.
_PFM_MAX_HEADER = 256
# ITU-R BT.601 luma weights, used to turn an RGB guide into one channel.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: expected a file at {path}, found nothing; check the path")
    if not path.is_file():
        raise DataError(f"{what}: expected a file at {path}, found a directory or special file")
    if path.stat().st_size == 0:
        raise DataError(f"{what}: {path} is empty (0 bytes); the file is truncated, copy it again")
    return path


def _check_pixels(path: Path, what: str, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise DataError(
            f"{what}: {path} declares a size of {width} x {height}; the file is corrupt"
        )
    if height * width > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{what}: {path} declares {width} x {height} pixels, more than the limit of "
            f"{MAX_IMAGE_PIXELS}; the header is corrupt or the file is not an image of this field"
        )


def require_dir(path: str | Path, *, what: str, layout: str, download: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a directory (a relative path is also
    looked up under the data root, see :mod:`node_dada.data.root`), else raise a
    :class:`DataError` that shows the expected ``layout`` and where to ``download`` it."""
    resolved = resolve_data_path(path)
    if not resolved.is_dir():
        found = "a file" if resolved.exists() else "nothing"
        raise DataError(
            f"{what}: expected a dataset folder at {describe_search(path)}, found {found}.\n"
            f"Expected layout:\n{layout}\nDownload: {download} (`node-dada data list` shows "
            f"what `node-dada data download NAME --root DIR` fetches)"
        )
    return resolved


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV logs decoder failures to stderr itself; failures surface here as DataError.
    logging_api = cv2.utils.logging
    previous = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


def _read_raster(path: Path, what: str) -> np.ndarray:
    data = path.read_bytes()
    try:  # header only: PIL parses the size without decoding pixels
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            if path.suffix.lower() == ".png":
                header.verify()  # chunk CRCs and ordering: catches truncated PNGs
                end = data.rfind(b"IEND")
                if end < 0 or len(data) < end + 8:  # PIL does not check the closing chunk
                    raise OSError("the closing IEND chunk is missing")
    except Image.DecompressionBombError as error:
        raise DataError(f"{what}: {path} declares an implausibly large image ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        if path.suffix.lower() == ".png":
            raise DataError(
                f"{what}: expected a PNG image at {path}, but it is truncated or corrupt "
                f"({error}); copy or download the file again"
            ) from None
        width = height = None  # PIL cannot parse every TIFF variant: let OpenCV try
    if width is not None:
        _check_pixels(path, what, height, width)
    try:
        with _quiet_opencv():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise DataError(f"{what}: could not decode {path} ({error.msg.strip()})") from None
    if image is None:
        raise DataError(
            f"{what}: expected an image ({', '.join(_RASTER_SUFFIXES)}) at {path}, but it "
            "could not be decoded: it is truncated, corrupt or of another kind; "
            "copy or download the file again"
        )
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_pfm(path: str | Path, *, what: str = "PFM file") -> np.ndarray:
    """Read a Portable Float Map (the Middlebury 2014 disparity format).

    Rows are stored bottom-up; they come back top-down. Values are kept as they
    are (``inf`` marks unknown disparity in Middlebury).

    Returns:
        (H, W) float32 for ``Pf`` files, (H, W, 3) float32 (RGB) for ``PF`` files.
    """
    path = _check_file(path, what)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_PFM_MAX_HEADER)
    tokens = list(_PFM_TOKEN.finditer(head))
    if len(tokens) < 4 or tokens[0].group() not in (b"PF", b"Pf"):
        raise DataError(
            f"{what}: expected a PFM file (starting 'PF' or 'Pf', then width, height and "
            f"scale) at {path}, got {head[:16]!r}; the file is corrupt or of another kind"
        )
    channels = 3 if tokens[0].group() == b"PF" else 1
    try:
        width, height = int(tokens[1].group()), int(tokens[2].group())
        endian_scale = float(tokens[3].group())
    except ValueError:
        raise DataError(
            f"{what}: {path} has a malformed PFM header {head[: tokens[3].end()]!r}; "
            "expected integer width and height and a non-zero scale"
        ) from None
    if endian_scale == 0 or not math.isfinite(endian_scale):
        raise DataError(f"{what}: {path} has PFM scale {endian_scale}; expected non-zero finite")
    _check_pixels(path, what, height, width)
    offset = tokens[3].end() + 1  # a single whitespace byte ends the header
    expected = width * height * channels * 4
    if size - offset < expected:
        raise DataError(
            f"{what}: {path} declares {width} x {height} x {channels} float32 values "
            f"({expected} bytes) but holds {max(size - offset, 0)} bytes of data; the file is "
            "truncated, copy or download it again"
        )
    if size - offset > expected:
        warnings.warn(
            f"{path}: {size - offset - expected} bytes after the PFM data were ignored",
            stacklevel=2,
        )
    dtype = np.dtype("<f4" if endian_scale < 0 else ">f4")
    data = np.fromfile(path, dtype=dtype, count=width * height * channels, offset=offset)
    shape = (height, width) if channels == 1 else (height, width, 3)
    return np.ascontiguousarray(data.reshape(shape)[::-1]).astype(np.float32, copy=False)


def write_pfm(path: str | Path, array: np.ndarray) -> None:
    """Write an (H, W) or (H, W, 3) float array as a little-endian PFM (rows bottom-up)."""
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ShapeError(f"array: expected shape (H, W) or (H, W, 3), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputTypeError(f"array: expected a float array, got dtype {array.dtype}")
    height, width = array.shape[:2]
    magic = "PF" if array.ndim == 3 else "Pf"
    body = np.ascontiguousarray(array[::-1], dtype="<f4").tobytes()
    Path(path).write_bytes(f"{magic}\n{width} {height}\n-1\n".encode("ascii") + body)


def read_npy(path: str | Path, *, mmap: bool = False, what: str = "NPY file") -> np.ndarray:
    """Read a ``.npy`` array after checking its header against the file size.

    Args:
        mmap: map the file read-only instead of reading it (large DIML arrays).

    Object arrays (pickles) are refused.
    """
    path = _check_file(path, what)
    size = path.stat().st_size
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in readers:
                raise DataError(f"{what}: {path} is NPY format version {version}; expected 1.0/2.0")
            shape, _, dtype = readers[version](handle)
            offset = handle.tell()
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, tokenize.TokenError) as error:
        # numpy parses the header dict with Python's tokenizer and ast: a corrupt header
        # surfaces as any of these (found by benchmarks/fuzz_readers.py).
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"{what}: expected a NumPy .npy file at {path}, but its header is unreadable "
            f"({error}); the file is truncated, corrupt or of another kind"
        ) from None
    if dtype.hasobject:
        raise DataError(f"{what}: {path} holds Python objects (dtype {dtype}); expected numbers")
    expected = math.prod(shape) * dtype.itemsize
    if size - offset < expected:
        raise DataError(
            f"{what}: {path} declares shape {shape} of {dtype} ({expected} bytes) but holds "
            f"{size - offset} bytes of data; the file is truncated, copy or convert it again"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(f"{what}: could not read {path} ({error})") from None


def read_image(path: str | Path, *, what: str = "image") -> np.ndarray:
    """Read any supported image file in its native dtype.

    Returns:
        (H, W) for single-channel files, (H, W, C) otherwise; colour in RGB(A)
        order; dtype as stored (uint8, uint16, float32, ...).
    """
    path = _check_file(path, what)
    suffix = path.suffix.lower()
    if suffix == ".pfm":
        return read_pfm(path, what=what)
    if suffix == ".npy":
        array = read_npy(path, what=what)
        if array.ndim not in (2, 3):
            raise DataError(f"{what}: expected an (H, W) or (H, W, C) array in {path}, got "
                            f"shape {array.shape}")
        return array
    if suffix not in _RASTER_SUFFIXES:
        raise DataError(
            f"{what}: {path} has suffix {suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return _read_raster(path, what)


def read_number(path: str | Path, *, what: str) -> float:
    """Read a text file that holds a single number (Middlebury ``dmin.txt``)."""
    path = _check_file(path, what)
    text = path.read_bytes()[:64].decode("ascii", errors="replace").strip()
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{what}: expected a single number in {path}, got {text!r}") from None


def warn_if_8bit_in_16bit(image: np.ndarray, *, what: str = "guide") -> None:
    """Warn when a uint16 guide holds only 0-255: 8-bit data in a 16-bit container.

    Read as 0-65535 it would come out nearly black, with every edge too weak for
    the diffusion coefficients to see.
    """
    if image.dtype != np.uint16 or image.size == 0:
        return
    largest = int(image.max())
    if largest <= 255:
        warnings.warn(
            f"{what}: a 16-bit image whose values stay within 0-{largest} looks like 8-bit data "
            "stored as 16 bits; it is read as 0-65535, nearly black, so its edges barely steer "
            "the diffusion. Convert it with image.astype(np.uint8) if it is 8-bit data",
            stacklevel=3,
        )


def guide_to_float(image: np.ndarray, *, what: str = "guide") -> np.ndarray:
    """Guide image in native dtype -> (H, W, C) float32 in 0-1.

    uint8 is divided by 255, uint16 by 65535; float input must already lie in 0-1.
    """
    array = image[..., None] if image.ndim == 2 else image
    if array.ndim != 3:
        raise ShapeError(f"{what}: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint16:
        warn_if_8bit_in_16bit(array, what=what)
        return array.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            raise InputValueError(f"{what}: expected finite values, got NaN or inf")
        if array.size and (array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
            raise InputValueError(
                f"{what}: expected float values in 0-1, got [{array.min():.4g}, "
                f"{array.max():.4g}]; store float guides divided by their maximum"
            )
        return np.clip(array, 0.0, 1.0)
    raise InputTypeError(f"{what}: expected uint8, uint16 or float pixels, got {array.dtype}")


def convert_guide_channels(guide: np.ndarray, channels: int | None) -> np.ndarray:
    """Bring an (H, W, C) float guide to ``channels`` channels.

    ``None`` keeps it as it is; RGB -> 1 uses BT.601 luma; 1 -> 3 repeats the
    channel; RGBA -> 3 drops alpha. Other changes are refused.
    """
    have = guide.shape[2]
    if channels is None or channels == have:
        return guide
    if channels == 1 and have in (3, 4):
        return (guide[..., :3] @ _LUMA)[..., None].astype(np.float32)
    if channels == 3 and have == 1:
        return np.repeat(guide, 3, axis=2)
    if channels == 3 and have == 4:
        return np.ascontiguousarray(guide[..., :3])
    raise InputValueError(
        f"guide_channels: cannot turn a {have}-channel guide into {channels} channels; "
        "use guide_channels=None to keep the guide as it is"
    )
