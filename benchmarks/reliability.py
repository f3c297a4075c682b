"""Write ``results/reliability.md`` from a run of the reliability tests.

    .venv/bin/python benchmarks/reliability.py                  # the make-test budget
    .venv/bin/python benchmarks/reliability.py --slow --fuzz-seconds 120

Runs ``pytest tests/test_reliability_*.py`` (``-m "not slow"``, or everything with
``--slow``) with a JUnit XML report, reads the outcome each test recorded
(``record_property``: how each bad case ended, fuzz counts, kill/resume trials),
optionally runs ``benchmarks/fuzz_readers.py`` for a time budget, and writes the
tables. Exit code: pytest's (or 1 if the fuzzing found a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_reliability_*.py"))


def run_tests(slow: bool) -> tuple[int, list[dict], float]:
    """Run the reliability tests; return pytest's exit code and one record per test."""
    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={xml}", "-o", "junit_family=xunit1", *TESTS]
        if not slow:
            command[4:4] = ["-m", "not slow"]
        done = subprocess.run(command, cwd=ROOT, check=False)
        tree = ET.parse(xml)
    records = []
    suite = tree.getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    for case in suite.iter("testcase"):
        status = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                status = tag
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        records.append({"file": case.get("file") or case.get("classname"),
                        "name": case.get("name"), "time": float(case.get("time", 0)),
                        "status": status, **properties})
    return done.returncode, records, float(suite.get("time", 0))


def run_fuzz(seconds: float) -> tuple[int, dict]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "fuzz.json"
        done = subprocess.run([sys.executable, "benchmarks/fuzz_readers.py", "--seconds",
                               str(seconds), "--out", str(out)], cwd=ROOT, check=False)
        record = json.loads(out.read_text())
        record["command"] = f"python benchmarks/fuzz_readers.py --seconds {seconds:g}"
        return done.returncode, record


