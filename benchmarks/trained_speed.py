"""Trained models on the fast path: ``upsample(..., checkpoint=NAME)`` with its default
solver ("fast": RKC on the learned coefficients) against ``solver="exact"`` (the
model's own training solver over its whole horizon), measured in one process.

    .venv/bin/python benchmarks/trained_speed.py --out results/speed/trained --threads 1

Three parts (``--parts``), each a table in ``<out>/README.md`` and a CSV; a run of
some parts keeps the others' committed tables (read back from their CSVs, with the
command that wrote them in ``<out>/provenance.json``):

- ``speed``: end-to-end ``node_dada.upsample`` calls on numpy input (guide to depth,
  model already loaded by a warm-up call), x8, for the given models and learning-free
  DADA: the whole quarter-size Motorcycle (496 x 736 after cropping to a multiple of
  8) and a 1104 x 1376 image (Motorcycle mirrored outwards with numpy ``symmetric``
  padding). Best of ``--repeats`` CPU times (``time.process_time``: this process only).
- ``accuracy``: every shipped model on the Middlebury test split (whole images at
  the model's scale, the benchmark's data pipeline): MAE (cm) with each solver, pooled
  over the split and per image, and the relative L2 distance between the two results.
- ``memory``: one x8 upsample of a large frame (Motorcycle mirrored to ``--large``)
  with a checkpoint, in a fresh process each, the peak resident memory of that process
  (``ru_maxrss``) after the call; the same frame learning-free for comparison.
"""

from __future__ import annotations

import argparse
import csv
import functools
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _report import load_average, rss_kib  # benchmarks/ is on sys.path when run as a script

import node_dada
from node_dada.data.motorcycle import load_motorcycle
from node_dada.diffusion import degrade

SCALE = 8
DEFAULT_MODELS = ("middlebury-x8-discrete", "middlebury-x8-ode")
MIDDLEBURY_ROOTS = ("../shared/data/middlebury0506/ThirdSize", "../shared/data/middlebury2014")
TARGET_RATIO, TARGET_REL_L2, TARGET_MAE = 5.0, 1e-3, 0.5  # x, relative L2, % of MAE


def mirrored(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Motorcycle's guide (uint8) and depth (mm, NaN invalid) cropped or mirrored
    outwards (numpy ``symmetric`` padding, split evenly between the sides) to ``shape``."""
    guide, depth = load_motorcycle()
    guide, depth = guide[:shape[0], :shape[1]], depth[:shape[0], :shape[1]]
    pad_h, pad_w = shape[0] - guide.shape[0], shape[1] - guide.shape[1]
    pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    return (np.pad(guide, (*pads, (0, 0)), mode="symmetric"),
            np.pad(depth, pads, mode="symmetric"))


def make_pair(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(guide uint8 (H, W, 3), source mm (H/8, W/8), NaN where no valid pixel)."""
    guide, depth = mirrored(shape)
    source, mask = degrade(torch.from_numpy(np.ascontiguousarray(depth))[None, None], SCALE)
    source = torch.where(mask, source, torch.full_like(source, np.nan))
    return np.ascontiguousarray(guide), source[0, 0].numpy()


def best_cpu(run, repeats: int) -> tuple[float, float, np.ndarray]:
    """Best CPU and wall time of ``repeats`` runs, and the last result."""
    cpu, wall, result = [], [], None
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        result = run()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall), result


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    valid = np.isfinite(a) & np.isfinite(b)
    return float(np.linalg.norm(a[valid] - b[valid]) / np.linalg.norm(b[valid]))


def shared_work(guide: np.ndarray, source: np.ndarray, name: str | None) -> None:
    """What both solvers do before the diffusion: the initial estimate (the reference's
    cubic interpolation) and the coefficients (the CNN, or the learning-free ones)."""
    from node_dada.diffusion import initial_estimate, learning_free_coefficients, normalize_guide
    from node_dada.models.inference import cached_model

    guide_n = normalize_guide(torch.from_numpy(guide.transpose(2, 0, 1).copy())[None] / 255)
    valid = torch.from_numpy(np.isfinite(source))[None, None]
    scaled = torch.from_numpy(np.nan_to_num(source))[None, None].float() / 1122.7
    with torch.no_grad():
        depth0 = initial_estimate(scaled, valid, SCALE)
        if name is None:
            learning_free_coefficients(guide_n, depth0)
        else:
            model = cached_model(name)
            model.coefficients(guide_n, depth0, tile=model.inference_tile)


