"""Ship a trained model inside the package, loadable by name.

    python -m node_dada.models.release --checkpoint runs/.../best-*.ckpt \\
        --name middlebury-x8-discrete --config configs/trained/middlebury_x8_discrete.yaml \\
        [--alias middlebury-x8] [--hardware "..."]

Writes ``node_dada/weights/<name>.pt``: the weights in float16 (xz-compressed) and the
model's hyper-parameters (loaded weights-only, no pickled code), plus metadata
(source checkpoint, epoch, step, validation MAE, config, hardware, training wall
time read from the run's TensorBoard events). ``--alias`` also makes the model
available under a second name (``node_dada/weights/aliases.json``), e.g. the best model
of a scale as ``middlebury-x<scale>``. Metrics of a shipped model are measured on
this file (``node_dada.benchmark --checkpoint NAME=<name>``), not on the original.
The command line (its options and ``main``) is :mod:`node_dada.commands.release`.
"""

from __future__ import annotations

import json
from pathlib import Path

from node_dada.errors import DataError
from node_dada.models.inference import (
    export_model,
    load_checkpoint_file,
    model_from_content,
    training_scale,
    write_content,
)
from node_dada.models.registry import (
    _ALIASES_FILE,
    _CHECKPOINT_DIR,
    read_aliases,
    resolve_checkpoint,
)

__all__ = ["best_validation_score", "release", "run_folder", "training_wall_time"]


def training_wall_time(run_dir: Path) -> float | None:
    """Seconds of training in a run's TensorBoard events (None if there are none).

    Each process writes its own events file, so a run resumed after an interruption
    has several: the time is the sum of each file's first-to-last span, which leaves
    out the time the run was not running.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spans = []
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        times = [event.wall_time for tag in accumulator.Tags().get("scalars", [])
                 for event in accumulator.Scalars(tag)]
        if times:
            spans.append(max(times) - min(times))
    return sum(spans) if spans else None


def best_validation_score(content: dict) -> float | None:
    """The monitored score of a Lightning checkpoint's checkpoint callback
    (``ModelCheckpoint`` or a subclass such as ``LastCheckpoint``), or None."""
    for value in content.get("callbacks", {}).values():
        if isinstance(value, dict) and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


def run_folder(checkpoint: Path) -> Path:
    """The folder whose TensorBoard events time the run that wrote ``checkpoint``
    (``<run>/version_N/checkpoints/x.ckpt`` -> ``<run>``): a run resumed with
    ``--ckpt_path last`` continues in a new version folder of the same logger name,
    so its training time is that of all of them."""
    folder = checkpoint.parent.parent
    return folder.parent if folder.name.startswith("version_") else folder


def release(checkpoint: Path, name: str, *, config: str | None = None,
            alias: str | None = None, hardware: str | None = None) -> Path:
    """Export ``checkpoint`` as the shipped model ``name``; returns the written file."""
    import torch

    if not checkpoint.is_file():
        raise DataError(f"--checkpoint: no file at {checkpoint}")
    content = load_checkpoint_file(checkpoint)
    model = model_from_content(content, checkpoint)
    best = best_validation_score(content)
    run_dir = run_folder(checkpoint)
    metadata = {
        "source": checkpoint.name,
        "epoch": int(content.get("epoch", -1)),
        "global_step": int(content.get("global_step", -1)),
        "val_mae_cm": None if best is None else float(best),
        "config": config,
        "hardware": hardware,
        "training_wall_time_s": training_wall_time(run_dir),
        "torch": str(torch.__version__),
        "scale": training_scale(content),
        # a fine-tuned model: the model it started from (its file does not need it)
        "init_from": (content.get("hyper_parameters") or {}).get("init_from"),
    }
    _CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    target = _CHECKPOINT_DIR / f"{name}.pt"
    export_model(model, target, half=True, compress=True, metadata=metadata)
    if alias:
        aliases = read_aliases()
        aliases[alias] = name
        _ALIASES_FILE.write_text(json.dumps(dict(sorted(aliases.items())), indent=2) + "\n")
    return target


def annotate(name: str, **fields: object) -> Path:
    """Add ``fields`` to a shipped model's metadata; the weights stay byte for byte."""
    path = resolve_checkpoint(name)
    content = load_checkpoint_file(path)
    content["metadata"] = {**content.get("metadata", {}), **fields}
    write_content(content, path, compress=True)
    return path


if __name__ == "__main__":
    from node_dada.commands.release import main

    raise SystemExit(main())
