"""Checkpoints that survive a killed run.

- :func:`atomic_save` / :class:`AtomicCheckpointIO`: a checkpoint is written to a
  temporary file in the destination folder, flushed and ``fsync``-ed, then moved
  over the old one with ``os.replace`` (atomic on POSIX), and the folder is
  ``fsync``-ed. A kill at any point leaves either the old or the new file, never a
  truncated one. (Lightning's own writer opens the destination, or a temporary
  file in ``/tmp`` that ``shutil.move`` copies across devices, without ``fsync``.)
- :class:`EpochSeeding`: seeds the data order and the augmentations of every
  training epoch from ``(seed, epoch, rank)``, so that a resumed run draws the
  same batches as one that was never interrupted. (The module keeps the state of
  its own lead-in generator in the checkpoint: ``DADAModule.on_save_checkpoint``.)
- :class:`LastCheckpoint`: Lightning's ``ModelCheckpoint`` whose ``last.ckpt``
  follows every training epoch. Lightning itself rewrites ``last.ckpt`` only when
  it has just saved a top-k checkpoint, so with a monitored metric a run whose
  validation stopped improving (or that validates every n-th epoch) kept an old
  ``last.ckpt``: a resume went back to it and ``test --ckpt_path last`` tested it.
- :func:`make_resumable`: wires the first two into a :class:`~lightning.pytorch.Trainer`
  (the CLI does it for every run and uses :class:`LastCheckpoint` as its
  ``checkpoint`` callback).

Exactness (CPU, ``num_workers=0``): resuming from a checkpoint taken at the end of
an epoch reproduces the uninterrupted run bit for bit (tested with SIGKILLs in
``tests/test_reliability_resume.py``). A checkpoint in the middle of an epoch
restarts that epoch's (non-stateful) DataLoader from its beginning: Lightning's
documented limitation, it warns. Persistent DataLoader workers keep the random
state they started with, so ``num_workers > 0`` resumes with other draws.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, RandomSampler

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "EpochSeeding",
    "atomic_save",
    "atomic_write",
    "epoch_seed",
    "make_resumable",
]

_TEMP_SUFFIX = ".partial"


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every file system lets a folder be opened.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``.

    Temporary files left by a writer that was killed (``.<name>.*.partial`` next to
    ``path``) are removed by the next successful save of the same ``path``: one
    writer per path is assumed, as Lightning saves from rank 0 only.
    """
    atomic_write(path, lambda stream: torch.save(obj, stream))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, flush and ``fsync`` it,
    then move it over ``path`` (see :func:`atomic_save`)."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(folder)
    for stale in folder.glob(f".{path.name}.*{_TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with :func:`atomic_save` as the writer (local paths).

    Use it as a Trainer plugin (``plugins=[AtomicCheckpointIO()]``); ``node-dada``
    commands install it themselves.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"storage_options: not supported by {type(self).__name__}, got {storage_options!r}"
            )
        atomic_save(checkpoint, path)


def epoch_seed(base: int, epoch: int, rank: int = 0) -> int:
    """The seed of training epoch ``epoch`` on process ``rank`` for the global seed ``base``."""
    return int(np.random.SeedSequence([base, epoch, rank]).generate_state(1)[0])


def _loaders(loaders: Any) -> list[DataLoader]:
    if isinstance(loaders, DataLoader):
        return [loaders]
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return [loader for loader in loaders if isinstance(loader, DataLoader)]
    return []


class EpochSeeding(L.Callback):
    """Seed the data pipeline of each training epoch from ``(seed, epoch, rank)``.

    A resumed run must draw the same batches as one never interrupted. Lightning
    restores loops, optimizers and schedulers but no random state, and it reaches
    the first batch after a resume along another path (``setup_data``, a
    validation iterator built to fast-forward its counters) than an uninterrupted
    run reaches the next epoch's. So, before an epoch's first sample is drawn:

    - the global generators (torch, numpy, Python: augmentations) are seeded from
      ``(seed, epoch, rank)``;
    - the shuffling sampler of the training DataLoader gets its own generator,
      seeded the same way;
    - DataLoaders without a generator get one, so that creating their iterators
      (which draws a worker base seed) no longer consumes the global generator.

    The seeding happens in ``on_train_start`` for the first epoch a ``fit`` runs
    (its iterator already exists then, its first sample not yet) and in
    ``on_train_epoch_start`` for the following ones.

    Args:
        seed: base seed; default the one ``seed_everything`` set (``PL_GLOBAL_SEED``).
            Without either the callback does nothing (no reproducibility asked for).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._seeded: int | None = None
        self._sampler_generator = torch.Generator()

    def _base(self) -> int | None:
        if self.seed is not None:
            return int(self.seed)
        value = os.environ.get("PL_GLOBAL_SEED")
        return int(value) if value is not None else None

    def _seed(self, trainer: L.Trainer, epoch: int) -> None:
        base = self._base()
        if base is None or self._seeded == epoch:
            return
        self._seeded = epoch
        seed = epoch_seed(base, epoch, trainer.global_rank)
        for loader in _loaders(trainer.train_dataloader) + _loaders(trainer.val_dataloaders):
            if loader.generator is None:
                loader.generator = torch.Generator()
        for loader in _loaders(trainer.train_dataloader):
            if isinstance(loader.sampler, RandomSampler):
                loader.sampler.generator = self._sampler_generator
        self._sampler_generator.manual_seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seeded = None
        self._seed(trainer, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seed(trainer, trainer.current_epoch)


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that, with ``save_last``, writes ``last.ckpt`` at the end of
    every training epoch (after its validation, if any) whatever the top-k did, so
    that a killed run loses at most the epoch it was in."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def make_resumable(trainer: L.Trainer) -> L.Trainer:
    """Give ``trainer`` atomic checkpoint writes and random states that resume.

    A checkpoint IO chosen by the user (anything but Lightning's default local
    writer) is left as it is.
    """
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    if not any(isinstance(c, EpochSeeding) for c in trainer.callbacks):
        # First, so that it runs before any other callback's epoch-start hook.
        trainer.callbacks.insert(0, EpochSeeding())
    return trainer
