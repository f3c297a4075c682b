"""``node-dada upsample`` (and ``node-dada predict --guide ...``): the options and the
command that upsample a user's own files, one pair or every pair of two folders or
patterns, with :mod:`node_dada.predict_files`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from node_dada.commands.args import OneLineParser, UsageError, report_error
from node_dada.data.io import read_image
from node_dada.errors import InputValueError, NodeDadaError
from node_dada.predict_files import (
    DEPTH_SUFFIXES,
    check_output,
    default_output,
    drop_earlier_outputs,
    far_from_data,
    far_note,
    list_images,
    match_pairs,
    names_many,
    predict_pair,
    preview_path,
    write_preview,
    write_result,
)

__all__ = ["build_parser", "main"]


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
            DEPTH_SUFFIXES):
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
        paths.append(preview_path(out))
    return paths


def _upsample_many(args: argparse.Namespace) -> int:
    """Upsample every pair of ``--guide`` and ``--source`` (folders or patterns)."""
    from tqdm import tqdm

    guides = list_images(args.guide, "--guide")
    sources = list_images(args.source, "--source")
    if names_many(args.source):
        sources = drop_earlier_outputs(sources, args.scale)
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
                depth = write_result(out, source, depth, invalid_value=args.invalid_value,
                                      max_fill=args.max_fill)
                if args.previews:
                    write_preview(preview_path(out), guide, source, depth)
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
        sys.stdout.write(far_note(f"in {far} of {written} frames, 1% or more of the output"))
    sys.stdout.write(f"wrote {written} depth maps {where}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``node-dada upsample`` (and ``node-dada predict --guide ...``)."""
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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return report_error("node-dada", error)
    if names_many(args.guide) or names_many(args.source):
        return _upsample_many(args)
    # every output problem is refused before the work (minutes on a large image)
    like = read_image(args.source, what="source depth").dtype
    out = args.out or default_output(args.source, args.scale, like)
    check_output(out, like)
    guide, source, depth = predict_pair(
        args.guide, args.source, scale=args.scale, checkpoint=args.checkpoint,
        depth_scale=args.depth_scale, solver=args.solver, invalid_value=args.invalid_value,
        source_noise=args.source_noise, max_fill=args.max_fill, **_encoding(args))
    depth = write_result(out, source, depth, invalid_value=args.invalid_value,
                          max_fill=args.max_fill)
    if args.max_fill is None:
        far = far_from_data(source, args.invalid_value)
        if far >= 0.01:
            sys.stdout.write(far_note(f"{far:.1%} of the output"))
    preview = preview_path(out)
    write_preview(preview, guide, source, depth)
    sys.stdout.write(f"wrote {out} and {preview}\n")
    return 0
