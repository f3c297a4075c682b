"""Steps per second of ``node-dada fit --config <config>`` as users run it.

    python benchmarks/fit_throughput.py --out results/fit_throughput \\
        configs/middlebury_x8_discrete.yaml configs/middlebury_x8_ode_adjoint.yaml ...

Each config is fitted for ``--steps`` optimisation steps through the real command
line (a subprocess, its own temporary log and checkpoint folders, validation off),
logging every step to TensorBoard. The rate is read from the TensorBoard wall
times of steps ``--skip`` to the last, so that start-up, data loading of the first
batch and the first-use compilation of the fused kernels are left out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import load_average, publish  # benchmarks/ is on sys.path when run as a script


def steps_per_second(log_dir: Path, skip: int) -> tuple[float, int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(log_dir.rglob("events.out.tfevents.*"))
    if not events:
        raise RuntimeError(f"no TensorBoard events under {log_dir}")
    accumulator = EventAccumulator(str(events[0]), size_guidance={"scalars": 0})
    accumulator.Reload()
    points = [(e.step, e.wall_time) for e in accumulator.Scalars("train/loss") if e.step >= skip]
    (first_step, first_time), (last_step, last_time) = points[0], points[-1]
    return (last_step - first_step) / (last_time - first_time), last_step - first_step


def measure(config: str, steps: int, skip: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "node_dada.cli", "fit", "--config", config,
            "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", tmp,
            "--trainer.logger.init_args.save_dir", tmp, "--checkpoint.dirpath", f"{tmp}/ckpt",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            return {"config": config, "error": done.stderr.strip().splitlines()[-1][:120]}
        rate, counted = steps_per_second(Path(tmp), skip)
    return {"config": config, "steps_per_s": rate, "counted_steps": counted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("results/fit_throughput"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10)
    args = parser.parse_args(argv)
    load = load_average()
    rows = []
    for config in args.configs:
        rows.append(measure(config, args.steps, args.skip))
        sys.stderr.write(f"{rows[-1]}\n")
    command = " ".join(["python benchmarks/fit_throughput.py"] + (argv or sys.argv[1:]))
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    lines = [
        "# `node-dada fit` throughput", "",
        f"Produced by `{command}` on {os.cpu_count()} CPU cores (torch threads: {threads}; "
        f"load average {load} before the run, nothing else running); steps {args.skip} to "
        f"{args.steps} of each fit, validation off.", "",
        "| config | steps/s | s/step | steps timed |", "|---|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| `{row['config']}` | failed: {row['error']} | | |")
        else:
            lines.append(f"| `{row['config']}` | {row['steps_per_s']:.2f} | "
                         f"{1 / row['steps_per_s']:.2f} | {row['counted_steps']} |")
    return publish(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
