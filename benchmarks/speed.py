"""Speed: fused kernels and fewer steps against the reference-style eager loop.

    .venv/bin/python benchmarks/speed.py --out results/speed

Learning-free DADA at x8, float32, torch's default thread count, every path in
this one process (ratios are against the eager loop measured here):

- 256 x 256: rows 100-355, columns 200-455 of the embedded Motorcycle scene
  (scikit-image, Middlebury 2014 at quarter size); batch 8: eight crops at
  fixed offsets spread over the scene.
- 1104 x 1376: the whole Motorcycle scene (500 x 741) mirrored outwards
  (numpy ``symmetric`` padding) to that size: real edges, a synthetic layout.

Reference: the eager loop (``discrete_dada`` with ``NODE_DADA_FUSED`` off,
i.e. ``discrete_step`` per iteration), 8000 iterations. Where that would take
too long (``--eager-iters``), it runs fewer iterations, its time is
extrapolated linearly to 8000, and the reference result is the fused
8000-iteration result, after checking that the fused and eager results after
those fewer iterations are identical; the table says so.

Each row: wall time (best of ``--repeats`` for runs under 5 s), the ratio to
the eager loop, function evaluations (iterations for the discrete paths),
the peak-RSS increase of the run (``/proc/self/clear_refs`` + ``VmHWM``) and
the relative L2 difference to the 8000-iteration eager result. A second table
times one forward+backward of the ODE solve with the stable adjoint
(``grad_mode="adjoint"``), eager against fused.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import load_average, rss_kib  # benchmarks/ is on sys.path when run as a script
from torchdiffeq import odeint

from node_dada.data.motorcycle import MIDDLEBURY_DEPTH_SCALE_MM, load_motorcycle
from node_dada.diffusion import (
    degrade,
    discrete_dada,
    fused,
    hard_adjust,
    initial_estimate,
    learning_free_coefficients,
    normalize_guide,
    solve_ode,
)
from node_dada.diffusion.discrete import prepare_problem
from node_dada.diffusion.learning_free import ODE_STEP_GROWTH, ODE_STEP_SIZE
from node_dada.diffusion.ode import ProjectedDiffusion

SCALE = 8
ITERATIONS = 8000
HORIZON = 0.24 * ITERATIONS  # T = 1920
CROP_256 = (100, 200)
BATCH_OFFSETS = [(0, 0), (0, 240), (0, 485), (122, 120), (122, 360), (244, 0), (244, 240),
                 (244, 485)]
RKC_STEPS = (10.0, 20.0, 40.0, 60.0, 80.0)
#: growing RKC steps (first step, growth); the first is the learning-free default
RKC_GROWING = ((ODE_STEP_SIZE, ODE_STEP_GROWTH), (10.0, 1.7), (5.0, 2.0))
TARGET = 1e-3
NOTES = [
    "Notes:",
    "",
    "{threads}",
    "- Batch 8 and 1104 x 1376: the eager loop ran `--eager-iters` iterations and its time is "
    "scaled linearly to 8000; the reference result there is the fused 8000-iteration result, "
    "after checking that fused and eager agree bit for bit over the iterations both ran.",
    "- The ODE (T = 1920) is the small-step limit of the discrete iteration, about 1e-4 "
    "(relative L2) away from it here, so ODE rows cannot show an error below that; RKC uses "
    "`solve_ode`'s defaults (spectral-radius bound 8 max(c) x 1.2, stages per step from it).",
    "- Paths: *fused discrete* = `discrete_dada` (the kernel is picked automatically); *ODE "
    "rkc, fused stages* = `solve_ode(method='rkc')` without gradient, every RKC stage (field, "
    "projection and the stage's linear combination) in one pass; *growing steps* = the same "
    "with `step_growth`: each step that factor times the one before (`growing_knots`), long "
    "steps once diffusion has smoothed the state; the first setting is the learning-free "
    "default of `upsample` and `dada_ode`; *fused RHS (torchdiffeq "
    "steps)* = the fused field inside torchdiffeq's RKC steps (stage sums as torch ops); "
    "*eager (torchdiffeq)* = the same with the eager field.",
    "- Peak RSS is the growth of the process's high-water mark during the first run of a "
    "row; 0 means the run fit in memory the process had already touched.",
]


# ------------------------------------------------------------------ problems


def _problem(guides: np.ndarray, depths: np.ndarray) -> dict[str, Any]:
    """(B, H, W, 3) uint8 guides and (B, H, W) depth in mm -> learning-free inputs."""
    guide = torch.from_numpy(guides.astype(np.float32) / 255).permute(0, 3, 1, 2)
    depth = torch.from_numpy(depths)[:, None] / MIDDLEBURY_DEPTH_SCALE_MM
    source, mask = degrade(depth, SCALE)
    depth0 = torch.cat([initial_estimate(source[i:i + 1], mask[i:i + 1], SCALE)
                        for i in range(len(depth))])
    cv, ch = learning_free_coefficients(normalize_guide(guide), depth0)
    return {"depth0": depth0, "cv": cv, "ch": ch, "source": source, "mask_lr": mask}


def make_problems(guide: np.ndarray, depth: np.ndarray) -> dict[str, dict[str, Any]]:
    top, left = CROP_256
    crop = (slice(top, top + 256), slice(left, left + 256))
    batch = [(slice(t, t + 256), slice(c, c + 256)) for t, c in BATCH_OFFSETS]
    pad_h, pad_w = 1104 - guide.shape[0], 1376 - guide.shape[1]
    pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    big_guide = np.pad(guide, (*pads, (0, 0)), mode="symmetric")
    big_depth = np.pad(depth, pads, mode="symmetric")
    return {
        "256x256 b1": _problem(guide[crop][None], depth[crop][None]),
        "256x256 b8": _problem(np.stack([guide[r] for r in batch]),
                               np.stack([depth[r] for r in batch])),
        "1104x1376 b1": _problem(big_guide[None], big_depth[None]),
    }


# ------------------------------------------------------------------ measuring


def measure(run: Callable[[], Any], repeats: int) -> tuple[float, float, float, Any]:
    """Best wall time and best CPU time (``time.process_time``: this process's
    threads, robust to other work on the machine) of ``repeats`` runs (one if it
    takes over 5 s), peak RSS increase (MiB) of the first run, its result."""
    best = math.inf
    best_cpu = math.inf
    peak = float("nan")
    result = None
    for index in range(repeats):
        if index == 0 and os.path.exists("/proc/self/clear_refs"):
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # resets VmHWM to the current RSS
            before = rss_kib("VmRSS")
        start, start_cpu = time.perf_counter(), time.process_time()
        out = run()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if index == 0:
            result = out
            if os.path.exists("/proc/self/clear_refs"):
                peak = (rss_kib("VmHWM") - before) / 1024
        best, best_cpu = min(best, elapsed), min(best_cpu, cpu)
        if elapsed > 5:
            break
    return best, best_cpu, peak, result


def rel_l2(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.double() - reference.double()).norm() / reference.double().norm())


# ------------------------------------------------------------------ paths


def discrete(problem: dict[str, Any], iters: int) -> Callable[[], torch.Tensor]:
    return lambda: discrete_dada(**problem, num_iter=iters)


def rkc_fused_stages(problem: dict[str, Any], step: float,
                     growth: float = 1.0) -> Callable[[], Any]:
    return lambda: solve_ode(**problem, t_end=HORIZON, method="rkc", step_size=step,
                             step_growth=growth)


def rkc_torchdiffeq(problem: dict[str, Any], step: float, fused_rhs: bool) -> Callable[[], Any]:
    """RKC2 stepped by torchdiffeq (what ``solve_ode`` does on the eager path); with
    ``fused_rhs`` the field is the fused kernel but the stage sums stay torch ops."""

    def run() -> tuple[torch.Tensor, int]:
        source, mask, scale = prepare_problem(**problem)
        cv, ch = problem["cv"], problem["ch"]
        func = ProjectedDiffusion(cv, ch, mask, scale, "multiplicative", None)
        func.fused = fused_rhs
        steps = math.ceil(HORIZON / step - 1e-9)
        grid = torch.linspace(0.0, HORIZON, steps + 1, dtype=torch.float64)
        options = {"spectral_radius": 8.0 * float(torch.maximum(cv.max(), ch.max())) * 1.2,
                   "grid_constructor": lambda f, y, t: grid}
        y0 = hard_adjust(problem["depth0"], source, mask, scale)
        mode = "always" if fused_rhs else "never"
        with fused.using(mode):
            y_end = odeint(func, y0, grid[[0, -1]], method="rkc", options=options)[-1]
        return hard_adjust(y_end, source, mask, scale), func.nfe

    return run


def run_case(name: str, problem: dict[str, Any], args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    eager_iters = ITERATIONS if name == "256x256 b1" else args.eager_iters
    log = sys.stderr.write
    with fused.using("never"):
        eager_s, eager_cpu, eager_mem, eager_out = measure(discrete(problem, eager_iters), 1)
    scale_up = ITERATIONS / eager_iters
    with fused.using("always"):  # load (or compile) the kernels outside the timings
        discrete(problem, 2)()
        solve_ode(**problem, t_end=8.0, method="rkc", step_size=4.0)
    with fused.using("auto"):
        fused_s, fused_cpu, fused_mem, fused_out = measure(discrete(problem, ITERATIONS),
                                                           args.repeats)
        if eager_iters < ITERATIONS:
            partial = discrete(problem, eager_iters)()
            identical = torch.equal(partial, eager_out)
            log(f"{name}: fused == eager after {eager_iters} iterations: {identical}\n")
            reference = fused_out
            note = (f"eager time for {eager_iters} iterations x {scale_up:g}; reference = fused "
                    f"8000 (fused == eager after {eager_iters}: "
                    f"{'bit-identical' if identical else 'NOT identical'})")
        else:
            reference = eager_out
            note = ""
    eager_total, eager_total_cpu = eager_s * scale_up, eager_cpu * scale_up

    def add(path: str, setting: str, nfe: int | None, timing: tuple[float, float],
            memory: float, out: torch.Tensor | None, extra: str = "") -> None:
        seconds, cpu = timing
        rows.append({
            "case": name, "path": path, "setting": setting, "nfe": nfe,
            "time_s": seconds, "cpu_s": cpu, "ratio": eager_total / seconds,
            "cpu_ratio": eager_total_cpu / cpu, "peak_rss_mib": memory,
            "rel_l2_vs_eager_8000": rel_l2(out, reference) if out is not None else float("nan"),
            "note": extra,
        })
        log(f"{name} | {path} {setting}: {seconds:.3f} s (cpu {cpu:.3f}), "
            f"x{eager_total / seconds:.1f} (cpu x{eager_total_cpu / cpu:.1f}), "
            f"rel L2 {rows[-1]['rel_l2_vs_eager_8000']:.2e}\n")

    add("eager loop (reference)", "8000 it.", ITERATIONS, (eager_total, eager_total_cpu),
        eager_mem, eager_out if not note else None, note)
    add("fused discrete", "8000 it.", ITERATIONS, (fused_s, fused_cpu), fused_mem, fused_out,
        "bit-identical" if torch.equal(fused_out, reference) else "")
    large = name.startswith("1104")
    with fused.using("auto"):
        for iters in (4000,) if large else (4000, 2000):
            seconds, cpu, memory, out = measure(discrete(problem, iters), args.repeats)
            add("fused discrete, fewer iterations", f"{iters} it.", iters, (seconds, cpu),
                memory, out)
        for step in RKC_STEPS if name == "256x256 b1" else RKC_STEPS[1:]:
            seconds, cpu, memory, (out, info) = measure(rkc_fused_stages(problem, step),
                                                        args.repeats)
            add("ODE rkc, fused stages", f"h = {step:g}, {info.stages} stages", info.nfe_forward,
                (seconds, cpu), memory, out)
        for step, growth in RKC_GROWING:
            seconds, cpu, memory, (out, info) = measure(rkc_fused_stages(problem, step, growth),
                                                        args.repeats)
            default = " (default)" if (step, growth) == RKC_GROWING[0] else ""
            add(f"ODE rkc, fused stages, growing steps{default}",
                f"h = {step:g} x {growth:g}^k, {info.steps} steps", info.nfe_forward,
                (seconds, cpu), memory, out)
        if not large:
            seconds, cpu, memory, (out, nfe) = measure(rkc_torchdiffeq(problem, 40.0, True), 1)
            add("ODE rkc, fused RHS (torchdiffeq steps)", "h = 40", nfe, (seconds, cpu), memory,
                out)
    if name == "256x256 b1":
        with fused.using("never"):
            seconds, cpu, memory, (out, nfe) = measure(rkc_torchdiffeq(problem, 40.0, False), 1)
        add("ODE rkc, eager (torchdiffeq)", "h = 40", nfe, (seconds, cpu), memory, out)
    return rows


# ------------------------------------------------------------------ training


def adjoint_case(problem: dict[str, Any], t_end: float, method: str, step: float,
                 repeats: int) -> list[dict]:
    """One forward+backward through ``solve_ode(grad_mode="adjoint")``, eager vs fused."""
    rows = []
    grads = {}
    for mode in ("never", "always"):
        def run() -> tuple[float, float, Any]:
            cv = problem["cv"].clone().requires_grad_(True)
            ch = problem["ch"].clone().requires_grad_(True)
            start = time.perf_counter()
            out, info = solve_ode(problem["depth0"], cv, ch, problem["source"],
                                  problem["mask_lr"], t_end, method=method, step_size=step,
                                  grad_mode="adjoint")
            forward = time.perf_counter() - start
            (out - problem["depth0"]).abs().mean().backward()
            return forward, info, torch.cat([cv.grad.flatten(), ch.grad.flatten()])

        with fused.using(mode):
            if mode == "always":
                run()  # load the kernels outside the timing
            seconds, cpu, memory, (forward, info, grad) = measure(run, repeats)
        grads[mode] = grad
        rows.append({"path": "eager" if mode == "never" else "fused", "time_s": seconds,
                     "cpu_s": cpu,
                     "forward_s": forward, "nfe_forward": info.nfe_forward,
                     "nfe_backward": info.nfe_backward, "peak_rss_mib": memory})
    eager, fast = grads["never"], grads["always"]
    agreement = float((eager - fast).norm() / eager.norm())
    for row in rows:
        row["ratio"] = rows[0]["time_s"] / row["time_s"]
        row["cpu_ratio"] = rows[0]["cpu_s"] / row["cpu_s"]
        row["grad_rel_diff"] = agreement
    return rows


# ------------------------------------------------------------------ output


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _sharing(context: dict[str, str]) -> str:
    """What the load average before the run says about other work on the machine."""
    try:
        busy = float(context["load_before"].split()[0]) > 0.5
    except (ValueError, IndexError):
        return "unknown"
    return ("the cores were busy in the minute before the run (other work or an earlier "
            "benchmark), and wall times then vary several-fold from run to run" if busy else
            "the machine was idle in the minute before the run")


def write(out: Path, rows: list[dict], training: list[dict], command: str,
          context: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if training:
        with open(out / "adjoint.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(training[0]))
            writer.writeheader()
            writer.writerows(training)
    lines = [
        "# Speed: fused kernels and fewer steps against the eager loop", "",
        f"Produced by `{command}` ({context['when']}).",
        f"Machine: {context['machine']}; torch {torch.__version__}, numba {context['numba']}, "
        f"{torch.get_num_threads()} thread(s) for torch and numba. Load average before/after: "
        f"{context['load_before']} / {context['load_after']}: {_sharing(context)}. CPU time "
        "(`time.process_time`, this process only) is the steadier measure of the work and the "
        "ratios below use it; wall-time ratios are in the CSV.", "",
        "Learning-free DADA, x8, float32. Ratio = eager-loop CPU time / path CPU time; NFE = "
        "iterations (discrete) or field evaluations (ODE); peak RSS = increase of the "
        "process's high-water mark during the run; rel. L2 = relative L2 difference to the "
        "8000-iteration eager result (target 1e-3).", "",
        "| case | path | setting | NFE | wall (s) | CPU (s) | ratio | peak RSS (MiB) | "
        "rel. L2 | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['path']} | {row['setting']} | {_fmt(row['nfe'])} | "
            f"{_fmt(row['time_s'])} | {_fmt(row['cpu_s'])} | {_fmt(row['cpu_ratio'])} | "
            f"{_fmt(row['peak_rss_mib'])} | {_fmt(row['rel_l2_vs_eager_8000'], 2)} | "
            f"{row['note']} |")
    lines += ["", "Fastest path within 1e-3 of the eager 8000-iteration result (CPU time):", ""]
    for case in dict.fromkeys(row["case"] for row in rows):
        within = [r for r in rows if r["case"] == case and r["path"] != "eager loop (reference)"
                  and r["rel_l2_vs_eager_8000"] <= TARGET]
        if within:
            best = min(within, key=lambda r: r["cpu_s"])
            lines.append(f"- {case}: {best['path']} ({best['setting']}), {_fmt(best['cpu_s'])} s, "
                         f"x{_fmt(best['cpu_ratio'])} (target x30), rel. L2 "
                         f"{_fmt(best['rel_l2_vs_eager_8000'], 2)}")
        else:
            lines.append(f"- {case}: none")
    lines += ["", "Targets (this run, CPU-time ratios):", ""]
    for case in dict.fromkeys(row["case"] for row in rows):
        same = [r for r in rows if r["case"] == case and r["path"] == "fused discrete"]
        if same:
            goal = 4 if case.startswith("1104") else 6
            lines.append(f"- {case}: fused discrete, same 8000 iterations: "
                         f"x{_fmt(same[0]['cpu_ratio'])} (target x{goal})")
    for row in training:
        if row["path"] == "fused":
            lines.append(f"- adjoint fwd+bwd, {row['case']}: x{_fmt(row['cpu_ratio'])} "
                         "(target x2)")
    if training:
        lines += [
            "", "## Training: forward+backward with the stable adjoint", "",
            f"{context['training']}", "",
            "| case: path | fwd+bwd wall (s) | CPU (s) | forward wall (s) | ratio (CPU) | "
            "NFE fwd/bwd | peak RSS (MiB) | grad rel. diff fused vs eager |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for row in training:
        lines.append(
            f"| {row['case']}: {row['path']} | {_fmt(row['time_s'])} | {_fmt(row['cpu_s'])} | "
            f"{_fmt(row['forward_s'])} | {_fmt(row['cpu_ratio'])} | "
            f"{row['nfe_forward']}/{row['nfe_backward']} | {_fmt(row['peak_rss_mib'])} | "
            f"{_fmt(row['grad_rel_diff'], 2)} |")
    threads = (
        "- Threads: `--threads 1` is how this table was made. On a shared 2-core machine a "
        "two-thread parallel region (torch's ops and the fused kernels alike: they share one "
        "OpenMP runtime) often waits milliseconds for a descheduled thread, so two-thread times "
        "swing by 10x between runs; with one thread the CPU-time ratios are reproducible to "
        "about 20 %. The kernels use torch's thread count (`torch.set_num_threads`)."
        if torch.get_num_threads() == 1 else
        f"- Threads: {torch.get_num_threads()} for the eager ops and the kernels alike "
        "(`torch.set_num_threads`). Where other work shares the cores, a parallel region "
        "waits for descheduled threads and these times swing by up to 10x between runs; "
        "`--threads 1` gives the reproducible table. CPU time counts both threads, so the "
        "wall-time ratio (CSV) is the one to read here.")
    lines += ["", *(note.format(threads=threads) for note in NOTES)]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/speed"))
    parser.add_argument("--cases", nargs="+",
                        default=["256x256 b1", "256x256 b8", "1104x1376 b1"])
    parser.add_argument("--eager-iters", type=int, default=500,
                        help="eager-loop iterations where 8000 would take too long "
                             "(batch 8 and 1104 x 1376); the time is extrapolated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and so numba) threads; default: torch's default")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import numba

    context = {"when": time.strftime("%Y-%m-%d"), "load_before": load_average(),
               "numba": numba.__version__,
               "machine": f"{os.cpu_count()} CPUs ({_cpu_name()})"}
    guide, depth = load_motorcycle()
    problems = make_problems(guide, depth)
    rows: list[dict] = []
    with torch.no_grad():
        for name in args.cases:
            rows += run_case(name, problems[name], args)
    training: list[dict] = []
    if not args.skip_training:
        small = make_training_problem(guide, depth)
        for case, problem, t_end, method, step in [
            ("4 x 128 x 128, euler h = 0.24, T = 15.36 (configs/*_ode_adjoint.yaml)", small,
             15.36, "euler", 0.24),
            ("1 x 256 x 256, rkc h = 4, T = 245.76 (1024 iterations)", problems["256x256 b1"],
             245.76, "rkc", 4.0),
        ]:
            for row in adjoint_case(problem, t_end, method, step, 1):
                training.append({"case": case, **row})
                sys.stderr.write(f"{case} {row['path']}: {row['time_s']:.2f} s\n")
    context["training"] = (
        "Gradient of a mean absolute error w.r.t. `cv` and `ch` (as in training, where they "
        "come from the CNN); one run each, the fused kernels loaded beforehand.")
    context["load_after"] = load_average()
    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write(args.out, rows, training, command.strip(), context)
    (args.out / "context.json").write_text(json.dumps({**context, "command": command.strip()},
                                                      indent=1))
    return 0


def make_training_problem(guide: np.ndarray, depth: np.ndarray) -> dict[str, Any]:
    offsets = [(0, 0), (150, 300), (300, 100), (350, 600)]
    crops = [(slice(t, t + 128), slice(c, c + 128)) for t, c in offsets]
    return _problem(np.stack([guide[r] for r in crops]), np.stack([depth[r] for r in crops]))


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
