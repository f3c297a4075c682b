"""Fuzzing the file readers at a small budget.

The harness is ``benchmarks/fuzz_readers.py`` (hypothesis: mutated real files,
headers with random fields, random bytes, for PNG 8/16-bit, JPEG, TIFF, BMP, PFM,
NPY and the NYUv2 HDF5 file); every input must read as a sane array or be refused
with a ``NodeDadaError``. Here: a fixed seed and 100 examples per format, failures
shrunk by hypothesis. The script runs the same harness for a time budget.
"""

from __future__ import annotations

import json

import pytest
from scripts import load_benchmark

fuzz_readers = load_benchmark("fuzz_readers")

EXAMPLES_PER_FORMAT = 100


@pytest.fixture(scope="module")
def originals() -> dict[str, bytes]:
    return fuzz_readers.seed_files()


@pytest.mark.parametrize("fmt", fuzz_readers.FORMATS)
def test_fuzzed_files_are_read_or_refused(fmt, originals, tmp_path, record_property):
    tally = fuzz_readers.Tally()
    fuzz_readers.fuzz_format(fmt, originals[fmt], tmp_path, tally,
                             examples=EXAMPLES_PER_FORMAT, round_seed=10, keep_going=False)
    outcomes = dict(tally.outcomes[fmt])
    assert "FAILED" not in outcomes
    assert sum(outcomes.values()) >= EXAMPLES_PER_FORMAT // 2
    record_property("fuzz", json.dumps({"format": fmt, **outcomes}))


def test_the_valid_seed_files_read(originals, tmp_path):
    for fmt, data in originals.items():
        assert fuzz_readers.check(data, fmt, tmp_path) == "read", fmt
