"""`make demo`: learning-free DADA against bicubic on the embedded Motorcycle scene,
and at x8 the shipped trained model (``middlebury-x8``) next to them.

    python -m node_dada.demo --out results/demo

Writes ``motorcycle.csv``, ``motorcycle.md`` and one picture per scale. The command
line (its options and ``main``) is :mod:`node_dada.commands.demo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from node_dada.data.motorcycle import MIDDLEBURY_DEPTH_SCALE_MM
from node_dada.diffusion import (
    initial_estimate,
    learning_free_dada,
    normalize_guide,
)
from node_dada.evaluation.crops import Crop
from node_dada.evaluation.report import markdown_table, write_table
from node_dada.metrics import DepthErrors, depth_errors

DEFAULT_SCALES = (4, 8, 16, 32)
#: The shipped model the demo evaluates next to the learning-free result, once it exists.
TRAINED_MODEL = "middlebury-x8"


@dataclass
class DemoRow:
    scale: int
    method: str
    errors: DepthErrors
    seconds: float


def run_scale(crop: Crop, scale: int, num_iter: int, bar: tqdm
              ) -> tuple[list[DemoRow], dict[str, np.ndarray]]:
    """Bicubic and learning-free DADA on one evaluation crop (the whole image, from
    :func:`node_dada.evaluation.iter_crops`, as the benchmark reads it)."""
    depth_c = crop.target[0, 0].numpy()
    source = crop.source / MIDDLEBURY_DEPTH_SCALE_MM
    mask_lr = crop.mask_lr
    start = time.perf_counter()
    depth0 = initial_estimate(source, mask_lr, scale)
    bicubic_s = time.perf_counter() - start
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        bar.update(count - done)
        done = count

    start = time.perf_counter()
    with torch.no_grad():
        dada = learning_free_dada(
            normalize_guide(crop.guide), source, mask_lr, depth0, num_iter=num_iter,
            callback=advance,
        )
    dada_s = time.perf_counter() - start + bicubic_s
    maps = {
        "guide": crop.guide[0].permute(1, 2, 0).numpy(),
        "bicubic": depth0[0, 0].numpy() * MIDDLEBURY_DEPTH_SCALE_MM,
        "dada": dada[0, 0].numpy() * MIDDLEBURY_DEPTH_SCALE_MM,
        "target": depth_c,
    }
    rows = [
        DemoRow(scale, "bicubic", depth_errors(maps["bicubic"], depth_c), bicubic_s),
        DemoRow(scale, "dada (learning-free)", depth_errors(maps["dada"], depth_c), dada_s),
    ]
    return rows, maps


def save_figure(maps: dict[str, np.ndarray], scale: int, rows: list[DemoRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = maps["target"]
    finite = target[np.isfinite(target)]
    vmin, vmax = np.percentile(finite, [1, 99])
    errors = {row.method: row.errors.mae_cm for row in rows}
    error_style = {"cmap": "magma", "vmin": 0, "vmax": 10}
    panels = [
        ("guide", maps["guide"], {}),
        (f"bicubic (MAE {errors['bicubic']:.2f} cm)", maps["bicubic"], {}),
        (f"DADA, learning-free (MAE {errors['dada (learning-free)']:.2f} cm)", maps["dada"], {}),
    ]
    trained = f"trained {TRAINED_MODEL}"
    if "trained" in maps:
        panels.append((f"DADA, {trained} (MAE {errors[trained]:.2f} cm)", maps["trained"], {}))
    panels += [
        ("ground truth (white = unknown)", target, {}),
        ("|DADA learning-free - truth| (cm)", np.abs(maps["dada"] - target) / 10.0, error_style),
    ]
    if "trained" in maps:
        panels.append((f"|{trained} - truth| (cm)", np.abs(maps["trained"] - target) / 10.0,
                       error_style))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8))
    for axis, (title, image, style) in zip(axes, panels, strict=True):
        if image.ndim == 3:
            axis.imshow(image)
        else:
            kwargs = {"cmap": "viridis_r", "vmin": vmin, "vmax": vmax} | style
            shown = axis.imshow(np.ma.masked_invalid(image), **kwargs)
            fig.colorbar(shown, ax=axis, fraction=0.035, pad=0.02)
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    fig.suptitle(f"Middlebury 2014 Motorcycle (quarter size), x{scale}: depth in mm", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_tables(rows: list[DemoRow], out: Path, command: str, num_iter: int) -> str:
    write_table(out / "motorcycle.csv",
                ["scale", "method", "mae_cm", "mse_cm2", "rmse_cm", "valid_pixels", "seconds"],
                ([r.scale, r.method, f"{r.errors.mae_cm:.4f}", f"{r.errors.mse_cm2:.4f}",
                  f"{r.errors.rmse_cm:.4f}", r.errors.count, f"{r.seconds:.2f}"] for r in rows),
                command=command)
    md = [
        "# Demo: Middlebury 2014 Motorcycle (quarter size, embedded in scikit-image)",
        "",
        f"Produced by `{command}` ({num_iter} learning-free iterations; the image is",
        "cropped top-left to a multiple of the scale; errors over all valid pixels).",
        "",
        *markdown_table(
            ["scale", "method", "MAE (cm)", "MSE (cm^2)", "RMSE (cm)", "time (s)"],
            ([f"x{r.scale}", r.method, f"{r.errors.mae_cm:.2f}", f"{r.errors.mse_cm2:.2f}",
              f"{r.errors.rmse_cm:.2f}", f"{r.seconds:.1f}"] for r in rows),
            "rlrrrr"),
    ]
    text = "\n".join(md) + "\n"
    (out / "motorcycle.md").write_text(text)
    return text


def trained_model_available() -> bool:
    from node_dada.models.inference import NAMED_CHECKPOINTS

    return TRAINED_MODEL in NAMED_CHECKPOINTS


def run_trained(crop: Crop, scale: int) -> tuple[DemoRow, np.ndarray]:
    """The shipped model ``TRAINED_MODEL`` on the same crop as :func:`run_scale`:
    its row and its depth map (mm)."""
    import node_dada

    start = time.perf_counter()
    prediction = node_dada.upsample(crop.guide, crop.source, scale=scale, mask_lr=crop.mask_lr,
                                    checkpoint=TRAINED_MODEL)
    seconds = time.perf_counter() - start
    depth_c = crop.target[0, 0].numpy()
    prediction = np.asarray(prediction).reshape(depth_c.shape)
    row = DemoRow(scale, f"trained {TRAINED_MODEL}", depth_errors(prediction, depth_c), seconds)
    return row, prediction


if __name__ == "__main__":
    from node_dada.commands.demo import main

    raise SystemExit(main())
