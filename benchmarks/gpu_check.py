"""The GPU path, run for real: one prepared command for a machine with a CUDA GPU.

    make gpu-check        # = .venv/bin/python benchmarks/gpu_check.py --out results/gpu

Three parts, each a table in ``<out>/README.md`` and a CSV, with the device's name
and the command:

- ``tests``: the CUDA tests (``tests/test_compiled.py``, which skip without a GPU
  elsewhere) in a subprocess; their summary line.
- ``speed``: ``node_dada.upsample`` on the GPU, x8, learning-free (fast RKC and the
  exact discrete iteration) and the shipped ``middlebury-x8`` model (fast and exact),
  on 256 x 256 (batch 1 and 32), 1024 x 1024 and 2000 x 3000 frames (Motorcycle
  mirrored outwards), compiled (``torch.compile``, the default on CUDA) and eager
  (``NODE_DADA_COMPILE=never``): milliseconds per sample (best of ``--repeats`` after
  a warm-up) and peak GPU memory; each 256 x 256 result is checked against the CPU
  result (relative L2). The paper reports about 100 ms per sample at batch 32 on an
  RTX 3090 and 4 GB to infer.
- ``fit``: training steps of the paper-size configuration (ResNet-50 U-Net, batch 8
  of 256 x 256 crops, x8, a lead-in of up to 8000 iterations without gradient, 1024
  with gradient) for the discrete unrolled mode and the ODE in checkpointed and
  adjoint modes: seconds per step and peak GPU memory (the paper: 23 GB with 1024
  iterations with gradient).

``--dry-run`` runs every part on the CPU at toy sizes (64 x 64 frames, the light
extractor, 16 + 8 iterations) into ``--out`` (default ``runs/gpu-dry-run``): the test
suite runs it so that the script never rots. Nothing else depends on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _report import load_average, publish  # benchmarks/ is on sys.path when run as a script
from trained_speed import mirrored

import node_dada
from node_dada.diffusion import compiled, degrade

ROOT = Path(__file__).resolve().parents[1]
SCALE = 8
MODEL = "middlebury-x8"
PAPER_MS_PER_SAMPLE, PAPER_TRAIN_GB, PAPER_INFER_GB = 100.0, 23.0, 4.0


def frames(shape: tuple[int, int], batch: int, device: str):
    """(guide (B, 3, H, W) in 0-1, source (B, 1, H/8, W/8) in mm, NaN = invalid):
    Motorcycle mirrored outwards to ``shape`` (``trained_speed.mirrored``), the batch
    of copies."""
    guide, depth = mirrored(shape)
    guide_t = torch.from_numpy(np.ascontiguousarray(guide.transpose(2, 0, 1))).float() / 255
    source, mask = degrade(torch.from_numpy(depth.astype(np.float32))[None, None], SCALE)
    source = torch.where(mask, source, torch.full_like(source, math.nan))
    return (guide_t[None].expand(batch, -1, -1, -1).contiguous().to(device),
            source.expand(batch, -1, -1, -1).contiguous().to(device))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def run_tests(dry_run: bool) -> list[dict]:
    if dry_run:
        return [{"suite": "tests/test_compiled.py", "result": "not run (dry run)"}]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_compiled.py"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return [{"suite": "tests/test_compiled.py", "result": lines[-1] if lines else "no output",
             "exit_code": done.returncode}]


def speed_rows(device: str, cases, repeats: int, methods, compile_modes) -> list[dict]:
    rows = []
    reference = {}
    for shape, batch in cases:
        guide, source = frames(shape, batch, device)
        for label, kwargs in methods:
            if shape == cases[0][0] and batch == 1:
                cpu_guide, cpu_source = frames(shape, 1, "cpu")
                reference[label] = node_dada.upsample(cpu_guide, cpu_source, scale=SCALE,
                                                      **kwargs)
            for mode in compile_modes:
                compiled.set_mode(mode)
                try:
                    out = node_dada.upsample(guide, source, scale=SCALE, **kwargs)  # warm-up
                    _sync(device)
                    _peak_reset(device)
                    times = []
                    for _ in range(repeats):
                        clock = time.perf_counter()
                        out = node_dada.upsample(guide, source, scale=SCALE, **kwargs)
                        _sync(device)
                        times.append(time.perf_counter() - clock)
                finally:
                    compiled.set_mode("auto")
                row = {"frame": f"{shape[0]} x {shape[1]}", "batch": batch, "method": label,
                       "compile": mode, "ms_per_sample": 1000 * min(times) / batch,
                       "peak_gb": _peak_gb(device), "finite": bool(torch.isfinite(out).all())}
                if label in reference and shape == cases[0][0]:
                    diff = out[:1].cpu().double() - reference[label].double()
                    row["rel_l2_vs_cpu"] = float(diff.norm() / reference[label].double().norm())
                rows.append(row)
                print(row, flush=True)
    return rows


def fit_rows(device: str, dry_run: bool, steps: int) -> list[dict]:
    from node_dada.data.dataset import GuidedDepthDataset
    from node_dada.data.motorcycle import MotorcycleScenes
    from node_dada.data.pipeline import collate_samples
    from node_dada.models.dada_module import DADAModule

    size, batch = (64, 2) if dry_run else (256, 8)
    lead_in, train_iter = (16, 8) if dry_run else (8000, 1024)
    extractor = "light" if dry_run else "resnet50"
    torch.manual_seed(0)
    data = GuidedDepthDataset(MotorcycleScenes(), mode="train", scale=SCALE, crop_size=size)
    samples = collate_samples([data[i % len(data)] for i in range(batch)]).to(device)
    rows = []
    for solver, grad_mode in (("discrete", "unrolled"), ("ode", "checkpointed"),
                              ("ode", "adjoint")):
        model = DADAModule(extractor=extractor, solver=solver, grad_mode=grad_mode,
                           lead_in=lead_in, train_iter=train_iter).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        _peak_reset(device)
        for index in range(steps + 1):
            _sync(device)
            clock = time.perf_counter()
            prediction, _ = model(samples, train=True)
            loss = model.loss(prediction, samples)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _sync(device)
            if index:  # the first step warms up (allocator, kernels, compilation)
                times.append(time.perf_counter() - clock)
        rows.append({"mode": f"{solver} / {grad_mode}", "extractor": extractor,
                     "batch": f"{batch} x {size} x {size}",
                     "iterations": f"<= {lead_in} + {train_iter}",
                     "s_per_step": float(np.median(times)), "peak_gb": _peak_gb(device),
                     "finite_loss": bool(torch.isfinite(loss))})
        print(rows[-1], flush=True)
        del model, optimizer
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the tables (default results/gpu, or runs/gpu-dry-run "
                             "with --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every part on the CPU at toy sizes (the test suite runs this)")
    parser.add_argument("--parts", nargs="+", default=["tests", "speed", "fit"],
                        choices=("tests", "speed", "fit"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-steps", type=int, default=3)
    args = parser.parse_args(argv)
    command = "python benchmarks/gpu_check.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out = args.out or Path("runs/gpu-dry-run" if args.dry_run else "results/gpu")
    if args.dry_run:
        device = "cpu"
    elif not torch.cuda.is_available():
        sys.stderr.write("gpu_check: no CUDA device here; run it on a GPU machine, or pass "
                         "--dry-run to exercise the script on the CPU\n")
        return 2
    else:
        device = "cuda"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)"
    if args.dry_run:
        cases = [((64, 64), 1), ((64, 64), 2)]
        compile_modes = ("never",)
    else:
        cases = [((256, 256), 1), ((256, 256), 32), ((1024, 1024), 1), ((2000, 3000), 1)]
        compile_modes = ("auto", "never")
    methods = [("learning-free fast", {}), ("learning-free exact", {"solver": "exact"}),
               (f"{MODEL} fast", {"checkpoint": MODEL}),
               (f"{MODEL} exact", {"checkpoint": MODEL, "solver": "exact"})]
    load_start, clock = load_average(), time.perf_counter()
    parts: dict[str, list[dict]] = {}
    if "tests" in args.parts:
        parts["tests"] = run_tests(args.dry_run)
    if "speed" in args.parts:
        parts["speed"] = speed_rows(device, cases, 1 if args.dry_run else args.repeats,
                                    methods, compile_modes)
    if "fit" in args.parts:
        parts["fit"] = fit_rows(device, args.dry_run, 1 if args.dry_run else args.fit_steps)
    out.mkdir(parents=True, exist_ok=True)
    for part, rows in parts.items():
        write_csv(out / f"{part}.csv", rows)
    lines = ["# The GPU path", "",
             f"Produced by `{command.strip()}` on {name} (torch {torch.__version__}, "
             f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - clock:.0f} s; load average "
             f"{load_start} at the start).", "",
             f"Paper figures for comparison: about {PAPER_MS_PER_SAMPLE:g} ms per sample at "
             f"batch 32 on an RTX 3090, {PAPER_INFER_GB:g} GB to infer, "
             f"{PAPER_TRAIN_GB:g} GB to train with 1024 iterations with gradient. Inference "
             "times are end to end (`node_dada.upsample` on GPU tensors), the masked bicubic "
             "initial estimate included, which runs on the CPU (scipy).", ""]
    titles = {"tests": "CUDA tests", "speed": "Inference (x8, ms per sample, peak GB)",
              "fit": "Paper-size training steps"}
    for part, rows in parts.items():
        lines += [f"## {titles[part]}", "", *table(rows), ""]
    return publish(out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
