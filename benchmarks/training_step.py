"""Training step time and peak memory per gradient mode at the same horizon.

    python benchmarks/training_step.py --out results/training_step

One optimisation step (forward, backward, Adam) of ``DADAModule`` with the
``light`` extractor on a batch of the third-size Middlebury train split
(../shared/data), x8, at the settings of ``configs/middlebury_x8_*.yaml``
(batch 4, 128 x 128 crops, no lead-in, ``train_iter`` iterations with
gradient). Each mode runs in two fresh subprocesses, each a warm-up step and
then ``--repeats`` steps: one times them (the median), under the default
allocator; the other measures peak memory, the rise of the resident set over
the state before the steps (kernel high-water mark reset through
/proc/self/clear_refs), with large blocks mapped and returned one by one so that
the resident set follows live tensors. That allocator setting slows steps that
allocate many large temporaries (the ODE modes up to 3x), so it is not used for
the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import (  # benchmarks/ is on sys.path when run as a script
    load_average,
    publish,
    rss_kib,
)

MODES = {
    "discrete / unrolled": {"solver": "discrete", "grad_mode": "unrolled"},
    "ode euler / direct": {"solver": "ode", "grad_mode": "direct", "method": "euler"},
    "ode euler / checkpointed": {"solver": "ode", "grad_mode": "checkpointed", "method": "euler"},
    "ode euler / adjoint": {"solver": "ode", "grad_mode": "adjoint", "method": "euler"},
    "ode rkc h=4 / adjoint": {"solver": "ode", "grad_mode": "adjoint", "method": "rkc",
                              "step_size": 4.0},
    "discrete / unrolled, eager ops": {"solver": "discrete", "grad_mode": "unrolled"},
}
#: Environment of a mode's subprocess beyond MEASURE_ENV: the eager baseline of the fused
#: unrolled gradient (diffusion/unrolled.py) is the same step with the kernels switched off.
MODE_ENV = {"discrete / unrolled, eager ops": {"NODE_DADA_FUSED": "0"}}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "middlebury0506" / "ThirdSize"


# Large blocks straight from mmap and back to the system on free: the resident set
# then follows live tensor memory instead of what the allocator keeps cached
# (the memory run only: mapping every block costs time).
MEASURE_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")


def run_one(name: str, train_iter: int, repeats: int) -> dict:
    import lightning as L
    import torch

    from node_dada.data.datamodules import MiddleburyDataModule
    from node_dada.models.dada_module import DADAModule

    L.seed_everything(0)
    data = MiddleburyDataModule(DATA, target="depth", missing_dmin="skip", scale=8,
                                crop_size=128, batch_size=4)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    model = DADAModule(extractor="light", lead_in=0, train_iter=train_iter, **MODES[name])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad()
        prediction, _ = model(batch, train=True)
        model.loss(prediction, batch).backward()
        optimizer.step()
        return time.perf_counter() - start

    step()
    before = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    times = [step() for _ in range(repeats)]
    return {"mode": name, "train_iter": train_iter, "horizon": 0.24 * train_iter,
            "step_s": statistics.median(times), "peak_mib": (rss_kib("VmHWM") - before) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/training_step"))
    parser.add_argument("--train-iter", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        sys.stdout.write(json.dumps(run_one(args.one, args.train_iter, args.repeats)) + "\n")
        return 0
    load = load_average()
    rows = []
    for name in MODES:
        runs = {}
        for what, env in (("time", os.environ), ("memory", MEASURE_ENV)):
            done = subprocess.run([sys.executable, __file__, "--one", name, "--train-iter",
                                   str(args.train_iter), "--repeats", str(args.repeats)],
                                  capture_output=True, text=True, check=False,
                                  env=dict(env, **MODE_ENV.get(name, {})))
            if done.returncode:
                runs = {"mode": name, "error": done.stderr.strip().splitlines()[-1][:100]}
                break
            runs[what] = json.loads(done.stdout.strip().splitlines()[-1])
        if "error" not in runs:
            runs = dict(runs["time"], peak_mib=runs["memory"]["peak_mib"])
        rows.append(runs)
        sys.stderr.write(f"{rows[-1]}\n")
    base = next((r for r in rows if r["mode"] == "discrete / unrolled" and "step_s" in r), None)
    command = " ".join(["python benchmarks/training_step.py"] + (argv or sys.argv[1:]))
    lines = [
        f"# Training step per gradient mode (light extractor, batch 4 x 128 x 128, x8, "
        f"{args.train_iter} iterations with gradient, T = {0.24 * args.train_iter:g})", "",
        f"Produced by `{command}` on 2 CPU cores (load average {load} before the "
        f"run); median of {args.repeats} steps (default allocator); peak memory from a "
        "second run of each mode with every large block mapped on its own. The discrete "
        "step runs the fused forward and backward of `node_dada/diffusion/unrolled.py`; "
        "its last row is the same step "
        "with the eager ops (`NODE_DADA_FUSED=0`).", "",
        "| mode | step time (s) | steps/s | vs discrete | peak memory (MiB) | vs discrete |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | failed: {r['error']} | | | | |")
            continue
        time_ratio = f"{r['step_s'] / base['step_s']:.2f}" if base else ""
        mem_ratio = f"{r['peak_mib'] / base['peak_mib']:.2f}" if base else ""
        lines.append(f"| {r['mode']} | {r['step_s']:.2f} | {1 / r['step_s']:.2f} | {time_ratio} | "
                     f"{r['peak_mib']:.0f} | {mem_ratio} |")
    return publish(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
