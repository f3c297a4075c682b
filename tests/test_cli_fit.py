"""The real CLI in-process: fit, TensorBoard, checkpoint, resume, test, predict, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from node_dada.cli import main
from node_dada.data.motorcycle import load_motorcycle


def fit_args(pairs: Path, out: Path, *extra: str, solver="discrete", grad_mode="unrolled",
             method="euler", steps=12) -> list[str]:
    return [
        "--model.extractor", "light", "--model.solver", solver, "--model.grad_mode", grad_mode,
        "--model.method", method, "--model.lead_in", "0", "--model.train_iter", "6",
        "--model.lr", "2e-3", "--model.image_every_n_val_steps", "1",
        "--data.class_path", "node_dada.data.FolderDataModule",
        "--data.init_args.root", str(pairs), "--data.init_args.scale", "8",
        "--data.init_args.crop_size", "64", "--data.init_args.batch_size", "2",
        "--data.init_args.horizontal_flip", "false", "--data.init_args.max_rotation", "0",
        "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu",
        "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(out),
        "--trainer.logger.class_path", "lightning.pytorch.loggers.TensorBoardLogger",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", "tb",
        "--checkpoint.dirpath", str(out / "ckpt"), *extra,
    ]


def scalars(out: Path) -> EventAccumulator:
    files = sorted(out.glob("tb/version_*/events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {out}"
    accumulator = EventAccumulator(str(files[-1].parent), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize(
    ("solver", "grad_mode", "method"),
    [("discrete", "unrolled", "euler"), ("ode", "adjoint", "euler"),
     ("ode", "checkpointed", "euler"), ("ode", "direct", "rk4"), ("ode", "adjoint", "rkc")],
)
def test_fit_lowers_the_loss_and_logs_coefficients(pairs, tmp_path, solver, grad_mode, method):
    assert main(["fit", *fit_args(pairs, tmp_path, solver=solver, grad_mode=grad_mode,
                                  method=method)]) == 0
    events = scalars(tmp_path)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    tags = events.Tags()
    assert {"train/kappa", "train/nfe_forward", "val/mae_cm", "val/rmse_cm"} <= set(tags["scalars"])
    if solver == "ode":
        assert "train/nfe_backward" in tags["scalars"]
    assert {"val_0/cv", "val_0/ch", "val_0/prediction", "val_0/error"} <= set(tags["images"])
    assert {"val_0/cv_hist"} <= set(tags["histograms"])
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()


def test_naive_adjoint_failure_stops_training_with_one_line(pairs, tmp_path, capfd):
    code = main(["fit", *fit_args(pairs, tmp_path, solver="ode", grad_mode="adjoint_naive",
                                  steps=2, ), "--model.train_iter", "400"])
    assert code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("node-dada: error: adjoint_naive")


def test_resume_from_last_then_test_and_predict(pairs, tmp_path):
    assert main(["fit", *fit_args(pairs, tmp_path, steps=4)]) == 0
    assert main(["fit", *fit_args(pairs, tmp_path, "--ckpt_path", "last", steps=6)]) == 0
    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["global_step"] == 6
    assert main(["test", *fit_args(pairs, tmp_path), "--ckpt_path", str(checkpoint)]) == 0
    assert main(["predict", *fit_args(pairs, tmp_path), "--ckpt_path", str(checkpoint)]) == 0


def test_print_config_reproduces_the_run(pairs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *fit_args(pairs, tmp_path), "--print_config"])
    config = capsys.readouterr().out
    path = tmp_path / "config.yaml"
    path.write_text(config)
    assert "solver: discrete" in config and "FolderDataModule" in config
    assert main(["fit", "--config", str(path), "--trainer.max_steps", "2"]) == 0


def test_predict_on_a_users_files_learning_free(tmp_path):
    guide, depth = load_motorcycle()
    g, d = guide[:128, :192], depth[:128, :192]
    low = np.nan_to_num(d.reshape(16, 8, 24, 8).mean(axis=(1, 3))).round().astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb.png"), g[..., ::-1])
    cv2.imwrite(str(tmp_path / "depth.png"), low)
    code = main(["predict", "--guide", str(tmp_path / "rgb.png"), "--source",
                 str(tmp_path / "depth.png"), "--scale", "8"])
    assert code == 0
    out = cv2.imread(str(tmp_path / "depth_x8.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (128, 192)
    assert (tmp_path / "depth_x8_preview.png").stat().st_size > 5000
    valid = np.isfinite(d)
    assert np.abs(out[valid] - d[valid]).mean() < 100  # mm, the scene is 2-5 m away


def test_bad_config_key_is_one_line_exit_2(pairs, tmp_path, capfd):
    assert main(["fit", *fit_args(pairs, tmp_path), "--model.no_such_key", "1"]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("node-dada: error: ") and "no_such_key" in lines[-1]


def test_ddp_two_processes_agree(pairs, tmp_path):
    """A 2-process DDP fit (gloo on CPU): both ranks end with the same parameters."""
    args = fit_args(pairs, tmp_path, steps=3) + [
        "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--trainer.callbacks+=node_dada.models.callbacks.ParameterDigest",
        f"--trainer.callbacks.dirpath={tmp_path / 'digests'}",
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "node_dada.cli", "fit", *args],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads((tmp_path / "digests" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["world_size"] == 2
    assert records[0]["digest"] == records[1]["digest"]
    assert records[0]["global_step"] == records[1]["global_step"] == 3


def test_last_checkpoint_follows_every_epoch_with_a_monitored_metric(pairs, tmp_path):
    """With a monitor and validation every other epoch, Lightning alone leaves
    last.ckpt at the last epoch that saved a top-k checkpoint; a resume would go
    back there. Here it must hold the final step."""
    import torch

    args = fit_args(pairs, tmp_path, "--checkpoint.monitor", "val/mae_cm",
                    "--checkpoint.save_top_k", "1", "--trainer.check_val_every_n_epoch", "2",
                    "--trainer.max_epochs", "3", steps=-1)
    assert main(["fit", *args]) == 0
    steps_per_epoch = len(list((pairs / "train" / "guide").iterdir())) // 2
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 3 * steps_per_epoch
    best = [p for p in (tmp_path / "ckpt").iterdir() if p.name != "last.ckpt"]
    assert len(best) == 1  # the top-k checkpoint of the one validated epoch


def test_fit_resumed_with_ckpt_path_last_continues_in_its_version_folder(pairs, tmp_path):
    """Without --checkpoint.dirpath (the shipped configs): the resumed run logs and
    checkpoints into the folder it resumes, keeping the best score so far."""
    import torch

    args = [a for a in fit_args(pairs, tmp_path, "--checkpoint.monitor", "val/mae_cm",
                                "--checkpoint.filename", "best-{epoch}", steps=-1)
            if a not in ("--checkpoint.dirpath", str(tmp_path / "ckpt"))]
    assert main(["fit", *args, "--trainer.max_epochs", "1"]) == 0
    assert main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"]) == 0
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["version_0"]
    folder = tmp_path / "tb" / "version_0"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["epoch"] == 1
    state = next(v for k, v in last["callbacks"].items() if "Checkpoint" in k)
    assert state["best_model_score"] is not None
    assert state["dirpath"] == str(folder / "checkpoints")
