"""``node-dada predict --guide RGB --source DEPTH --scale S``: upsample a user's own pair.

Reads the guide and the low-resolution depth in any supported format (PNG 8/16-bit,
PFM, NPY, TIFF, ...), writes the upsampled depth in the source's format (same
suffix; integer PNG/TIFF keep their bit depth, rounded) and a colourised preview
PNG. With no ``--checkpoint`` it runs learning-free DADA.

``--guide`` and ``--source`` may also name folders or quoted glob patterns
(``--guide 'rgb/*.png'``): the pairs are matched by file stem, or in sorted order
(:func:`match_pairs`), every output is checked before the first frame, one process
loads the model once for all of them, and a frame that fails stops the run with the
frames before it kept.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from node_dada.data.folder import DepthEncoding, decode_depth
from node_dada.data.io import IMAGE_SUFFIXES, guide_to_float, read_image, write_pfm
from node_dada.errors import DataError, InputValueError, NodeDadaError

__all__ = ["check_output", "default_output", "main", "match_pairs", "predict_pair",
           "write_depth"]


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
    depth_unit_mm: float = 1.0,
    depth_encoding: DepthEncoding = "linear",
    swap_bytes: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(guide float HWC, source, upsampled depth)`` for a pair of files
    (``source_noise``, ``max_fill``: as in ``node_dada.upsample``, in the file's units
    and in source pixels).

    ``depth_unit_mm``, ``depth_encoding``, ``swap_bytes``: how the file stores depth
    (as :func:`node_dada.data.folder.decode_depth`: TUM's 1/5000 m is
    ``depth_unit_mm=0.2``, SUN RGB-D's rotated bits ``"sun_rgbd"``, NYU's raw Kinect
    values ``"kinect_raw"``, a byte-swapped PGM ``swap_bytes``). With any of them the
    source is decoded to millimetres first, and the returned source and depth (and
    ``source_noise``) are in millimetres; the source keeps the file's dtype where it
    is 16-bit (holes as ``invalid_value``)."""
    import node_dada

    guide = guide_to_float(read_image(guide_path, what="guide"))
    raw = read_image(source_path, what="source depth")
    if raw.ndim != 2:
        raise InputValueError(
            f"source depth: expected a single-channel depth map, got shape {raw.shape} "
            f"from {source_path}"
        )
    if depth_unit_mm != 1.0 or depth_encoding != "linear" or swap_bytes:
        raw, source = _decoded(raw, source_path, depth_unit_mm=depth_unit_mm,
                               depth_encoding=depth_encoding, swap_bytes=swap_bytes,
                               invalid_value=invalid_value)
    else:
        source = raw.astype(np.float64)
        source[source == invalid_value] = np.nan
    depth = node_dada.upsample(guide, source, scale=scale, checkpoint=checkpoint,
                               depth_scale=depth_scale, solver=solver,
                               source_noise=source_noise, max_fill=max_fill)
    return guide, raw, depth


def _decoded(raw: np.ndarray, path: str | Path, *, invalid_value: float,
             **encoding: object) -> tuple[np.ndarray, np.ndarray]:
    """(the source in millimetres with the file's dtype where it is 16-bit, the same as
    float64 with NaN holes)."""
    if raw.dtype != np.uint16 and raw.dtype.kind != "f":
        raise InputValueError(
            f"source depth: --depth-unit-mm, --depth-encoding and --swap-bytes read 16-bit "
            f"or float depth files, got {raw.dtype} from {path}; leave them out for this file")
    millimetres = decode_depth(raw, invalid_value=invalid_value, **encoding).astype(np.float64)
    if raw.dtype == np.uint16:
        largest = np.nanmax(millimetres) if np.isfinite(millimetres).any() else 0.0
        if largest > np.iinfo(np.uint16).max:
            raise InputValueError(
                f"source depth: decoded depth reaches {largest:.0f} mm, beyond a 16-bit "
                f"file's 65535; write the output as .pfm or .npy (--out)")
        kept = np.where(np.isfinite(millimetres), np.rint(millimetres), invalid_value)
        return kept.astype(np.uint16), millimetres
    return millimetres.astype(raw.dtype), millimetres


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


