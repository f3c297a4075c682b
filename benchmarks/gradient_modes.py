"""Peak memory and time of one forward+backward per gradient mode and horizon.

    python benchmarks/gradient_modes.py --out results/gradient_modes

256 x 256 crop of the embedded Motorcycle scene, x8, learning-free coefficients
made differentiable, Euler at h = 0.24 (the step of the discrete iteration).
Each (mode, horizon) runs in a fresh subprocess; peak memory is the rise of the
resident set size over the state just before the solve (the kernel's high-water
mark is reset there through /proc/self/clear_refs), so it counts what the solve
allocates, not Python and torch; the subprocesses run with glibc's mmap threshold
at 64 KiB so that freed tensors leave the resident set (``CHILD_ENV``), and the
fused kernels are compiled during the warm-up. Ratios are against the same mode at T = 10
(memory) and against ``direct`` at the same horizon (time). ``unrolled`` is the
discrete iteration, whose gradient runs fused on CPU (``diffusion/unrolled.py``:
memory grows like the square root of the iterations). ``direct``, whose memory grows
linearly with the horizon, is run only up to ``--max-linear-horizon``: beyond it it
would need tens of GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _report import load_average, rss_kib  # benchmarks/ is on sys.path when run as a script

HORIZONS = (10.0, 30.0, 120.0, 480.0, 1920.0)
MODES = ("unrolled", "direct", "checkpointed", "adjoint", "adjoint_naive")
LINEAR_MODES = ("direct",)
# glibc serves blocks above its mmap threshold with mmap and unmaps them on free, so
# the resident set follows the live tensors. Without this, the threshold rises after
# the first large free and freed tensors stay resident (the peak then measures heap
# fragmentation). Each tensor of the 256 x 256 state is 256 KiB.
CHILD_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")



def run_one(mode: str, horizon: float, size: int, method: str, step: float) -> dict:
    """Body of one subprocess: a forward+backward, its time and peak memory."""
    import time

    import numpy as np
    import torch

    from node_dada.data.motorcycle import MIDDLEBURY_DEPTH_SCALE_MM, load_motorcycle
    from node_dada.diffusion import (
        degrade,
        discrete_dada,
        fused,
        initial_estimate,
        learning_free_coefficients,
        normalize_guide,
        solve_ode,
    )
    from node_dada.errors import SolverError

    guide, depth = load_motorcycle()
    top, left = 100, 200
    guide_t = torch.from_numpy(guide[top:top + size, left:left + size].astype(np.float32) / 255)
    guide_t = guide_t.permute(2, 0, 1)[None]
    depth_t = torch.from_numpy(depth[top:top + size, left:left + size])[None, None]
    source, mask = degrade(depth_t / MIDDLEBURY_DEPTH_SCALE_MM, 8)
    depth0 = initial_estimate(source, mask, 8)
    cv0, ch0 = learning_free_coefficients(normalize_guide(guide_t), depth0)
    weights = torch.rand(depth0.shape, generator=torch.Generator().manual_seed(0))
    # Warm-up: the first use of a mode imports lazily (~0.3 s, ~40 MiB) and the first
    # use of the fused kernels compiles them (tens of MiB of LLVM): both once per
    # process, so both happen here, outside the measurement.
    for kernels in ("always", "auto"):
        warm = cv0.clone().requires_grad_(True)
        try:
            with fused.using(kernels):
                if mode == "unrolled":
                    discrete_dada(depth0, warm, ch0, source, mask, 2, step).sum().backward()
                else:
                    solve_ode(depth0, warm, ch0, source, mask, 2 * step, method=method,
                              step_size=step, grad_mode=mode)[0].sum().backward()
        except SolverError:
            pass
    cv, ch = cv0.clone().requires_grad_(True), ch0.clone().requires_grad_(True)
    before = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    record = {"mode": mode, "horizon": horizon, "method": method, "step": step, "size": size}
    try:
        if mode == "unrolled":
            out = discrete_dada(depth0, cv, ch, source, mask, round(horizon / step), step)
            nfe = round(horizon / step)
            nfe_backward = None
        else:
            out, info = solve_ode(depth0, cv, ch, source, mask, horizon, method=method,
                                  step_size=step, grad_mode=mode)
        (out * weights).sum().backward()
        if mode != "unrolled":
            nfe, nfe_backward = info.nfe_forward, info.nfe_backward
        finite = bool(torch.isfinite(cv.grad).all() and torch.isfinite(ch.grad).all())
        record |= {"status": "ok" if finite else "non-finite gradient", "nfe": nfe,
                   "nfe_backward": nfe_backward}
    except SolverError as error:
        record |= {"status": "failed: " + str(error).split(";")[0][:90]}
    record["seconds"] = time.perf_counter() - start
    record["peak_mib"] = (rss_kib("VmHWM") - before) / 1024
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/gradient_modes"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--method", default="euler")
    parser.add_argument("--step", type=float, default=0.24)
    parser.add_argument("--horizons", type=float, nargs="+", default=list(HORIZONS))
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--max-linear-horizon", type=float, default=120.0)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "HORIZON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        record = run_one(args.one[0], float(args.one[1]), args.size, args.method, args.step)
        sys.stdout.write(json.dumps(record) + "\n")
        return 0
    load = load_average()
    rows = []
    for horizon in args.horizons:
        for mode in args.modes:
            if mode in LINEAR_MODES and horizon > args.max_linear_horizon:
                rows.append({"mode": mode, "horizon": horizon,
                             "status": "skipped: memory grows linearly"})
                continue
            command = [sys.executable, __file__, "--one", mode, str(horizon), "--size",
                       str(args.size), "--method", args.method, "--step", str(args.step)]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env=CHILD_ENV)
            if done.returncode:
                rows.append({"mode": mode, "horizon": horizon,
                             "status": "crashed: " + done.stderr.strip().splitlines()[-1][:80]})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            sys.stderr.write(f"T={horizon:g} {mode}: {row.get('status')} "
                             f"{row.get('seconds', 0):.1f}s {row.get('peak_mib', 0):.0f}MiB\n")
    command = " ".join(["python benchmarks/gradient_modes.py"] + (argv or sys.argv[1:]))
    write_report(rows, args, command, load)
    return 0


def write_report(rows: list[dict], args: argparse.Namespace, command: str,
                 load: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(rows, indent=1) + "\n")
    base_memory = {r["mode"]: r["peak_mib"] for r in rows
                   if r["horizon"] == min(args.horizons) and "peak_mib" in r}
    direct_time = {r["horizon"]: r["seconds"] for r in rows
                   if r["mode"] == "direct" and r.get("status") == "ok"}
    lines = [
        f"# Gradient modes: memory and time of one forward+backward ({args.size}x{args.size}, x8, "
        f"{args.method}, h={args.step})",
        "",
        f"Produced by `{command}` (load average {load} before the run).",
        "",
        "| horizon T | mode | status | NFE fwd | NFE bwd | time (s) | time / direct | "
        "peak memory (MiB) | memory / same mode at T=min |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "peak_mib" not in r:
            lines.append(f"| {r['horizon']:g} | {r['mode']} | {r['status']} | | | | | | |")
            continue
        t_ratio = r["seconds"] / direct_time[r["horizon"]] if r["horizon"] in direct_time else None
        m_ratio = r["peak_mib"] / base_memory[r["mode"]] if base_memory.get(r["mode"]) else None
        lines.append(
            f"| {r['horizon']:g} | {r['mode']} | {r['status']} | {r.get('nfe', '')} | "
            f"{r.get('nfe_backward') or ''} | {r['seconds']:.2f} | "
            f"{'' if t_ratio is None else f'{t_ratio:.2f}'} | {r['peak_mib']:.1f} | "
            f"{'' if m_ratio is None else f'{m_ratio:.2f}'} |"
        )
    (args.out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
