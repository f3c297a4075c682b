"""How much of learning-free DADA's error good coefficients can remove: the diffusion
run with coefficients computed from the ground truth itself (an oracle no model can
reach, the ceiling of what learning the coefficients can give), and the oracle
spoiled in the ways a learned model can miss it (leaks across depth steps, extra
edges, edges off by a pixel). Whole test images, 8000 discrete iterations.

    python benchmarks/edge_oracle.py --out results/edge_oracle

What a learned model must get right (docs/training.md).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import publish

from node_dada.data import GuidedDepthDataset, MiddleburyScenes
from node_dada.diffusion import DEFAULT_KAPPA, discrete_dada, edge_coefficients

ROOT = Path(__file__).resolve().parent.parent
#: Perona-Malik parameter of the oracle, in scaled depth (3.4 mm for Middlebury's
#: 1122.7 mm): the ground truth's coefficients cut diffusion across steps of a few mm.
ORACLE_KAPPA = 0.003
DEFAULT_ROOTS = [ROOT.parent / "shared" / "data" / "middlebury0506" / "ThirdSize",
                 ROOT.parent / "shared" / "data" / "middlebury2014"]


def _thick(c: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-c, 3, 1, 1)  # every edge three pixels wide


VARIANTS = {
    "learning-free": None,
    "oracle": lambda ov, oh, lv, lh: (ov, oh),
    "oracle, leaks c >= 0.05": lambda ov, oh, lv, lh: (ov.clamp(min=0.05), oh.clamp(min=0.05)),
    "oracle + texture edges of learning-free": lambda ov, oh, lv, lh: (
        torch.minimum(ov, lv), torch.minimum(oh, lh)),
    "oracle, edges 3 px wide": lambda ov, oh, lv, lh: (_thick(ov), _thick(oh)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for README.md")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--iterations", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N test images (quick checks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scenes = MiddleburyScenes(DEFAULT_ROOTS, split="test", missing_dmin="skip")
    command = "python benchmarks/edge_oracle.py " + shlex.join(sys.argv[1:] if argv is None
                                                                  else argv)
    lines = [
        "# The ceiling of learned coefficients", "",
        f"Produced by `{command}`: Middlebury test split (third-size 2005/2006 scenes with "
        "metric depth, both views; MiddEval3 quarter-size Adirondack and Motorcycle), whole "
        f"images, {args.iterations} discrete iterations from the bicubic estimate. MAE in cm.",
        "",
        f"`oracle`: coefficients of the ground truth itself, `g(|grad target|, {ORACLE_KAPPA})` "
        f"in scaled depth; `learning-free`: `g` of the "
        f"normalised guide and the bicubic estimate, kappa {DEFAULT_KAPPA}. The spoiled "
        "oracles show what a model's mistakes cost: a leak across a depth step costs far "
        "more than an extra edge.",
        "",
    ]
    header = "| scale | image | " + " | ".join(VARIANTS) + " |"
    lines += [header, "|---|---|" + "---:|" * len(VARIANTS)]
    for scale in args.scales:
        dataset = GuidedDepthDataset(scenes, mode="eval", scale=scale, crop_size=None)
        totals = dict.fromkeys(VARIANTS, 0.0)
        count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        for index in range(count):
            sample = dataset[index]
            guide, source, mask, depth0, target, valid = (
                t[None] for t in (sample.guide, sample.source, sample.mask_lr, sample.depth0,
                                  sample.target, sample.mask_hr))
            lv, lh = edge_coefficients(torch.cat([guide, depth0], 1), DEFAULT_KAPPA)
            ov, oh = edge_coefficients(torch.where(valid, target, depth0), ORACLE_KAPPA)
            row = []
            for name, spoil in VARIANTS.items():
                cv, ch = (lv, lh) if spoil is None else spoil(ov, oh, lv, lh)
                out = discrete_dada(depth0, cv, ch, source, mask, args.iterations)
                mae = float((out - target)[valid].abs().mean()) * sample.depth_scale / 10
                totals[name] += mae / count
                row.append(f"{mae:.4f}")
            lines.append(f"| x{scale} | {sample.name} | " + " | ".join(row) + " |")
        lines.append(f"| x{scale} | **mean of images** | "
                     + " | ".join(f"**{v:.4f}**" for v in totals.values()) + " |")
    return publish(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