#: Characters that make ``--guide``/``--source`` a glob pattern rather than a file name.
_GLOB_CHARACTERS = frozenset("*?[")


def _names_many(path: Path) -> bool:
    """Whether ``path`` is a folder or a glob pattern (an existing file is never one)."""
    if path.is_dir():
        return True
    return not path.exists() and any(c in _GLOB_CHARACTERS for c in str(path))


def _list_images(path: Path, option: str) -> list[Path]:
    """The image files a folder holds, or a glob pattern matches (``**`` included),
    sorted by path; hidden files and other suffixes are left out."""
    if path.is_dir():
        found = [p for p in path.iterdir() if not p.name.startswith(".")]
        where = f"the folder {path}"
    elif _names_many(path):
        found = [Path(p) for p in glob.glob(str(path), recursive=True)]
        where = f"the pattern {str(path)!r}"
    else:
        return [path]
    images = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(
            f"{option}: {where} holds no image file (expected {', '.join(IMAGE_SUFFIXES)}); "
            "check the path, and quote a pattern so that the shell passes it unexpanded")
    return images


def _output_tag(scale: float | None) -> str:
    """The tag :func:`default_output` adds to an output's stem."""
    return "up" if scale is None else f"x{scale:g}"


def _drop_earlier_outputs(sources: list[Path], scale: float | None) -> list[Path]:
    """``sources`` without the files an earlier run wrote beside them (``<stem>_x8.png``,
    its ``_preview.png`` and ``_mask.png``): a second run on the same folder then sees
    the same sources as the first."""
    stems = {(p.parent, p.stem) for p in sources}
    tag = _output_tag(scale)
    endings = [f"_{tag}", f"_{tag}_preview", f"_{tag}_mask"]

    def earlier(path: Path) -> bool:
        for ending in endings:
            if path.stem.endswith(ending) and (
                    ending == endings[0] or path.suffix.lower() == ".png"):
                if (path.parent, path.stem[: -len(ending)]) in stems:
                    return True
        return False

    return [p for p in sources if not earlier(p)]


def _stems(paths: Sequence[Path]) -> dict[str, Path] | None:
    """Stem -> path, or ``None`` when two paths share a stem."""
    table = {p.stem: p for p in paths}
    return table if len(table) == len(paths) else None


def match_pairs(guides: Sequence[Path], sources: Sequence[Path], *,
                match: str | None = None) -> list[tuple[Path, Path]]:
    """Pair guide files with source files.

    Args:
        guides, sources: the files of each side, sorted by path.
        match: ``"stem"``: a guide pairs with the source of the same file stem
            (``rgb/0042.png`` with ``depth/0042.png``); ``"order"``: the n-th guide with
            the n-th source, which needs equal counts. ``None`` (default): ``"stem"``
            when the two sides hold the same set of distinct stems, else ``"order"``.

    Returns:
        ``(guide, source)`` pairs, in the order of ``sources``.

    Raises:
        InputValueError: naming the first file left without a partner.

    Example:
        >>> match_pairs([Path("rgb/a.png"), Path("rgb/b.png")],
        ...             [Path("d/b.png"), Path("d/a.png")], match="stem")[0]
        (PosixPath('rgb/b.png'), PosixPath('d/b.png'))
    """
    if match not in (None, "stem", "order"):
        raise InputValueError(f"match: expected 'stem', 'order' or None, got {match!r}")
    by_guide, by_source = _stems(guides), _stems(sources)
    if match is None:
        same = (by_guide is not None and by_source is not None
                and by_guide.keys() == by_source.keys())
        match = "stem" if same else "order"
    if match == "stem":
        for side, paths, table in (("guide", guides, by_guide),
                                   ("source", sources, by_source)):
            if table is None:
                seen: dict[str, Path] = {}
                for path in paths:
                    if path.stem in seen:
                        raise InputValueError(
                            f"--match stem: the {side}s {seen[path.stem]} and {path} share "
                            f"the stem {path.stem!r}; narrow the pattern, rename one, or "
                            "pair in sorted order with --match order")
                    seen[path.stem] = path
        assert by_guide is not None and by_source is not None
        lonely = [f"no source for the guide {p}" for p in guides if p.stem not in by_source][:1]
        lonely += [f"no guide for the source {p}" for p in sources if p.stem not in by_guide][:1]
        if lonely:
            raise InputValueError(
                f"--match stem: {' and '.join(lonely)} (expected the same file stems on "
                "both sides); add or remove files, or pair in sorted order with "
                "--match order")
        return [(by_guide[p.stem], p) for p in sources]
    if len(guides) != len(sources):
        shared = ({p.stem for p in guides} & {p.stem for p in sources}
                  if by_guide is not None and by_source is not None else set())
        if shared:  # partly the same names: the files without a namesake are the odd ones
            lonely = [f"the guide {p}" for p in guides if p.stem not in shared][:1]
            lonely += [f"the source {p}" for p in sources if p.stem not in shared][:1]
        else:
            longer = ("guide", guides) if len(guides) > len(sources) else ("source", sources)
            lonely = [f"the {longer[0]} {longer[1][min(len(guides), len(sources))]}"]
        raise InputValueError(
            f"--guide lists {len(guides)} files and --source {len(sources)}, expected as "
            f"many on each side; no partner for {' and '.join(lonely)}; add or remove "
            "files, or narrow the patterns")
    return list(zip(guides, sources, strict=True))


