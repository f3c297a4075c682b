"""Lightning callbacks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L

__all__ = ["ParameterDigest"]


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
