"""``node-dada predict --guide RGB --source DEPTH --scale S``: upsample a user's own pair.

Reads the guide and the low-resolution depth in any supported format (PNG 8/16-bit,
PFM, NPY, TIFF, ...), writes the upsampled depth in the source's format (same
suffix; integer PNG/TIFF keep their bit depth, rounded) and a colourised preview
PNG. With no ``--checkpoint`` it runs learning-free DADA.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from node_dada.data.io import guide_to_float, read_image, write_pfm
from node_dada.errors import DataError, InputValueError

__all__ = ["check_output", "default_output", "main", "predict_pair", "write_depth"]


def predict_pair(
    guide_path: str | Path,
    source_path: str | Path,
    *,
    scale: float | None = None,
    checkpoint: str | None = None,
    depth_scale: float | None = None,
    solver: str = "fast",
    invalid_value: float = 0.0,
    source_noise: float | str | None = None,
    max_fill: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(guide float HWC, source, upsampled depth)`` for a pair of files
    (``source_noise``, ``max_fill``: as in ``node_dada.upsample``, in the file's units
    and in source pixels)."""
    import node_dada

    guide = guide_to_float(read_image(guide_path, what="guide"))
    raw = read_image(source_path, what="source depth")
    if raw.ndim != 2:
        raise InputValueError(
            f"source depth: expected a single-channel depth map, got shape {raw.shape} "
            f"from {source_path}"
        )
    source = raw.astype(np.float64)
    source[source == invalid_value] = np.nan
    depth = node_dada.upsample(guide, source, scale=scale, checkpoint=checkpoint,
                               depth_scale=depth_scale, solver=solver,
                               source_noise=source_noise, max_fill=max_fill)
    return guide, raw, depth


_DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".pfm", ".npy")


def check_output(path: Path, like: np.dtype) -> None:
    """Refuse an output that :func:`write_depth` could not write, before any work."""
    suffix = path.suffix.lower()
    if suffix not in _DEPTH_SUFFIXES:
        raise InputValueError(
            f"output: unsupported suffix {suffix!r} for {path}; use .png, .tif, .pfm or .npy")
    if suffix in (".png", ".pgm") and not np.issubdtype(like, np.integer):
        raise InputValueError(
            f"output: cannot store float depth as {suffix} ({path}); use .npy, .pfm or .tif")
    if not path.parent.is_dir():
        raise DataError(f"--out: the folder {path.parent} does not exist; create it first")


def default_output(source: Path, scale: float | None, like: np.dtype) -> Path:
    """``<source>_x<scale>`` (``_up`` when the scale is read from the shapes) beside the
    source, with its suffix where the depth can be stored that way; otherwise ``.png``
    for integer depth (e.g. a JPEG source) and ``.npy`` for float depth."""
    suffix = source.suffix.lower()
    if suffix not in _DEPTH_SUFFIXES or (suffix in (".png", ".pgm")
                                         and not np.issubdtype(like, np.integer)):
        suffix = ".png" if np.issubdtype(like, np.integer) else ".npy"
    else:
        suffix = source.suffix
    tag = "up" if scale is None else f"x{scale:g}"
    return source.with_name(f"{source.stem}_{tag}{suffix}")


def write_depth(path: Path, depth: np.ndarray, like: np.ndarray) -> None:
    """Write ``depth`` to ``path`` in the format its suffix names, with ``like``'s dtype."""
    check_output(path, like.dtype)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, depth.astype(like.dtype if like.dtype.kind == "f" else np.float32))
    elif suffix == ".pfm":
        write_pfm(path, depth.astype(np.float32))
    else:
        if np.issubdtype(like.dtype, np.integer):
            info = np.iinfo(like.dtype)
            out = np.clip(np.rint(np.nan_to_num(depth)), info.min, info.max).astype(like.dtype)
        else:
            out = depth.astype(np.float32)
        if not cv2.imwrite(str(path), out):
            raise DataError(f"output: OpenCV could not write {path}")


