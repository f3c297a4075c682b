"""The model card of the shipped models: ``results/models.md``.

    python -m node_dada.models.card --out results/models.md

Everything in it is read from the shipped files (``node_dada/weights``:
hyper-parameters and the metadata written by ``node_dada.models.release``) and
from the evaluation tables in ``results/trained/`` (written by the benchmark
command each of them names), so rerunning this command after retraining, releasing
and re-evaluating rewrites the card. The command line (its options and ``main``) is
:mod:`node_dada.commands.card`.
"""

from __future__ import annotations

import re
from pathlib import Path

from node_dada.evaluation.report import markdown_table, read_table
from node_dada.models.inference import (
    SHIPPED_MODELS,
    read_aliases,
    resolve_checkpoint,
)
from node_dada.models.weights import load_checkpoint_safely

__all__ = ["read_table", "render_card"]

_REPOSITORY = Path(__file__).resolve().parents[2]

#: Prefix of the benchmark label (method column of results/trained/) of a shipped model.
LABEL_PREFIX = ""
#: Per-crop tables beside the pooled ones (``node-dada benchmark --per-image``).
_PER_CROP_SUFFIXES = ("_per_image", "_per_crop")


def _training_data(config: str | None) -> str:
    """The data roots of a shipped model's config, as the card states them."""
    import yaml

    if not config or not (_REPOSITORY / config).is_file():
        return "n/a"
    data = yaml.safe_load((_REPOSITORY / config).read_text()).get("data", {})
    args = data.get("init_args", {})
    roots = args.get("root")
    roots = [roots] if isinstance(roots, str) else list(roots or [])
    kind = data.get("class_path", "").rsplit(".", 1)[-1]
    noise = args.get("source_noise")
    degraded = f", sources degraded by `{noise}` (validation too)" if noise else ""
    return f"{kind} from {', '.join(f'`{root}`' for root in roots)}{degraded}"


def _image_gains(rows: list[dict[str, str]], label: str) -> str | None:
    """Smallest and largest reduction of MAE against learning-free DADA over the
    images the model was evaluated on, e.g. ``"4.1 % to 12.0 % (6 images)"``."""
    own = {(r["scale"], r["crop"]): float(r["mae_cm"]) for r in rows if r["method"] == label}
    free = {(r["scale"], r["crop"]): float(r["mae_cm"]) for r in rows if r["method"] == "dada"}
    gains = [100.0 * (1.0 - own[key] / free[key]) for key in own if key in free]
    if not gains:
        return None
    return f"{min(gains):.1f} % to {max(gains):.1f} % ({len(gains)} images)"


def _shipped_by_scale() -> list[str]:
    """The shipped models, ``...-x4-...`` before ``...-x8-...`` before ``...-x16-...``."""
    def key(name: str) -> tuple[int, str]:
        found = re.search(r"-x(\d+)", name)
        return (int(found.group(1)) if found else 0, name)

    return sorted(SHIPPED_MODELS, key=key)


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary(aliases: dict[str, str], tables: dict[str, tuple[str, list[dict[str, str]]]],
             contents: dict[str, dict]) -> list[str]:
    """One line per shipped model (``contents``: name -> its file's content): its
    validation MAE and, per evaluation table, its MAE next to learning-free DADA's at
    the same scale."""
    stems = list(tables)
    table = []
    for name, content in contents.items():
        meta = content.get("metadata", {})
        cells = []
        for stem in stems:
            rows = tables[stem][1]
            own = next((row for row in rows if row["method"] == LABEL_PREFIX + name), None)
            free = own and next((row for row in rows if row["method"] == "dada"
                                 and row["scale"] == own["scale"]), None)
            cells.append("n/a" if own is None else
                         f"{float(own['mae_cm']):.4f} / "
                         + (f"{float(free['mae_cm']):.4f}" if free else "n/a"))
        also = ", ".join(f"`{alias}`" for alias, stem in aliases.items() if stem == name)
        noisy = " (noisy sources)" if content.get("hyper_parameters", {}).get(
            "assume_noise") is not None else ""
        table.append([f"`{name}`", also, f"{_fmt(meta.get('val_mae_cm'))}{noisy}", *cells])
    header = ["model", "also", "validation MAE (cm)",
              *(f"{stem} MAE (cm): model / learning-free" for stem in stems)]
    lines = markdown_table(header, table, "llr" + "r" * len(stems))
    return [*lines, "", "The name of a scale (`middlebury-x<scale>`) points to the "
            "model of that scale with the lowest validation MAE: the better of its "
            "discrete and ODE pair (the same data and budget), or a second-stage model "
            "(`-ft`: the same data again with a restarted, lower learning rate, see "
            "docs/training.md) where that validates lower still. "
            "A noise-aware model (validated on noisy sources) "
            "is evaluated here on the clean sources with the exact consistency; on noisy "
            "ones see results/sensors.", ""]