_TMP = re.compile(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+")


def _cell(text: str) -> str:
    """A table cell: pytest's temporary folders shortened to ``<tmp>``."""
    return _TMP.sub("<tmp>", text).replace("|", "\\|").replace("\n", " ")


def _ended(outcome: str) -> str:
    if outcome.startswith("exit 2"):
        return "exit 2, one line"
    if outcome.startswith("warning"):
        return "documented warning"
    if outcome.startswith("handled"):
        return "handled as documented"
    return outcome.split(":", 1)[0]


def write_report(path: Path, *, command: str, code: int, records: list[dict], seconds: float,
                 fuzz: dict | None, slow: bool) -> None:
    bad = [r for r in records if r.get("outcome")]
    scope = "all of them" if slow else 'the `make test` budget, `-m "not slow"`'
    lines = [
        "# Reliability: bad input, corrupt files, interrupted runs, untrusted checkpoints",
        "",
        f"Produced by `{command}`: it runs `tests/test_reliability_*.py` "
        f"({scope}) and "
        "collects what each test recorded. The same tests run in `make test`; the "
        "three-kill trial runs in `make test-slow`.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, CPU only. Tests: "
        f"{sum(r['status'] == 'passed' for r in records)} passed, "
        f"{sum(r['status'] in ('failure', 'error') for r in records)} failed, "
        f"{sum(r['status'] == 'skipped' for r in records)} skipped in {seconds:.0f} s "
        f"(pytest exit code {code}).",
        "",
        "## Bad input",
        "",
    ]
    entries = Counter(r.get("entry", "?") for r in bad)
    endings = Counter(_ended(r["outcome"]) for r in bad)
    lines += [
        f"{len(bad)} named bad cases tried ("
        + ", ".join(f"{n} {e}" for e, n in sorted(entries.items())) + "); they ended as: "
        + ", ".join(f"{n} {e}" for e, n in endings.most_common()) + ". "
        f"{sum(r['status'] == 'passed' for r in bad)} of {len(bad)} ended as the test "
        "requires: a `NodeDadaError` subclass with a message naming the argument or file, "
        "what was expected and what to do (library, loaders), exit code 2 with one "
        "`node-dada: error: ...` line and no traceback (command line), or a documented "
        "warning. (For errors found after the configuration is parsed, Lightning's own "
        "info lines, such as 'Seed set to 0', come before that line; none of them is an "
        "error.)",
        "",
        "| entry point | case | ended as |",
        "|---|---|---|",
    ]
    for record in bad:
        case = record["name"].split("[", 1)[-1].rstrip("]").split(": ", 1)[-1]
        mark = "" if record["status"] == "passed" else f" **({record['status'].upper()})**"
        lines.append(f"| {record['entry']} | {_cell(case)} | {_cell(record['outcome'])}{mark} |")
    fuzz_rows = [json.loads(r["fuzz"]) for r in records if r.get("fuzz")]
    total = sum(sum(v for k, v in row.items() if k != "format") for row in fuzz_rows)
    lines += [
        "",
        "## Fuzzing the file readers",
        "",
        "Harness: `benchmarks/fuzz_readers.py` (hypothesis). Each input is a real file "
        "(Motorcycle crop) with 1-4 mutations, a header written with random fields (PFM "
        "size/scale tokens, NPY shape/dtype, PNG IHDR size with a valid CRC), or random "
        "bytes; it must read as an image within the size limit or be refused with a "
        "`NodeDadaError`. Holes it found and that are fixed: NPY headers whose "
        "tokenizing fails (`tokenize.TokenError` from numpy), corrupt HDF5 metadata "
        "(`RuntimeError`/`KeyError` from h5py).",
        "",
        f"In the test suite (fixed seed, 100 examples per format): {total} cases, "
        f"{sum(r['status'] == 'passed' for r in records if r.get('fuzz'))} of "
        f"{len(fuzz_rows)} formats clean.",
        "",
        "| format | read | refused |",
        "|---|---|---|",
    ]
    for row in fuzz_rows:
        lines.append(f"| {row['format']} | {row.get('read', 0)} | {row.get('refused', 0)} |")
    if fuzz is not None:
        lines += [
            "",
            f"Larger budget, `{fuzz['command']}`: {fuzz['total']} cases in "
            f"{fuzz['seconds']} s, {len(fuzz['failures'])} failures.",
            "",
            "| format | read | refused | failed |",
            "|---|---|---|---|",
        ]
        for fmt, counts in fuzz["per_format"].items():
            lines.append(f"| {fmt} | {counts.get('read', 0)} | {counts.get('refused', 0)} | "
                         f"{counts.get('FAILED', 0)} |")
        for failure in fuzz["failures"][:10]:
            lines.append(f"- {failure['format']}: {_cell(failure['error'])}")
    lines += ["", "## Interrupted training", ""]
    for record in records:
        if not record.get("kill_resume"):
            continue
        trial = json.loads(record["kill_resume"])
        status = "identical" if record["status"] == "passed" else record["status"].upper()
        lines += [
            f"`{record['name']}` ({record['time']:.0f} s): a real `python -m node_dada.cli "
            f"fit` (light extractor, x8, 48 px crops of real Motorcycle pairs, random flips, "
            f"rotations and lead-ins, {trial['steps']} steps, checkpoint at every epoch end) "
            f"SIGKILLed {len(trial['kills'])} time(s) at random points (delays from a seeded "
            "generator), resumed with `--ckpt_path last` each time, against the same command "
            f"run uninterrupted. Outcome: **{status}** parameters and Adam state (tolerance "
            f"0, bit for bit); test MAE {trial['test_mae_cm_resumed']:.6f} cm resumed vs "
            f"{trial['test_mae_cm_reference']:.6f} cm uninterrupted.",
            "",
            "A kill between an epoch's checkpoint and `last.ckpt` leaves `last.ckpt` one "
            "epoch behind (or absent); `--ckpt_path last` then takes the newest checkpoint "
            "of `--checkpoint.dirpath`.",
            "",
            "| kill | resumed from step | killed after (s) | checkpoints on disk (steps) |",
            "|---|---|---|---|",
        ]
        for number, kill in enumerate(trial["kills"], 1):
            lines.append(f"| {number} | {kill['resumed_from_step']} | "
                         f"{kill['killed_after_s']} | {kill['checkpoint_steps_on_disk']} |")
        lines.append("")
    for record in records:
        if record.get("atomic_kills"):
            atomic = json.loads(record["atomic_kills"])
            lines += [
                f"Atomic writes: a process rewriting a 5 MB checkpoint in a loop was "
                f"SIGKILLed {atomic['kills']} times; every time the file loaded "
                f"(`weights_only=True`) and was whole (writes seen: {atomic['writes_seen']}). "
                "An interrupted write (simulated inside `torch.save`) keeps the previous "
                "checkpoint. Checkpoints go to a temporary file in the same folder, are "
                "`fsync`-ed and moved with `os.replace` "
                "(`node_dada/models/checkpointing.py`).",
                "",
            ]
        if record.get("determinism"):
            det = json.loads(record["determinism"])
            maes = ", ".join(f"{m:.6f}" for m in det["test_mae_cm"])
            lines += [f"Determinism: {det['runs']} runs with the same seed and config "
                      f"({det['steps']} steps, CPU): test MAE {maes} cm, identical "
                      "parameters and optimizer state.", ""]
    faults = [r for r in records if "nonfinite" in r["file"] or "nonfinite" in r["name"]]
    lines += [
        "## Numerical faults and untrusted checkpoints",
        "",
        "Injected into a real in-process `fit` (`tests/test_reliability_nonfinite.py`):",
        "",
        "| test | outcome |",
        "|---|---|",
    ]
    for record in faults:
        lines.append(f"| {record['name']} | {record['status']} |")
    lines += [
        "",
        "A non-finite loss skips the step (no backward, no update), a non-finite gradient "
        "drops all gradients (no update); each is logged with the step, solver, method, "
        "gradient mode and lead-in time; `--model.max_nonfinite_steps N` bounds the skips "
        "(default 0), beyond it the run stops with one line and exit 2, the last good "
        "checkpoint kept. An adaptive solver over `max_nfe` stops the run with one line "
        "naming the budget, the time reached and the training step.",
        "",
        "Checkpoints whose unpickling would run code are refused (weights-only loading) by "
        "`node_dada.upsample`, `node-dada predict --checkpoint` and `node-dada fit "
        "--ckpt_path`; the marker file they would create never appears (cases above).",
        "",
        "## What these figures do not cover",
        "",
        "- Resuming is exact from the checkpoints at epoch ends (the default). A "
        "checkpoint in the middle of an epoch (`--checkpoint.every_n_train_steps` below "
        "the epoch length) restarts that epoch's DataLoader: Lightning's documented "
        "limitation, it warns. With `num_workers > 0` the persistent workers keep their "
        "own random state, so a resumed run draws other augmentations.",
        "- OpenCV's JPEG decoder writes libjpeg's 'Corrupt JPEG data' notes to stderr "
        "itself (C library); the reader still refuses or returns the image.",
        "- GPU runs, DDP resumes and out-of-memory on the accelerator are not exercised.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="include the slow tests")
    parser.add_argument("--fuzz-seconds", type=float, default=0.0,
                        help="also run benchmarks/fuzz_readers.py for this long")
    parser.add_argument("--out", type=Path, default=Path("results/reliability.md"))
    args = parser.parse_args(argv)
    command = "python benchmarks/reliability.py " + shlex.join(argv or sys.argv[1:])
    code, records, seconds = run_tests(args.slow)
    fuzz = None
    if args.fuzz_seconds > 0:
        fuzz_code, fuzz = run_fuzz(args.fuzz_seconds)
        code = code or fuzz_code
    write_report(ROOT / args.out if not args.out.is_absolute() else args.out,
                 command=command.strip(), code=code, records=records, seconds=seconds,
                 fuzz=fuzz, slow=args.slow)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
