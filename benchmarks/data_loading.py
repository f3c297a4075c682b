"""Time one evaluation epoch of the third-size Middlebury test split (256 x 256
grid crops, x8), from a cold start: scenes decoded, crops degraded, initial
estimates interpolated. Target: under 10 s on 2 cores.

    .venv/bin/python benchmarks/data_loading.py [--root DIR] [--num-workers N]

The third-size set lacks ``dmin.txt`` for Bowling2, so the default target is
disparity (all three test scenes, both views); ``--target depth`` leaves
Bowling2 out instead.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from node_dada.data import MiddleburyDataModule

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_ROOT = SHARED_DATA / "middlebury0506" / "ThirdSize"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--target", choices=["disparity", "depth"], default="disparity")
    args = parser.parse_args()

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 'skip' notice for --target depth
        data = MiddleburyDataModule(
            args.root, target=args.target, missing_dmin="skip", scale=args.scale,
            crop_size=args.crop_size, batch_size=args.batch_size, num_workers=args.num_workers,
        )
        data.setup("test")
    crops = pixels = 0
    for batch in data.test_dataloader():
        crops += len(batch)
        pixels += int(batch.mask_hr.sum())
    elapsed = time.perf_counter() - start
    print(
        f"middlebury third-size test split, x{args.scale}, {args.crop_size}px crops, "
        f"target={args.target}, workers={args.num_workers}: {crops} crops "
        f"({pixels} valid HR pixels) in {elapsed:.2f} s"
    )


if __name__ == "__main__":
    main()