def speed_rows(models: list[str], repeats: int) -> list[dict]:
    rows = []
    for case, shape in (("Motorcycle 496 x 736", (496, 736)),
                        ("1104 x 1376 (mirrored)", (1104, 1376))):
        guide, source = make_pair(shape)
        for name in [None, *models]:
            kwargs = {} if name is None else {"checkpoint": name}
            node_dada.upsample(guide[:64, :64], source[:8, :8], scale=SCALE, **kwargs)  # warm
            timed = {solver: best_cpu(functools.partial(
                node_dada.upsample, guide, source, scale=SCALE, solver=solver, **kwargs),
                repeats) for solver in ("exact", "fast")}
            shared = best_cpu(functools.partial(shared_work, guide, source, name), repeats)[0]
            rows.append({
                "case": case, "model": name or "learning-free",
                "exact_cpu_s": timed["exact"][0], "fast_cpu_s": timed["fast"][0],
                "exact_wall_s": timed["exact"][1], "fast_wall_s": timed["fast"][1],
                "ratio": timed["exact"][0] / timed["fast"][0],
                "shared_cpu_s": shared,
                "solve_ratio": (timed["exact"][0] - shared) / (timed["fast"][0] - shared),
                "rel_l2": rel_l2(timed["fast"][2], timed["exact"][2])})
            sys.stderr.write(f"{case} {name}: x{rows[-1]['ratio']:.2f}\n")
    return rows


def accuracy_rows(roots: list[Path]) -> tuple[list[dict], list[dict]]:
    from node_dada.benchmark import iter_crops, load_scenes
    from node_dada.models.inference import SHIPPED_MODELS

    scenes = load_scenes("middlebury", root=roots)
    pooled, per_image = [], []
    for name in SHIPPED_MODELS:
        match = re.search(r"-x(\d+)-", name)
        if match is None:
            continue
        scale = int(match.group(1))
        sums = {"exact": [0.0, 0], "fast": [0.0, 0]}
        worst_rel, worst_change = 0.0, 0.0
        for crop in iter_crops(scenes, scale=scale, crop_size=None):
            valid = torch.isfinite(crop.target)
            results, maes = {}, {}
            for solver in ("exact", "fast"):
                out = node_dada.upsample(crop.guide, crop.source, scale=scale,
                                         mask_lr=crop.mask_lr, checkpoint=name, solver=solver)
                error = (out - crop.target)[valid].abs().double()
                sums[solver][0] += float(error.sum()) / 10.0
                sums[solver][1] += int(error.numel())
                maes[solver] = float(error.mean()) / 10.0
                results[solver] = out
            rel = float((results["fast"] - results["exact"]).norm() / results["exact"].norm())
            change = 100.0 * (maes["fast"] / maes["exact"] - 1.0)
            worst_rel, worst_change = max(worst_rel, rel), max(worst_change, abs(change))
            per_image.append({"model": name, "image": crop.name, "mae_exact_cm": maes["exact"],
                              "mae_fast_cm": maes["fast"], "change_pct": change,
                              "rel_l2": rel})
            sys.stderr.write(f"{name} {crop.name}: {change:+.3f} %\n")
        exact = sums["exact"][0] / sums["exact"][1]
        fast = sums["fast"][0] / sums["fast"][1]
        pooled.append({"model": name, "scale": scale, "mae_exact_cm": exact,
                       "mae_fast_cm": fast, "change_pct": 100.0 * (fast / exact - 1.0),
                       "worst_image_change_pct": worst_change, "worst_rel_l2": worst_rel})
    return pooled, per_image


def memory_child(height: int, width: int, checkpoint: str | None) -> None:
    """Run in a fresh process: one upsample of the large frame, then print the peak RSS."""
    guide, source = make_pair((height, width))
    gc.collect()
    before_kib = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS
    start = time.perf_counter()
    out = node_dada.upsample(guide, source, scale=SCALE, checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_rss_mib": rss_kib("VmHWM") / 1024,
                      "rss_before_mib": before_kib / 1024,
                      "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 1024,
                      "seconds": seconds, "finite": bool(np.isfinite(out).all()),
                      "input_mib": (guide.nbytes + source.nbytes) / 2**20}))


