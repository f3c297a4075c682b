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

The command line (its options and ``main``) is :mod:`node_dada.commands.upsample`.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from node_dada.data.folder import DepthEncoding, decode_depth
from node_dada.data.io import IMAGE_SUFFIXES, guide_to_float, read_image, write_pfm
from node_dada.errors import DataError, InputValueError

__all__ = ["check_output", "default_output", "match_pairs", "predict_pair", "write_depth"]


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


DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".pfm", ".npy")


def check_output(path: Path, like: np.dtype) -> None:
    """Refuse an output that :func:`write_depth` could not write, before any work."""
    suffix = path.suffix.lower()
    if suffix not in DEPTH_SUFFIXES:
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
    if suffix not in DEPTH_SUFFIXES or (suffix in (".png", ".pgm")
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


#: Characters that make ``--guide``/``--source`` a glob pattern rather than a file name.
_GLOB_CHARACTERS = frozenset("*?[")


def names_many(path: Path) -> bool:
    """Whether ``path`` is a folder or a glob pattern (an existing file is never one)."""
    if path.is_dir():
        return True
    return not path.exists() and any(c in _GLOB_CHARACTERS for c in str(path))


def list_images(path: Path, option: str) -> list[Path]:
    """The image files a folder holds, or a glob pattern matches (``**`` included),
    sorted by path; hidden files and other suffixes are left out."""
    if path.is_dir():
        found = [p for p in path.iterdir() if not p.name.startswith(".")]
        where = f"the folder {path}"
    elif names_many(path):
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


def drop_earlier_outputs(sources: list[Path], scale: float | None) -> list[Path]:
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


def write_result(out: Path, source: np.ndarray, depth: np.ndarray, *,
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


def preview_path(out: Path) -> Path:
    return out.with_name(out.stem + "_preview.png")


def far_note(frames: str) -> str:
    return (f"note: {frames} lies more than {FAR_FROM_DATA} source pixels from a measurement "
            "and was filled in; --max-fill D leaves such regions empty\n")


if __name__ == "__main__":
    from node_dada.commands.upsample import main

    raise SystemExit(main())
