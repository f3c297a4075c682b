"""Interrupted training: SIGKILLed ``fit`` runs resume to the uninterrupted
result, checkpoint writes are atomic, and the same seed gives the same numbers.

The runs are real ``python -m node_dada.cli fit`` processes on a folder of real
Motorcycle crops (64 x 64, x8, light extractor, random flips/rotations and lead-ins:
every source of randomness the training has), single-threaded so that two runs
are bit-comparable. The default suite kills once; ``make test-slow`` kills three
times. Tolerance: none, the resumed parameters and optimizer state must equal the
uninterrupted ones bit for bit, and so must the test MAE.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from node_dada.cli import main
from node_dada.data import FolderDataModule
from node_dada.models.checkpointing import AtomicCheckpointIO, atomic_save
from node_dada.models.inference import load_checkpoint_file, load_model

ROOT = Path(__file__).resolve().parents[1]
#: Seed of the kill delays (recorded in the report).
KILL_SEED = 10
#: Longest wait for a run to write a checkpoint (a loaded 2-core machine is slow).
WAIT_S = 240.0
_STEP = re.compile(r"step=(\d+)")


def data_args(pairs: Path) -> list[str]:
    return [
        "--data.class_path", "node_dada.data.FolderDataModule",
        "--data.init_args.root", str(pairs), "--data.init_args.scale", "8",
        "--data.init_args.crop_size", "48", "--data.init_args.batch_size", "1",
        "--data.init_args.horizontal_flip", "true", "--data.init_args.max_rotation", "10",
    ]


def fit_args(pairs: Path, out: Path, steps: int) -> list[str]:
    """A tiny deterministic run; checkpoints at every epoch end (Lightning's default)."""
    return [
        "fit", "--seed_everything", "7",
        "--model.extractor", "light", "--model.lead_in", "20", "--model.train_iter", "6",
        "--model.lr", "2e-3", "--model.image_every_n_val_steps", "0", *data_args(pairs),
        "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu",
        "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out), "--checkpoint.dirpath", str(out / "ckpt"),
        "--ckpt_path", "last",
    ]


def launch(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with log.open("ab") as stream:
        return subprocess.Popen([sys.executable, "-m", "node_dada.cli", *args], cwd=ROOT,
                                env=env, stdout=stream, stderr=subprocess.STDOUT)


def newest_step(folder: Path) -> int:
    """Global step of the newest ``epoch=E-step=S.ckpt`` in ``folder`` (0: none yet)."""
    steps = [int(m.group(1)) for p in folder.glob("epoch=*.ckpt")
             if (m := _STEP.search(p.name))] if folder.is_dir() else []
    return max(steps, default=0)


def state_digest(path: Path) -> str:
    """Parameters and optimizer state of a checkpoint, hashed."""
    content = load_checkpoint_file(path)
    digest = hashlib.sha256()
    for name, tensor in sorted(content["state_dict"].items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    for state in content["optimizer_states"][0]["state"].values():
        for key in sorted(state):
            digest.update(torch.as_tensor(state[key]).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_mae(pairs: Path, checkpoint: Path) -> float:
    """Test-split MAE (cm) of a checkpoint, through the Lightning test loop."""
    datamodule = FolderDataModule(pairs, scale=8, crop_size=48, batch_size=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    metrics = trainer.test(load_model(checkpoint), datamodule=datamodule, verbose=False)
    return float(metrics[0]["test/mae_cm"])


test_mae.__test__ = False  # a helper, not a test


def kill_and_resume(pairs: Path, out: Path, *, kills: int, steps: int) -> dict:
    """SIGKILL a run ``kills`` times at random points, resuming each time with
    ``--ckpt_path last``, then let it finish; also run the same command uninterrupted,
    alongside."""
    rng = random.Random(KILL_SEED)
    reference = launch(fit_args(pairs, out / "reference", steps), out / "reference.log")
    chain = out / "chain"
    chain.mkdir()
    trials = []
    running = [reference]
    try:
        for _ in range(kills):
            start = newest_step(chain / "ckpt")
            process = launch(fit_args(pairs, chain, steps), out / "chain.log")
            running.append(process)
            deadline = time.monotonic() + WAIT_S
            while newest_step(chain / "ckpt") <= start:
                assert process.poll() is None, (out / "chain.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint written in time"
                time.sleep(0.05)
            delay = rng.uniform(0.0, 0.5)
            time.sleep(delay)
            finished = process.poll() is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            # Whatever the kill interrupted, every checkpoint on disk loads (weights-only).
            # (A kill between the epoch file and last.ckpt leaves last.ckpt one epoch old.)
            steps_on_disk = sorted(int(load_checkpoint_file(path)["global_step"])
                                   for path in (chain / "ckpt").glob("*.ckpt"))
            trials.append({"resumed_from_step": start, "killed_after_s": round(delay, 3),
                           "checkpoint_steps_on_disk": steps_on_disk,
                           "finished_before_kill": finished})
        # The last resume runs in this process (one interpreter start-up less), with one
        # thread like the subprocesses, so that the numbers stay bit-comparable.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main(fit_args(pairs, chain, steps)) == 0
        finally:
            torch.set_num_threads(threads)
        assert reference.wait(timeout=WAIT_S * 2) == 0, \
            (out / "reference.log").read_text()[-3000:]
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    return {"kills": trials, "steps": steps}


def _check_resumed_equals_reference(pairs: Path, out: Path, result: dict) -> dict:
    reference, resumed = out / "reference" / "ckpt" / "last.ckpt", out / "chain" / "ckpt" / "last.ckpt"
    assert load_checkpoint_file(resumed)["global_step"] == result["steps"]
    assert state_digest(resumed) == state_digest(reference)
    mae_reference, mae_resumed = test_mae(pairs, reference), test_mae(pairs, resumed)
    assert mae_resumed == mae_reference  # tolerance 0: identical parameters
    return {**result, "test_mae_cm_reference": mae_reference,
            "test_mae_cm_resumed": mae_resumed, "identical_state": True}


def test_sigkill_once_and_resume_gives_the_uninterrupted_result(pairs, tmp_path,
                                                                 record_property):
    result = kill_and_resume(pairs, tmp_path, kills=1, steps=8)
    assert not any(t["finished_before_kill"] for t in result["kills"])
    summary = _check_resumed_equals_reference(pairs, tmp_path, result)
    record_property("kill_resume", json.dumps(summary))


@pytest.mark.slow
def test_sigkill_three_times_and_resume_gives_the_uninterrupted_result(pairs, tmp_path,
                                                                        record_property):
    result = kill_and_resume(pairs, tmp_path, kills=3, steps=16)
    assert not any(t["finished_before_kill"] for t in result["kills"])
    summary = _check_resumed_equals_reference(pairs, tmp_path, result)
    record_property("kill_resume", json.dumps(summary))


# --- atomic writes ---------------------------------------------------------------------


_TAG = 1_000_000  # bytes of per-write content


def _write_forever(path: str, payload: torch.Tensor) -> None:  # a forked child, until killed
    torch.set_num_threads(1)  # no OpenMP region in a forked child
    counter = 0
    while True:
        counter += 1
        atomic_save({"counter": counter, "tag": bytes([counter % 256]) * _TAG,
                     "payload": payload}, path)


def test_kill_during_atomic_writes_never_leaves_an_unloadable_file(tmp_path, record_property):
    path = tmp_path / "last.ckpt"
    payload = torch.rand(1_000_000)  # built here: the child only serialises (~4 MB a write)
    atomic_save({"counter": 0, "tag": bytes(_TAG), "payload": payload}, path)
    context = multiprocessing.get_context("fork")
    rng = random.Random(KILL_SEED)
    counters = []
    for _ in range(5):
        child = context.Process(target=_write_forever, args=(str(path), payload), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.2, 0.8))  # a write takes ~20-60 ms: kills land mid-write
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        content = torch.load(path, weights_only=True)
        assert content["tag"] == bytes([content["counter"] % 256]) * _TAG
        assert torch.equal(content["payload"], payload)
        counters.append(int(content["counter"]))
    assert max(counters) > 0, "no write finished before a kill: the test proved nothing"
    atomic_save({"counter": -1, "tag": b"", "payload": torch.zeros(1)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # stale temp files cleaned
    record_property("atomic_kills", json.dumps({"kills": len(counters), "writes_seen": counters}))


def test_ckpt_path_last_takes_a_checkpoint_newer_than_last_ckpt(tmp_path):
    """A kill between an epoch's checkpoint and last.ckpt: resume from the newer file."""
    from node_dada.training import _newest_checkpoint

    assert _newest_checkpoint("last", tmp_path) == "last"  # nothing there: Lightning decides
    (tmp_path / "last.ckpt").write_bytes(b"old")
    assert _newest_checkpoint("last", tmp_path) == str(tmp_path / "last.ckpt")
    newer = tmp_path / "epoch=3-step=8.ckpt"
    newer.write_bytes(b"new")
    os.utime(newer, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert _newest_checkpoint("last", tmp_path) == str(newer)
    (tmp_path / "last.ckpt").unlink()
    assert _newest_checkpoint("last", tmp_path) == str(newer)
    assert _newest_checkpoint("best", tmp_path) == "best"
    assert _newest_checkpoint("last", None) == "last"


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def interrupted(obj, stream, *args, **kwargs):  # half a file, then the "kill"
        stream.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# --- determinism -----------------------------------------------------------------------


def test_same_seed_and_config_give_identical_metrics(pairs, tmp_path, monkeypatch,
                                                     record_property):
    """Two in-process runs with the same seed: identical parameters and test MAE (and
    the CLI writes its checkpoints through the atomic writer)."""
    from node_dada.models import checkpointing

    written = []
    original = checkpointing.atomic_save
    monkeypatch.setattr(checkpointing, "atomic_save",
                        lambda obj, path: written.append(Path(path).name) or original(obj, path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digests, maes = [], []
        for name in ("first", "second"):
            out = tmp_path / name
            assert main(fit_args(pairs, out, 4)) == 0
            digests.append(state_digest(out / "ckpt" / "last.ckpt"))
            maes.append(test_mae(pairs, out / "ckpt" / "last.ckpt"))
    finally:
        torch.set_num_threads(threads)
    assert digests[0] == digests[1]
    assert maes[0] == maes[1]
    assert "last.ckpt" in written
    record_property("determinism", json.dumps({"runs": 2, "steps": 4, "test_mae_cm": maes}))


def test_ckpt_path_last_finds_the_run_without_a_checkpoint_dirpath(tmp_path):
    """The shipped configs set no checkpoint.dirpath: ``last`` searches the logger's
    version folders, and test/validate/predict refuse to run without a checkpoint."""
    from jsonargparse import Namespace

    from node_dada.errors import DataError
    from node_dada.training import _newest_checkpoint

    logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                       init_args=Namespace(save_dir=str(tmp_path / "runs"), name="x8"))
    config = Namespace(trainer=Namespace(default_root_dir=str(tmp_path), logger=logger))
    assert _newest_checkpoint("last", None, config) == "last"  # fit: start a new run
    with pytest.raises(DataError, match=r"found no checkpoint in .*runs/x8.*train first"):
        _newest_checkpoint("last", None, config, required=True)
    old = tmp_path / "runs" / "x8" / "version_0" / "checkpoints" / "last.ckpt"
    new = tmp_path / "runs" / "x8" / "version_1" / "checkpoints" / "last.ckpt"
    for path, offset in ((old, 0), (new, 10**9)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(time.time_ns() + offset, time.time_ns() + offset))
    (tmp_path / "runs" / "x8" / "version_2").mkdir()  # a failed start: no checkpoints
    assert _newest_checkpoint("last", None, config, required=True) == str(new)
    # no logger: Lightning's default folder under default_root_dir
    plain = Namespace(trainer=Namespace(default_root_dir=str(tmp_path), logger=None))
    default = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0.ckpt"
    default.parent.mkdir(parents=True)
    default.write_bytes(b"x")
    assert _newest_checkpoint("last", None, plain) == str(default)


def test_test_with_ckpt_path_last_and_no_run_is_one_line_and_exit_2(tmp_path, capfd):
    from node_dada.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {extractor: light}\n"
        "data: {class_path: node_dada.data.FolderDataModule, init_args: {root: "
        f"{tmp_path}}}}}\n"
        f"trainer: {{default_root_dir: {tmp_path}, logger: false}}\n")
    assert main(["test", "--config", str(config), "--ckpt_path", "last"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ckpt_path last: found no checkpoint" in err[0]