def memory_rows(shape: tuple[int, int], models: list[str], threads: int | None) -> list[dict]:
    rows = []
    for name in [None, *models[:1]]:
        command = [sys.executable, __file__, "--memory-child", str(shape[0]), str(shape[1])]
        if name is not None:
            command += ["--checkpoint", name]
        if threads:
            command += ["--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"case": f"{shape[0]} x {shape[1]} (mirrored)",
                     "model": name or "learning-free", **result})
        sys.stderr.write(f"memory {name}: {result['peak_rss_mib']:.0f} MiB\n")
    return rows


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _cell(column: str, value) -> str:
    if column.endswith("_mib") and isinstance(value, float):
        return f"{value:.0f}"
    return _fmt(value, 4 if column.startswith("mae") else 3)


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _parse(text: str):
    """A CSV cell back to the value it was written from (int, float, bool or text)."""
    if text in ("True", "False"):
        return text == "True"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{key: _parse(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


PART_FILES = {"speed": ("speed",), "accuracy": ("accuracy", "accuracy_per_image"),
              "memory": ("memory",)}


def table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in columns) + " |" for row in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/speed/trained"))
    parser.add_argument("--parts", nargs="+", default=["speed", "accuracy", "memory"],
                        choices=("speed", "accuracy", "memory"))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--root", type=Path, nargs="+",
                        default=[Path(root) for root in MIDDLEBURY_ROOTS])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, nargs=2, default=[4000, 6000],
                        metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-child", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child, args.checkpoint)
        return 0
    command = "python benchmarks/trained_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    parts: dict[str, list[dict]] = {}
    if "speed" in args.parts:
        parts["speed"] = speed_rows(args.models, args.repeats)
    if "accuracy" in args.parts:
        parts["accuracy"], parts["accuracy_per_image"] = accuracy_rows(args.root)
    if "memory" in args.parts:
        parts["memory"] = memory_rows(tuple(args.large), args.models, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        write_csv(args.out / f"{name}.csv", rows)
    provenance_path = args.out / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    here = (f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}); "
            f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs; load average "
            f"before/after {load_before} / {load_average()}")
    provenance.update({part: here for part in args.parts})
    for part, files in PART_FILES.items():  # parts not rerun: their committed tables
        if part not in args.parts and part in provenance and all(
                (args.out / f"{name}.csv").is_file() for name in files):
            for name in files:
                parts[name] = read_csv(args.out / f"{name}.csv")
    provenance = {part: text for part, text in provenance.items() if part in parts}
    provenance_path.write_text(json.dumps(provenance, indent=1) + "\n")
    sources = sorted(set(provenance.values()), key=list(provenance.values()).index)
    produced = (f"Produced by {sources[0]}." if len(sources) == 1 else "Produced by (each "
                "part by its own run):\n\n" + "\n".join(
                    f"- {', '.join(p for p, t in provenance.items() if t == text)}: {text}"
                    for text in sources))
    lines = [
        "# Trained models on the fast path", "",
        produced, "",
        "`node_dada.upsample(guide, source, scale, checkpoint=NAME)` runs the model's "
        "coefficients through the growing-step RKC schedule of learning-free inference "
        "(`solver=\"fast\"`, the default); `solver=\"exact\"` runs the model's own training "
        "solver (the discrete iteration, or the ODE's Euler scheme) over its whole horizon. "
        f"Targets: fast at least {TARGET_RATIO:g}x faster, within {TARGET_REL_L2:g} relative "
        f"L2 of exact, MAE within {TARGET_MAE:g} % on the Middlebury test split.", ""]
    if "speed" in parts:
        lines += ["## Speed (x8, end to end, CPU seconds, best of "
                  f"{args.repeats})", "",
                  *table(parts["speed"], ["case", "model", "exact_cpu_s", "fast_cpu_s",
                                          "ratio", "shared_cpu_s", "solve_ratio", "rel_l2",
                                          "exact_wall_s", "fast_wall_s"]),
                  "", "Learning-free: exact = the 8000-iteration discrete DADA, fast = RKC. "
                  "shared_cpu_s: the work both solvers do first (initial estimate and "
                  "coefficients), timed alone; solve_ratio: the ratio of the two calls "
                  "without it (the diffusion itself).", ""]
    if "accuracy" in parts:
        lines += ["## Accuracy on the Middlebury test split (whole images, MAE in cm)", "",
                  *table(parts["accuracy"], ["model", "scale", "mae_exact_cm", "mae_fast_cm",
                                             "change_pct", "worst_image_change_pct",
                                             "worst_rel_l2"]),
                  "", "Per image: `accuracy_per_image.csv`.", ""]
    if "memory" in parts:
        lines += ["## Memory: one large frame, x8, in a fresh process", "",
                  *table(parts["memory"], ["case", "model", "peak_rss_mib", "rss_before_mib",
                                           "process_peak_mib", "seconds", "input_mib",
                                           "finite"]),
                  "", "peak_rss_mib: the process's resident high-water mark (`VmHWM`) during "
                  "the call, reset to the resident size just before it (`/proc/self/"
                  "clear_refs`), so the interpreter, torch, the model and the input frame "
                  "(input_mib) are included; rss_before_mib: the resident size then; "
                  "process_peak_mib: the whole process's high-water mark (`ru_maxrss`), "
                  "making of the synthetic frame included.", ""]
    (args.out / "README.md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
