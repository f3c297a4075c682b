"""Lightning callbacks."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L

from node_dada.errors import InputValueError
from node_dada.libc import release_free_memory, reset_resident_peak, resident_kib

__all__ = ["CpuTimeBudget", "ParameterDigest", "StepMemory"]


class ParameterDigest(L.Callback):
    """At the end of ``fit``, each process writes ``rank<r>.json`` with a digest of its
    parameters and its step count: a distributed run is consistent when all agree."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.dirpath.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "global_step": trainer.global_step, "digest": digest.hexdigest()}
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class CpuTimeBudget(L.Callback):
    """Stops ``fit`` once its training has used ``seconds`` of this process's CPU time.

    A wall-clock budget (``trainer.max_time``) charges a run for whatever else the
    machine does meanwhile; the CPU time of the process (``time.process_time``: all
    its threads, user and system) does not, so runs compared on a shared machine get
    the same work. With one thread (``OMP_NUM_THREADS=1``) on a quiet machine the two
    budgets agree. The time used is kept in the checkpoint: a resumed run spends only
    what is left. The check runs after every optimiser step, so a run overshoots by at
    most one step.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise InputValueError(f"CpuTimeBudget: seconds must be > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.used = 0.0
        self._since: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = time.process_time()

    def _spent(self) -> float:
        if self._since is None:
            return self.used
        return self.used + time.process_time() - self._since

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._spent() >= self.seconds:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.used, self._since = self._spent(), None

    def state_dict(self) -> dict[str, float]:
        return {"used": self._spent()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.used = float(state_dict["used"])


class StepMemory(L.Callback):
    """Logs ``train/step_peak_mib``: how far the resident set rose above its level at
    the start of each training step (forward, backward, optimiser), in MiB.

    Before each step the allocator hands its free memory back (``malloc_trim``) and
    the kernel's high-water mark is reset, so the reading is the step's own working
    memory (the autograd graph, the solver's states), not what earlier steps or the
    loading of the data left behind. Linux only: elsewhere nothing is logged.
    """

    def __init__(self) -> None:
        self._before: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        release_free_memory()
        before = resident_kib("VmRSS")
        self._before = before if before is not None and reset_resident_peak() else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           *args: Any) -> None:
        peak = resident_kib("VmHWM")
        if self._before is None or peak is None:
            return
        pl_module.log("train/step_peak_mib", max(0.0, (peak - self._before) / 1024),
                      on_step=True, on_epoch=False, batch_size=1)