def _write_result(out: Path, source: np.ndarray, depth: np.ndarray, *,
                  invalid_value: float, max_fill: float | None) -> np.ndarray:
    """Write the depth and, with ``max_fill``, its ``_mask.png``; return the depth as
    written (no-data as ``invalid_value`` in integer files)."""
    valid = np.isfinite(depth)
    if max_fill is not None and np.issubdtype(source.dtype, np.integer):
        depth = np.where(valid, depth, invalid_value)
    write_depth(out, depth, source)
    if max_fill is not None:
        mask_path = out.with_name(out.stem + "_mask.png")
        if not cv2.imwrite(str(mask_path), (valid * 255).astype(np.uint8)):
            raise DataError(f"output: OpenCV could not write {mask_path}")
    return depth


def _preview_path(out: Path) -> Path:
    return out.with_name(out.stem + "_preview.png")


def _far_note(frames: str) -> str:
    return (f"note: {frames} lies more than {FAR_FROM_DATA} source pixels from a measurement "
            "and was filled in; --max-fill D leaves such regions empty\n")


def _plan_outputs(pairs: list[tuple[Path, Path]], args: argparse.Namespace) -> list[Path]:
    """Every pair's output path, refused up front: ``--out`` that is not a folder, two
    pairs writing one file, an output replacing an input or (without ``--overwrite``)
    an existing file. Each source is read here for its dtype (which picks the output's
    suffix), so an unreadable source is refused before the first frame too."""
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputValueError(
            f"--out: several pairs need a folder, got the file {args.out}; give a folder "
            "(created if needed)")
    if args.out is not None and not args.out.exists() and args.out.suffix.lower() in (
            _DEPTH_SUFFIXES):
        raise InputValueError(
            f"--out: several pairs need a folder, got {args.out}, a file name; give a "
            "folder (created if needed)")
    outs: list[Path] = []
    writers: dict[Path, Path] = {}
    inputs = {p.resolve() for pair in pairs for p in pair}
    for _, source in pairs:
        named = default_output(source, args.scale, read_image(source, what="source depth").dtype)
        out = named if args.out is None else args.out / named.name
        for path in _companions(out, args):
            key = path.resolve()
            if key in writers:
                raise InputValueError(
                    f"output: the sources {writers[key]} and {source} would both write "
                    f"{path}; leave out --out to write beside each source, or rename one")
            if key in inputs:
                raise InputValueError(
                    f"output: {path} would replace an input file; choose another --out "
                    "folder")
            writers[key] = source
        outs.append(out)
    if not args.overwrite:
        existing = [p for out in outs for p in _companions(out, args) if p.exists()]
        if existing:
            raise InputValueError(
                f"output: {existing[0]} exists already ({len(existing)} of the output files "
                "do); pass --overwrite to replace them, or choose another --out folder")
    return outs


def _companions(out: Path, args: argparse.Namespace) -> list[Path]:
    """The files a frame writes: its depth, ``_mask.png`` and ``_preview.png`` as asked."""
    paths = [out]
    if args.max_fill is not None:
        paths.append(out.with_name(out.stem + "_mask.png"))
    if args.previews:
        paths.append(_preview_path(out))
    return paths


