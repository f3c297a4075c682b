"""Fuzz the file readers: every byte string must either read as a sane
array or be refused with a ``NodeDadaError``; nothing else (no numpy/OpenCV/PIL
exception, no crash, no allocation a lying header asked for).

    .venv/bin/python benchmarks/fuzz_readers.py --seconds 120 --out results/fuzz_readers.json

Inputs, generated with hypothesis per format (PNG 8/16-bit, JPEG, TIFF, BMP, PFM,
NPY, and the NYUv2 HDF5 ``.mat``):

- a valid file of real pixels (a Motorcycle crop) with 1-4 mutations: byte flips
  (biased to the header), truncation, insertions, overwrites;
- headers written from scratch with random fields: PFM width/height/scale tokens,
  NPY ``shape``/``descr``, PNG ``IHDR`` width/height/bit depth with a valid CRC,
  each followed by a random amount of data;
- random bytes.

The test suite runs the same harness at a small fixed budget
(``tests/test_reliability_fuzz.py``); this script runs it for a time budget, with a
new hypothesis seed per round, and writes the counts. Exit code 1 if any input
ended otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from node_dada.data.io import MAX_IMAGE_PIXELS, read_image, write_pfm
from node_dada.data.nyuv2 import NYUv2Scenes
from node_dada.errors import NodeDadaError

#: Formats fuzzed, by suffix (the NYUv2 .mat goes through NYUv2Scenes).
FORMATS = (".png", ".png16", ".jpg", ".tif", ".bmp", ".pfm", ".npy", ".mat")


def _crop() -> tuple[np.ndarray, np.ndarray]:
    """Real pixels: a 24 x 32 Motorcycle crop (guide uint8 RGB, depth float32 mm)."""
    from node_dada.data.motorcycle import load_motorcycle

    guide, depth = load_motorcycle()
    return guide[200:224, 400:432].copy(), np.nan_to_num(depth[200:224, 400:432]).astype(np.float32)


def seed_files() -> dict[str, bytes]:
    """One valid file per format, as bytes."""
    guide, depth = _crop()
    files: dict[str, bytes] = {}
    for suffix, image in ((".png", guide), (".jpg", guide), (".bmp", guide),
                          (".png16", depth.round().astype(np.uint16)), (".tif", depth)):
        ok, encoded = cv2.imencode(".png" if suffix == ".png16" else suffix, image)
        assert ok, suffix
        files[suffix] = encoded.tobytes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.pfm"
        write_pfm(path, depth)
        files[".pfm"] = path.read_bytes()
        buffer = io.BytesIO()
        np.save(buffer, depth)
        files[".npy"] = buffer.getvalue()
        mat = Path(folder) / "seed.mat"
        with h5py.File(mat, "w") as handle:
            handle["images"] = np.ascontiguousarray(guide.transpose(2, 1, 0))[None]
            handle["depths"] = (depth.T / 1000.0)[None]
        files[".mat"] = mat.read_bytes()
    return files


# --- strategies ----------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        where = draw(st.one_of(st.integers(0, max(min(63, size - 1), 0)),
                               st.integers(0, max(size - 1, 0))))
        kind = draw(st.sampled_from(("flip", "truncate", "insert", "overwrite")))
        if kind == "flip" and size:
            data[where] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, size)):]
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[where:where + len(chunk)] = chunk
    return bytes(data)


_HUGE = st.sampled_from((0, 1, 2**31 - 1, 2**32 + 7, 10**12, 46341, 65536))
_DIMENSION = st.one_of(st.integers(-3, 40), _HUGE)


@st.composite
def pfm_header(draw: st.DrawFn) -> bytes:
    magic = draw(st.sampled_from((b"Pf", b"PF", b"pf", b"P6")))
    width = draw(st.one_of(_DIMENSION.map(lambda v: str(v).encode()), st.binary(max_size=6)))
    height = draw(st.one_of(_DIMENSION.map(lambda v: str(v).encode()), st.binary(max_size=6)))
    scale = draw(st.sampled_from((b"-1", b"1", b"0", b"nan", b"inf", b"-1.0e309", b"x")))
    sep = draw(st.sampled_from((b"\n", b" ", b"\r\n", b"\t")))
    body = draw(st.binary(max_size=4096))
    return magic + sep + width + b" " + height + sep + scale + sep + body


@st.composite
def npy_header(draw: st.DrawFn) -> bytes:
    shape = tuple(draw(st.lists(st.one_of(st.integers(0, 40), _HUGE), max_size=4)))
    descr = draw(st.sampled_from(("<f4", ">f8", "<u2", "|u1", "|b1", "<c16", "|O", "<U8",
                                  "|V3", "<M8[s]", "bogus")))
    order = draw(st.booleans())
    header = f"{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}"
    header = draw(st.one_of(st.just(header), st.text(max_size=60)))
    encoded = header.encode("latin1", errors="replace")
    padding = (64 - (10 + len(encoded) + 1) % 64) % 64
    full = encoded + b" " * padding + b"\n"
    version = draw(st.sampled_from((b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09")))
    length = struct.pack("<H" if version == b"\x01\x00" else "<I", len(full))
    return b"\x93NUMPY" + version + length + full + draw(st.binary(max_size=4096))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


@st.composite
def png_header(draw: st.DrawFn) -> bytes:
    """A PNG with a valid-CRC IHDR declaring random sizes, then random IDAT data."""
    width = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)))
    height = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)))
    depth = draw(st.sampled_from((1, 8, 16, 3)))
    colour = draw(st.sampled_from((0, 2, 6, 5)))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(draw(st.binary(max_size=2048)))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(
        b"IEND", b"")


def inputs(fmt: str, original: bytes) -> st.SearchStrategy[bytes]:
    """Everything fuzzed for one format."""
    options = [mutated(original), mutated(original), st.binary(max_size=2048)]
    if fmt == ".pfm":
        options.append(pfm_header())
    elif fmt == ".npy":
        options.append(npy_header())
    elif fmt in (".png", ".png16"):
        options.append(png_header())
    return st.one_of(options)


# --- the property ----------------------------------------------------------------------


def read_any(path: Path, fmt: str) -> np.ndarray:
    if fmt == ".mat":
        return NYUv2Scenes(path, split="all").load(0).guide
    return read_image(path, what="fuzzed file")


def check(data: bytes, fmt: str, folder: Path) -> str:
    """``"read"`` or ``"refused"``; anything else raises (a hole in the reader)."""
    path = folder / f"case{'.png' if fmt == '.png16' else fmt}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():  # trailing-bytes and similar notes are fine
            warnings.simplefilter("ignore")
            array = read_any(path, fmt)
    except NodeDadaError:
        return "refused"
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3):
        raise AssertionError(f"{fmt}: read something that is not an image: {type(array)}")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise AssertionError(f"{fmt}: read an image beyond the size limit: {array.shape}")
    return "read"


@dataclass
class Tally:
    """Cases tried per format and how they ended."""

    outcomes: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, fmt: str, outcome: str) -> None:
        self.outcomes.setdefault(fmt, Counter())[outcome] += 1

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())

    def as_dict(self) -> dict:
        return {"total": self.total,
                "per_format": {f: dict(c) for f, c in sorted(self.outcomes.items())},
                "failures": self.failures}


def fuzz_format(fmt: str, original: bytes, folder: Path, tally: Tally, *, examples: int,
                round_seed: int, keep_going: bool) -> None:
    """Run ``examples`` hypothesis examples of ``fmt``; record each outcome."""

    @seed(round_seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate,) if keep_going else (Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(data=inputs(fmt, original))
    def case(data: bytes) -> None:
        try:
            tally.add(fmt, check(data, fmt, folder))
        except Exception as error:
            tally.add(fmt, "FAILED")
            if not keep_going:
                raise
            if len(tally.failures) < 20:
                tally.failures.append({"format": fmt, "input_head": data[:64].hex(),
                                       "error": "".join(traceback.format_exception_only(error))
                                       .strip()})

    case()


def run(*, seconds: float | None, examples: int, formats: tuple[str, ...] = FORMATS,
        keep_going: bool = True, first_seed: int = 0,
        progress: Callable[[Tally], None] | None = None) -> Tally:
    """Fuzz every format in rounds of ``examples`` until ``seconds`` pass (one round
    per format when ``seconds`` is None)."""
    originals = seed_files()
    tally = Tally()
    start = time.monotonic()
    round_seed = first_seed
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        while True:
            for fmt in formats:
                fuzz_format(fmt, originals[fmt], folder, tally, examples=examples,
                            round_seed=round_seed, keep_going=keep_going)
            round_seed += 1
            if progress is not None:
                progress(tally)
            if seconds is None or time.monotonic() - start >= seconds:
                break
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget")
    parser.add_argument("--examples", type=int, default=100,
                        help="hypothesis examples per format and round")
    parser.add_argument("--out", type=Path, default=Path("results/fuzz_readers.json"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    tally = run(seconds=args.seconds, examples=args.examples,
                progress=lambda t: sys.stderr.write(f"\r{t.total} cases"))
    record = {"command": "python benchmarks/fuzz_readers.py " + " ".join(argv or sys.argv[1:]),
              "seconds": round(time.monotonic() - start, 1), **tally.as_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    sys.stdout.write(f"\n{tally.total} cases in {record['seconds']} s, "
                     f"{len(tally.failures)} failures; written to {args.out}\n")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