def write_preview(path: Path, guide: np.ndarray, source: np.ndarray, depth: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = depth[np.isfinite(depth)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    shown_guide = guide if guide.shape[2] == 3 else guide[..., 0]
    axes[0].imshow(shown_guide, cmap="gray")
    axes[0].set_title("guide")
    masked = np.ma.masked_where(~np.isfinite(source) | (source == 0), source.astype(np.float64))
    axes[1].imshow(masked, cmap="viridis_r", vmin=low, vmax=high, interpolation="nearest")
    axes[1].set_title(f"low-resolution depth {source.shape[1]}x{source.shape[0]}")
    image = axes[2].imshow(depth, cmap="viridis_r", vmin=low, vmax=high)
    axes[2].set_title(f"node_dada {depth.shape[1]}x{depth.shape[0]}")
    fig.colorbar(image, ax=axes, fraction=0.02)
    for axis in axes:
        axis.axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)


#: Distance (source pixels) beyond which `predict` reports the filled share of the output.
FAR_FROM_DATA = 2


def far_from_data(source: np.ndarray, invalid_value: float = 0.0) -> float:
    """Share of the source grid farther than ``FAR_FROM_DATA`` pixels from a valid
    measurement (the share of the output filled from afar)."""
    from scipy.ndimage import distance_transform_edt

    valid = np.isfinite(source) & (source != invalid_value)
    if not valid.any():
        return 1.0
    return float((distance_transform_edt(~valid) > FAR_FROM_DATA).mean())


def _distance_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a distance >= 0 in source pixels, "
                                         f"got {text!r}")
    return value


def _scale_arg(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        numerator, _, denominator = text.partition("/")
        value = float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a number >= 1, a fraction such as 8/3 or "
                                         f"'auto', got {text!r}")
    return int(value) if value.is_integer() else value


def _source_noise_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Upsample one pair; a bad argument ends with one line on stderr and exit code 2."""
    from node_dada.benchmark import OneLineParser, UsageError, report_error

    parser = OneLineParser(prog="node-dada predict", description=__doc__.splitlines()[0])
    parser.add_argument("--guide", required=True, type=Path, help="high-resolution guide image")
    parser.add_argument("--source", required=True, type=Path, help="low-resolution depth")
    parser.add_argument(
        "--scale", type=_scale_arg, default=None, metavar="S|auto",
        help="guide size / source size: an integer, a fraction such as 8/3 or 2.667 "
             "(solved on the nearest integer grid, consistency on the real footprints), "
             "or auto (default: read from the two images)")
    parser.add_argument("--out", type=Path,
                        help="output file (default: <source>_x<scale>.<suffix>)")
    parser.add_argument("--checkpoint", help="trained model (name or path); default learning-free")
    parser.add_argument("--depth-scale", type=float,
                        help="divisor of the depth unit (1122.7 for mm)")
    parser.add_argument(
        "--solver", default="fast", choices=("fast", "exact", "ode", "discrete"),
        help="fast (default): RKC integration of the ODE, within ~2e-4 of the reference; "
             "exact: the reference (learning-free: the discrete iteration; a checkpoint: "
             "its training solver, 5-10x slower); ode/discrete: learning-free only")
    parser.add_argument("--invalid-value", type=float, default=0.0, help="value marking holes")
    parser.add_argument(
        "--source-noise", type=_source_noise_arg, default=None, metavar="SIGMA|auto",
        help="noisy sensor depth: its noise standard deviation in the file's units, or "
             "'auto' to estimate it; the output then follows the source only as far as "
             "the noise allows (default: exact block-mean consistency)")
    parser.add_argument(
        "--max-fill", type=_distance_arg, default=None, metavar="D",
        help="leave no-data where the nearest measurement is more than D source pixels "
             "away (written as the invalid value, NaN in float files) and write "
             "<out>_mask.png (255 = depth) beside the depth (default: fill every hole)")
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return report_error("node-dada", error)
    # every output problem is refused before the work (minutes on a large image)
    like = read_image(args.source, what="source depth").dtype
    out = args.out or default_output(args.source, args.scale, like)
    check_output(out, like)
    guide, source, depth = predict_pair(
        args.guide, args.source, scale=args.scale, checkpoint=args.checkpoint,
        depth_scale=args.depth_scale, solver=args.solver, invalid_value=args.invalid_value,
        source_noise=args.source_noise, max_fill=args.max_fill)
    valid = np.isfinite(depth)
    if args.max_fill is not None and np.issubdtype(source.dtype, np.integer):
        depth = np.where(valid, depth, args.invalid_value)
    write_depth(out, depth, source)
    if args.max_fill is not None:
        mask_path = out.with_name(out.stem + "_mask.png")
        if not cv2.imwrite(str(mask_path), (valid * 255).astype(np.uint8)):
            raise DataError(f"output: OpenCV could not write {mask_path}")
    if args.max_fill is None:
        far = far_from_data(source, args.invalid_value)
        if far >= 0.01:
            sys.stdout.write(
                f"note: {far:.1%} of the output lies more than {FAR_FROM_DATA} source pixels "
                "from a measurement and was filled in; --max-fill D leaves such regions "
                "empty\n")
    preview = out.with_name(out.stem + "_preview.png")
    write_preview(preview, guide, source, depth)
    sys.stdout.write(f"wrote {out} and {preview}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