def render_card(out: Path, results: Path) -> str:
    """The card's Markdown (``out``: where it will be written, named in its header)."""
    aliases = read_aliases()
    tables = {path.stem: read_table(path)
              for path in sorted((_REPOSITORY / results).glob("*.csv"))
              if not path.stem.endswith(_PER_CROP_SUFFIXES)}
    per_image = {path.stem: read_table(path)[1]
                 for path in sorted((_REPOSITORY / results).glob("*_per_image.csv"))}
    contents = {name: load_checkpoint_safely(resolve_checkpoint(name))
                for name in _shipped_by_scale()}
    lines = [
        "# Shipped models",
        "",
        f"Written by `python -m node_dada.models.card --out {out}` from the shipped files in "
        "`node_dada/weights/` and the tables in "
        f"`{results}/` (each produced by the command it names).",
        "Load by name: `node_dada.upsample(guide, source, scale=8, checkpoint=NAME)` or "
        "`node-dada predict --checkpoint NAME ...`.",
        "",
        *_summary(aliases, tables, contents),
    ]
    if per_image:
        lines += ["Reduction of the MAE against learning-free DADA on each image "
                  "(from the per-image tables; negative: worse than learning-free):", "",
                  *markdown_table(
                      ["model", *per_image],
                      ([f"`{name}`", *(_image_gains(rows, LABEL_PREFIX + name) or "n/a"
                                       for rows in per_image.values())] for name in contents),
                      "l" * (1 + len(per_image))),
                  ""]
    for name, content in contents.items():
        path = resolve_checkpoint(name)
        hp, meta = content["hyper_parameters"], content.get("metadata", {})
        other_names = [alias for alias, stem in aliases.items() if stem == name]
        solver = ("discrete iteration, unrolled backpropagation" if hp["solver"] == "discrete"
                  else f"ODE ({hp['method']}, h = {hp['step_size']}, {hp['projection']}), "
                       f"gradient mode `{hp['grad_mode']}`")
        coefficients = (" predicting local edge sensitivities (`kappa_map`)"
                        if hp.get("kappa_map") else
                        " with residual features" if hp.get("residual") else "")
        wall = meta.get("training_wall_time_s")
        parent = meta.get("init_from")
        if parent and wall is not None:
            # a fine-tuned model's cost includes the training of the model it started from
            started = contents.get(parent) or load_checkpoint_safely(resolve_checkpoint(parent))
            parent_wall = started.get("metadata", {}).get("training_wall_time_s")
            wall = None if parent_wall is None else wall + parent_wall
        lines += [
            f"## `{name}`" + (f" (also `{'`, `'.join(other_names)}`)" if other_names else ""),
            "",
            f"- File: `{path.relative_to(_REPOSITORY).as_posix()}`"
            f" ({path.stat().st_size / 1e6:.1f} MB, float16 weights, xz-compressed, "
            "loaded weights-only).",
            f"- Network: `{hp['extractor']}` extractor{coefficients}, "
            f"{hp['guide_channels']}-channel guide; solver: {solver}"
            + (f"; trained with the relaxed consistency (`assume_noise: "
               f"{hp['assume_noise']}`): use it with `source_noise=\"auto\"`"
               if hp.get("assume_noise") is not None else "") + ".",
            f"- Iterations: random no-grad lead-in of up to {hp['lead_in']} steps, then "
            f"{hp['train_iter']} with gradient (step {hp['step']}); inference runs all "
            f"{hp['lead_in'] + hp['train_iter']}.",
            f"- Data: `{meta.get('config')}` ({_training_data(meta.get('config'))}, train "
            "split, scenes with metric depth; checkpoint selected on the validation split "
            "by `val/mae_cm`).",
            f"- Checkpoint chosen: {meta.get('source')} (epoch {meta.get('epoch')}, step "
            f"{meta.get('global_step')}), validation MAE {_fmt(meta.get('val_mae_cm'))} cm.",
            f"- Training wall time: {'n/a' if wall is None else f'{wall / 60:.1f} min'} "
            + (f"(with `{parent}`, which it was fine-tuned from) " if parent else "")
            + f"on {meta.get('hardware')}; torch {meta.get('torch')}.",
            f"- Retrain: `node-dada fit --config {meta.get('config')}`, then "
            f"`python -m node_dada.models.release --checkpoint <run>/checkpoints/best-*.ckpt "
            f"--name {name} --config {meta.get('config')}"
            + (f" --alias {other_names[0]}" if other_names else "") + "`.",
            "",
        ]
        label = LABEL_PREFIX + name
        evaluated = [(stem, row) for stem, (_, rows) in tables.items() for row in rows
                     if row["method"] == label]
        if evaluated:
            table = []
            for stem, row in evaluated:
                peers = {r["method"]: r for r in tables[stem][1] if r["scale"] == row["scale"]}
                table.append([
                    f"{stem} ({row['split']})", f"x{row['scale']}", f"{float(row['mae_cm']):.4f}",
                    f"{float(row['rmse_cm']):.4f}", row["valid_pixels"],
                    _fmt(float(peers["dada"]["mae_cm"])) if "dada" in peers else "n/a",
                    _fmt(float(peers["bicubic"]["mae_cm"])) if "bicubic" in peers else "n/a"])
            lines += markdown_table(
                ["evaluation", "scale", "MAE (cm)", "RMSE (cm)", "valid px",
                 "learning-free MAE (cm)", "bicubic MAE (cm)"], table, "lrrrrrr")
            lines.append("")
    commands = sorted({command for command, _ in tables.values() if command})
    if commands:
        lines += ["Evaluation tables regenerated by:", ""]
        lines += [f"    {command}" for command in commands]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    from node_dada.commands.card import main

    raise SystemExit(main())
