"""Numerical faults in training: a non-finite loss or gradient skips the step
(bounded, logged with its origin) or stops the run with the last good checkpoint kept;
an adaptive solver over its NFE budget is reported, not hung.

Faults are injected into a real in-process ``node-dada fit`` on real Motorcycle crops
by wrapping ``DADAModule.forward``: a NaN prediction at chosen steps (as a diverging
solver would give) or a term whose value is 0 but whose gradient is NaN.
"""

from __future__ import annotations

import json
import logging
import math
import time

import pytest
import torch

from node_dada.cli import main
from node_dada.models.dada_module import DADAModule
from node_dada.models.inference import load_checkpoint_file


def args(root, out, *extra: str, steps: int = 4, solver: str = "discrete",
         method: str = "euler", grad_mode: str = "unrolled", lead_in: int = 0) -> list[str]:
    return [
        "fit", "--model.extractor", "light", "--model.solver", solver,
        "--model.method", method, "--model.grad_mode", grad_mode,
        "--model.lead_in", str(lead_in), "--model.train_iter", "4",
        "--model.image_every_n_val_steps", "0",
        "--data.class_path", "node_dada.data.FolderDataModule",
        "--data.init_args.root", str(root), "--data.init_args.scale", "8",
        "--data.init_args.crop_size", "48", "--data.init_args.batch_size", "1",
        "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu",
        "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", str(out), "--checkpoint.dirpath", str(out / "ckpt"),
        *extra,
    ]


def inject(monkeypatch, steps: set[int], *, kind: str = "loss") -> None:
    """Make training forward passes at global ``steps`` give a NaN loss or gradient."""
    original = DADAModule.forward

    def forward(self, batch, *, train=False):
        depth, aux = original(self, batch, train=train)
        if train and self.global_step in steps:
            if kind == "loss":
                depth = depth * math.nan
            else:  # value 0, gradient d sqrt(x)/dx at 0 = inf, times 0 = NaN
                depth = depth + 0.0 * (self.log_kappa - self.log_kappa.detach()).sqrt()
        return depth, aux

    monkeypatch.setattr(DADAModule, "forward", forward)


def adam_steps(path) -> int:
    state = load_checkpoint_file(path)["optimizer_states"][0]["state"]
    return int(next(iter(state.values()))["step"])


def all_finite(path) -> bool:
    return all(torch.isfinite(t).all() for t in load_checkpoint_file(path)["state_dict"].values()
               if t.is_floating_point())


def test_nonfinite_losses_are_skipped_up_to_the_bound(pairs, tmp_path, monkeypatch, caplog,  # noqa: F811
                                                       record_property):
    inject(monkeypatch, {1, 2})
    with caplog.at_level(logging.WARNING, logger="node_dada.models.dada_module"):
        assert main(args(pairs, tmp_path, "--model.max_nonfinite_steps", "2")) == 0
    messages = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(messages) == 2
    assert "step 1, discrete solver (unrolled), lead-in" in messages[0]
    assert "step skipped, no parameter update (1 of at most 2)" in messages[0]
    last = tmp_path / "ckpt" / "last.ckpt"
    assert load_checkpoint_file(last)["global_step"] == 4
    assert adam_steps(last) == 2  # 4 steps, 2 of them without an update
    assert all_finite(last)
    record_property("nonfinite", json.dumps({"case": "loss NaN at steps 1, 2; bound 2",
                                             "ended": "completed, 2 steps skipped"}))


def test_too_many_nonfinite_losses_stop_with_the_last_good_checkpoint(pairs, tmp_path,  # noqa: F811
                                                                       monkeypatch, capfd):
    inject(monkeypatch, {2, 3})
    code = main(args(pairs, tmp_path, "--model.max_nonfinite_steps", "1"))
    assert code == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("node-dada: error: non-finite training loss (nan) at step 3, "
                              "discrete solver")
    assert "more than max_nonfinite_steps=1" in err[-1]
    assert "Traceback" not in "\n".join(err)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert load_checkpoint_file(last)["global_step"] == 2  # the end of the last good epoch
    assert all_finite(last)


def test_nonfinite_gradient_is_dropped_and_named(pairs, tmp_path, monkeypatch, caplog):  # noqa: F811
    inject(monkeypatch, {1}, kind="gradient")
    before = {}

    original = DADAModule.on_before_optimizer_step

    def spy(self, optimizer):
        before.setdefault(self.global_step, self.log_kappa.detach().clone())
        original(self, optimizer)

    monkeypatch.setattr(DADAModule, "on_before_optimizer_step", spy)
    with caplog.at_level(logging.WARNING, logger="node_dada.models.dada_module"):
        assert main(args(pairs, tmp_path, "--model.max_nonfinite_steps", "1", steps=3)) == 0
    messages = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(messages) == 1 and messages[0].startswith("non-finite gradient of log_kappa at step 1")
    last = tmp_path / "ckpt" / "last.ckpt"
    assert adam_steps(last) == 2 and all_finite(last)


def test_ode_fault_names_method_and_lead_in_time(pairs, tmp_path, monkeypatch, capfd):  # noqa: F811
    inject(monkeypatch, {0})
    code = main(args(pairs, tmp_path, solver="ode", method="rk4", grad_mode="checkpointed",
                     lead_in=10, steps=1))
    assert code == 2
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert "non-finite training loss (nan) at step 0, ode solver method 'rk4'" in line
    assert "grad_mode 'checkpointed', lead-in t=" in line and "of T_pre=2.4" in line


def test_adaptive_solver_over_its_budget_is_reported_not_hung(pairs, tmp_path, capfd):  # noqa: F811
    start = time.monotonic()
    code = main(args(pairs, tmp_path, "--model.max_nfe", "5", "--model.rtol", "1e-9",
                     "--model.atol", "1e-11", solver="ode", method="dopri5",
                     grad_mode="direct", lead_in=0, steps=2))
    assert code == 2
    assert time.monotonic() - start < 120
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("node-dada: error: solve_ode: the forward pass exceeded the budget "
                           "of max_nfe=5")
    assert "(training, step 0, ode solver method 'dopri5'" in line


def test_max_nonfinite_steps_must_not_be_negative():
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        DADAModule(max_nonfinite_steps=-1)