def _upsample_many(args: argparse.Namespace) -> int:
    """Upsample every pair of ``--guide`` and ``--source`` (folders or patterns)."""
    from tqdm import tqdm

    guides = _list_images(args.guide, "--guide")
    sources = _list_images(args.source, "--source")
    if _names_many(args.source):
        sources = _drop_earlier_outputs(sources, args.scale)
    pairs = match_pairs(guides, sources, match=args.match)
    outs = _plan_outputs(pairs, args)
    if args.checkpoint is not None:
        from node_dada.models.inference import cached_model

        cached_model(args.checkpoint)  # fail before any frame; every frame reuses this load
    folders = {out.parent for out in outs}
    where = f"to {folders.pop()}" if len(folders) == 1 else "beside their sources"
    written = far = 0
    progress = not args.no_progress and sys.stderr.isatty()
    with tqdm(total=len(pairs), desc="upsample", unit="pair", file=sys.stderr,
              disable=not progress) as bar:
        for index, ((guide_path, source_path), out) in enumerate(
                zip(pairs, outs, strict=True), 1):
            try:
                guide, source, depth = predict_pair(
                    guide_path, source_path, scale=args.scale, checkpoint=args.checkpoint,
                    depth_scale=args.depth_scale, solver=args.solver,
                    invalid_value=args.invalid_value, source_noise=args.source_noise,
                    max_fill=args.max_fill, **_encoding(args))
                out.parent.mkdir(parents=True, exist_ok=True)
                depth = _write_result(out, source, depth, invalid_value=args.invalid_value,
                                      max_fill=args.max_fill)
                if args.previews:
                    write_preview(_preview_path(out), guide, source, depth)
            except NodeDadaError as error:
                message = " ".join(str(error).split())
                kept = ("nothing was written" if not written else
                        f"the {written} depth map{'s' if written > 1 else ''} written "
                        f"before it ({where}) {'are' if written > 1 else 'is'} kept")
                raise type(error)(
                    f"frame {index} of {len(pairs)} (guide {guide_path}, source "
                    f"{source_path}): {message}; stopped there, {kept}; fix or remove "
                    "that pair, then run the rest") from None
            written += 1
            if args.max_fill is None and far_from_data(source, args.invalid_value) >= 0.01:
                far += 1
            bar.update()
    if far:
        sys.stdout.write(_far_note(f"in {far} of {written} frames, 1% or more of the output"))
    sys.stdout.write(f"wrote {written} depth maps {where}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``node-dada upsample`` (and ``node-dada predict --guide ...``)."""
    from node_dada.commands.args import OneLineParser
    from node_dada.models.registry import NAMED_CHECKPOINTS

    parser = OneLineParser(
        prog="node-dada predict",
        description=(
            "Upsample your own low-resolution depth with a high-resolution guide. Reads "
            "PNG (8/16-bit), TIFF, PGM, PFM and NPY; writes the depth in the source's "
            "format and units (integer files rounded) plus a preview PNG. Depth in any "
            "unit works learning-free; the shipped models expect millimetres "
            "(--depth-scale 1.1227 for metres). Guides are RGB (any channel count "
            "learning-free; RGBA drops alpha, grayscale is repeated for a model)."),
        epilog="folders or patterns: node-dada upsample --guide 'rgb/*.png' --source depth "
               "--scale 8 --out upsampled (one model load, every output checked first)")
    parser.add_argument(
        "--guide", required=True, type=Path, metavar="PATH",
        help="high-resolution guide image, or a folder or quoted glob pattern "
             "('rgb/*.png') of them")
    parser.add_argument(
        "--source", required=True, type=Path, metavar="PATH",
        help="low-resolution depth, or a folder or quoted glob pattern of them (files "
             "named like this command's outputs, <stem>_x<scale>..., are skipped)")
    parser.add_argument(
        "--scale", type=_scale_arg, default=None, metavar="S|auto",
        help="guide size / source size: an integer, a fraction such as 8/3 or 2.667 "
             "(solved on the nearest integer grid, consistency on the real footprints), "
             "or auto (default: read from the two images)")
    parser.add_argument(
        "--out", type=Path, metavar="PATH",
        help="output file (default: <source>_x<scale>.<suffix>); with folders or patterns "
             "a folder, created if needed, that receives <source stem>_x<scale>.<suffix> "
             "per pair (default: beside each source)")
    parser.add_argument(
        "--match", choices=("stem", "order"), default=None,
        help="how folders or patterns pair up: stem, a guide with the source of the same "
             "file stem (the default when both sides hold the same stems), or order, the "
             "n-th guide with the n-th source sorted by name (the default otherwise; "
             "needs as many files on each side)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="with folders or patterns, replace existing outputs (without it, any existing "
             "output stops the run before the first frame); a single pair is always "
             "overwritten")
    parser.add_argument(
        "--previews", action="store_true",
        help="with folders or patterns, also write <out>_preview.png per pair (a single "
             "pair always gets its preview)")
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar over the pairs (it shows on a terminal's stderr only)")
    parser.add_argument(
        "--checkpoint",
        help="a trained model: a shipped name (" + ", ".join(sorted(
            NAMED_CHECKPOINTS, key=lambda n: (len(n), n))) + ") or a checkpoint "
             "path; default: learning-free DADA")
    parser.add_argument("--depth-scale", type=float,
                        help="divisor of the depth channel: learning-free, leave it out (half "
                             "the source's median, any unit works); with a shipped model, "
                             "the default is for millimetres, pass 1.1227 for metres")
    parser.add_argument(
        "--solver", default="fast", choices=("fast", "exact", "ode", "discrete"),
        help="fast (default): RKC integration of the ODE, within ~2e-4 of the reference; "
             "exact: the reference (learning-free: the discrete iteration; a checkpoint: "
             "its training solver, 5-10x slower); ode/discrete: learning-free only")
    parser.add_argument("--invalid-value", type=float, default=0.0, help="value marking holes")
    parser.add_argument(
        "--depth-unit-mm", type=float, default=1.0, metavar="MM",
        help="millimetres per stored unit (1000 for metres, 0.2 for TUM's 1/5000 m); the "
             "output is then in millimetres (default 1: the file's own unit is kept)")
    parser.add_argument(
        "--depth-encoding", choices=("linear", "kinect_raw", "sun_rgbd"), default="linear",
        help="kinect_raw: NYU's raw Kinect values; sun_rgbd: SUN RGB-D's PNGs (bits rotated "
             "by 3); the output is then in millimetres (default linear)")
    parser.add_argument(
        "--swap-bytes", action="store_true",
        help="16-bit depth stored in the other byte order (e.g. NYU's raw .pgm)")
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
    return parser


def _encoding(args: argparse.Namespace) -> dict[str, object]:
    return {"depth_unit_mm": args.depth_unit_mm, "depth_encoding": args.depth_encoding,
            "swap_bytes": args.swap_bytes}


def main(argv: list[str] | None = None) -> int:
    """Upsample one pair, or every pair of two folders or patterns; a bad argument ends
    with one line on stderr and exit code 2."""
    from node_dada.commands.args import UsageError, report_error

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return report_error("node-dada", error)
    if _names_many(args.guide) or _names_many(args.source):
        return _upsample_many(args)
    # every output problem is refused before the work (minutes on a large image)
    like = read_image(args.source, what="source depth").dtype
    out = args.out or default_output(args.source, args.scale, like)
    check_output(out, like)
    guide, source, depth = predict_pair(
        args.guide, args.source, scale=args.scale, checkpoint=args.checkpoint,
        depth_scale=args.depth_scale, solver=args.solver, invalid_value=args.invalid_value,
        source_noise=args.source_noise, max_fill=args.max_fill, **_encoding(args))
    depth = _write_result(out, source, depth, invalid_value=args.invalid_value,
                          max_fill=args.max_fill)
    if args.max_fill is None:
        far = far_from_data(source, args.invalid_value)
        if far >= 0.01:
            sys.stdout.write(_far_note(f"{far:.1%} of the output"))
    preview = _preview_path(out)
    write_preview(preview, guide, source, depth)
    sys.stdout.write(f"wrote {out} and {preview}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
