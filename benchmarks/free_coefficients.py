"""Is the truncated gradient informative, or is the network the bottleneck?

Per-pixel log-gains of the learning-free edge strengths (the quantity a
``kappa_map`` model predicts) are optimised directly, with no network, on single
crops: Adam on the training loss through a random no-gradient lead-in of up to
8000 iterations and ``train_iter`` iterations with gradient, exactly as training
does. If this free optimisation removes most of the error, the gradient through
a truncated horizon carries what is needed, and what limits a trained model is
how well its network predicts such gains on unseen images.

    python benchmarks/free_coefficients.py --out results/free_coefficients

Crops of the Middlebury test split (fitting the ground truth of the crop itself:
a diagnostic of the optimisation, not a result on held-out data).
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from _report import publish

from node_dada.data import GuidedDepthDataset, MiddleburyScenes
from node_dada.diffusion import (
    DEFAULT_KAPPA,
    discrete_dada,
    discrete_dada_two_phase,
    perona_malik,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = ROOT.parent / "shared" / "data" / "middlebury0506" / "ThirdSize"


def _strengths(guide: torch.Tensor, depth0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.cat([guide, depth0], dim=1)
    return ((features[:, :, 1:] - features[:, :, :-1]).abs().mean(1, keepdim=True),
            (features[..., 1:] - features[..., :-1]).abs().mean(1, keepdim=True))


def optimise(sample, *, train_iter: int, steps: int, every: int, lead_in: int,
             lr: float) -> list[tuple[int, float, float]]:
    """``(step, MAE cm after lead_in + train_iter iterations, seconds)`` along the way."""
    guide, source, mask, depth0, target, valid = (
        t[None] for t in (sample.guide, sample.source, sample.mask_lr, sample.depth0,
                          sample.target, sample.mask_hr))
    strength_v, strength_h = _strengths(guide, depth0)
    gain_v = torch.zeros_like(strength_v, requires_grad=True)
    gain_h = torch.zeros_like(strength_h, requires_grad=True)
    optimiser = torch.optim.Adam([gain_v, gain_h], lr=lr)
    rng = random.Random(0)

    def coefficients():
        return (perona_malik(strength_v * gain_v.exp(), DEFAULT_KAPPA),
                perona_malik(strength_h * gain_h.exp(), DEFAULT_KAPPA))

    def mae() -> float:
        with torch.no_grad():
            out = discrete_dada(depth0, *coefficients(), source, mask, lead_in + train_iter)
        return float((out - target)[valid].abs().mean()) * sample.depth_scale / 10

    trace = [(0, mae(), 0.0)]
    clock = time.perf_counter()
    for step in range(1, steps + 1):
        out, _ = discrete_dada_two_phase(depth0, *coefficients(), source, mask,
                                         num_pre=lead_in, num_train=train_iter,
                                         randomize_pre=True, rng=rng)
        loss = (out - target)[valid].abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % every == 0:
            seconds = time.perf_counter() - clock
            trace.append((step, mae(), seconds))
            clock = time.perf_counter() - seconds  # the evaluation is not optimisation time
    return trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for README.md")
    parser.add_argument("--crops", type=int, nargs="+", default=[5, 20],
                        help="indices into the 128 x 128 x8 evaluation grid of the test split")
    parser.add_argument("--train-iter", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scenes = MiddleburyScenes(DEFAULT_ROOT, split="test", missing_dmin="skip")
    dataset = GuidedDepthDataset(scenes, mode="eval", scale=8, crop_size=128)
    if not all(0 <= index < len(dataset) for index in args.crops):
        parser.error(f"--crops: expected indices below {len(dataset)}, got {args.crops}")
    command = "python benchmarks/free_coefficients.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    lines = [
        "# Free per-pixel gains through the truncated gradient", "",
        f"Produced by `{command}` ({args.threads} thread(s)). x8, 128 x 128 crops of the "
        "third-size Middlebury test scenes; per-pixel log-gains of the learning-free edge "
        f"strengths optimised by Adam (lr 0.1) on the crop's own L1 loss through a random "
        "no-gradient lead-in of up to 8000 iterations and `train_iter` iterations with "
        "gradient. MAE (cm) after the full 8000 + `train_iter` iterations; step 0 is "
        "learning-free DADA. Seconds: optimisation time so far (machine load varies).", "",
        "| crop | train_iter | " + " | ".join(
            f"step {s}" for s in range(0, args.steps + 1, args.every)) + " | seconds |",
        "|---|---:|" + "---:|" * (args.steps // args.every + 2),
    ]
    for index in args.crops:
        sample = dataset[index]
        for train_iter in args.train_iter:
            trace = optimise(sample, train_iter=train_iter, steps=args.steps, every=args.every,
                             lead_in=8000, lr=0.1)
            lines.append(f"| {sample.name} | {train_iter} | "
                         + " | ".join(f"{mae:.4f}" for _, mae, _ in trace)
                         + f" | {trace[-1][2]:.0f} |")
    return publish(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
