"""``node-dada sweep``: tiny sweeps of each kind on real data (the embedded
Motorcycle scene), resuming, interruption and bad specs."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from node_dada import sweep
from node_dada.cli import main as cli_main
from node_dada.commands.sweep import main as sweep_main
from node_dada.data.motorcycle import load_motorcycle

# A 32 x 32 crop with depth edges (x8: 4 x 4 source pixels); short horizons.
DATA = {"dataset": "motorcycle", "scale": 8, "crop_size": 32, "crops": [200]}
# The eager path: no JIT compilation of the fused kernels inside the tests.
KERNELS = "never"


def write_spec(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def solver_spec(tmp_path: Path) -> Path:
    return write_spec(
        tmp_path / "tiny_solvers.yaml", name="tiny_solvers", kind="solver", data=DATA,
        kernels=KERNELS,
        fixed={"t_end": 4.8},
        grid=[{"method": "discrete", "step_size": 0.24},
              {"method": "euler", "step_size": [0.24, 0.48]},
              {"method": "rkc", "step_size": 2.4},
              {"method": "dopri5", "rtol": "1e-3", "atol": "1e-5"},
              {"method": "bosh3", "rtol": "1e-3", "atol": "1e-5", "max_nfe": 3}],
    )


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "cells.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def counting(monkeypatch):
    """Count (and optionally interrupt) the evaluations of a kind's runner."""

    originals = dict(sweep.RUNNERS)

    def install(kind: str, *, stop_after: int | None = None) -> list[str]:
        calls: list[str] = []
        original = originals[kind]

        def runner(cell, ctx):
            if stop_after is not None and len(calls) == stop_after:
                raise KeyboardInterrupt
            calls.append(cell.id)
            return original(cell, ctx)

        monkeypatch.setitem(sweep.RUNNERS, kind, runner)
        return calls

    return install


def test_solver_sweep_writes_table_summary_plots_and_skips_finished_cells(tmp_path, counting, capfd):
    spec, out = solver_spec(tmp_path), tmp_path / "out"
    assert sweep_main([str(spec), "--out", str(out)]) == 0
    table = {r["label"]: r for r in rows(out)}
    assert len(table) == 6
    discrete = table["method=discrete step_size=0.24"]
    assert discrete["status"] == "ok" and float(discrete["rel_l2_discrete"]) == 0.0
    assert int(discrete["nfe"]) == 20
    euler = table["method=euler step_size=0.24"]
    # one Euler step of the projected field = one discrete iteration up to O(h^2)
    assert euler["status"] == "ok" and float(euler["rel_l2_discrete"]) < 1e-3
    assert int(euler["nfe"]) == 20 and float(euler["mae_cm"]) > 0
    assert float(euler["seconds"]) > 0 and euler["peak_mib"] != ""
    h_rho = float(table["method=euler step_size=0.48"]["h_rho"])
    assert h_rho == pytest.approx(2 * float(euler["h_rho"]), rel=1e-4) and h_rho > 2
    assert int(table["method=rkc step_size=2.4"]["stages"]) >= 2
    blown = table["method=bosh3 rtol=0.001 atol=1e-05 max_nfe=3"]
    assert blown["status"] == "failed" and "max_nfe=3" in blown["error"]
    summary = (out / "README.md").read_text()
    assert f"node-dada sweep {spec} --out {out}" in summary
    assert "| dopri5 |" in summary and "failed" in summary
    for name in ("error_vs_nfe.png", "error_vs_time.png", "error_vs_memory.png"):
        assert (out / name).stat().st_size > 10_000
    assert "6 cell(s) run" in capfd.readouterr().err

    calls = counting("solver")
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 0
    assert calls == []
    assert len(rows(out)) == 6
    assert "0 cell(s) run, 6 already done" in capfd.readouterr().err


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, counting, capfd):
    spec, out = solver_spec(tmp_path), tmp_path / "out"
    counting("solver", stop_after=2)
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 130
    assert "interrupted after 2 new cell(s)" in capfd.readouterr().err
    first = [r["label"] for r in rows(out)]
    assert first == ["method=discrete step_size=0.24", "method=euler step_size=0.24"]
    assert "incomplete" in (out / "README.md").read_text()

    calls = counting("solver")
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 0
    assert len(calls) == 4 and not set(calls) & {r["cell"] for r in rows(out)[:2]}
    assert [r["label"] for r in rows(out)][:2] == first and len(rows(out)) == 6


def test_a_second_process_on_the_same_folder_loses_no_rows(tmp_path, monkeypatch):
    """Two processes running different cells of one folder: each reads the table again
    before adding its row, so neither overwrites the other's."""
    spec, out, other = solver_spec(tmp_path), tmp_path / "out", tmp_path / "other"
    assert sweep_main([str(spec), "--out", str(other), "--no-progress", "--max-cells", "3"]) == 0
    foreign = rows(other)[2]  # a row another process records meanwhile
    original = sweep.RUNNERS["solver"]
    ran: list[str] = []

    def runner(cell, ctx):
        sweep._write_cells(out / "cells.csv", [foreign], list(foreign))
        ran.append(cell.id)
        return original(cell, ctx)

    monkeypatch.setitem(sweep.RUNNERS, "solver", runner)
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--max-cells", "1"]) == 0
    assert len(ran) == 1 and ran[0] != foreign["cell"]
    assert {r["cell"] for r in rows(out)} == {ran[0], foreign["cell"]}
    assert "Cells: 2 recorded" in (out / "README.md").read_text()


def test_max_cells_stops_early_and_rerun_failed_retries_failures(tmp_path, counting):
    spec, out = solver_spec(tmp_path), tmp_path / "out"
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--max-cells", "3"]) == 0
    assert len(rows(out)) == 3
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 0
    calls = counting("solver")
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--rerun-failed"]) == 0
    assert [c.split(" max_nfe")[0] for c in calls] == ["method=bosh3 rtol=0.001 atol=1e-05"]
    # --replot rewrites the summary and plots from cells.csv alone
    calls.clear()
    for name in ("README.md", "error_vs_nfe.png"):
        (out / name).unlink()
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--replot"]) == 0
    assert calls == [] and (out / "error_vs_nfe.png").is_file()
    summary = (out / "README.md").read_text()
    assert "--replot" not in summary and "Cells: 6 recorded" in summary
    # each row records the invocation that produced it: three ran cells here
    assert summary.count("produced by") == 3 and "1 cell produced by `node-dada sweep" in summary


def test_gradient_sweep_measures_fidelity_and_records_failures(tmp_path):
    spec = write_spec(
        tmp_path / "tiny_gradients.yaml", name="tiny_gradients", kind="gradient", data=DATA,
        kernels=KERNELS,
        fixed={"method": "euler", "step_size": 0.24},
        gradient={"max_horizon": {"unrolled": 3}},
        grid=[{"t_end": [2.4, 9.6],
               "grad_mode": ["unrolled", "direct", "checkpointed", "adjoint", "adjoint_naive"]}],
    )
    out = tmp_path / "out"
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 0
    table = {(r["t_end"], r["grad_mode"]): r for r in rows(out)}
    assert len(table) == 10
    for mode in ("unrolled", "direct", "checkpointed"):
        # exact gradients of the discretised solve: float32 round-off from float64
        assert float(table["2.4", mode]["relative_error"]) < 1e-4, mode
    assert table["2.4", "unrolled"]["reference"] == "unrolled float64"
    assert table["2.4", "checkpointed"]["reference"] == "direct float64"
    assert 0 <= float(table["2.4", "checkpointed"]["one_minus_cosine"]) < 1e-9
    # the stable adjoint solves the continuous adjoint: close, not identical
    assert float(table["9.6", "adjoint"]["cosine"]) > 0.99
    assert 1e-12 < float(table["9.6", "adjoint"]["one_minus_cosine"]) < 1e-2
    assert int(table["9.6", "adjoint"]["nfe_backward"]) > int(table["9.6", "adjoint"]["nfe"])
    assert table["9.6", "unrolled"]["status"] == "skipped"
    assert "T=3" in table["9.6", "unrolled"]["error"]
    assert table["9.6", "adjoint_naive"]["status"] in ("ok", "diverged", "failed")
    # peak memory is recorded for every cell that ran; on a 32 x 32 crop it is a few
    # pages of RSS, too small to compare between horizons (benchmarks/gradient_modes.py
    # measures its growth on 256 x 256 in fresh processes)
    for key, row in table.items():
        if row["status"] == "ok":
            assert math.isfinite(float(row["peak_mib"])) and float(row["peak_mib"]) >= 0, key
    for name in ("fidelity_vs_horizon.png", "cost_vs_horizon.png"):
        assert (out / name).stat().st_size > 10_000


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Real Motorcycle crops as a folder of guide/depth pairs (one per split)."""
    root = tmp_path_factory.mktemp("pairs")
    guide, depth = load_motorcycle()
    for split, (top, left) in {"train": (256, 608), "val": (160, 384),
                               "test": (288, 96)}.items():
        (root / split / "guide").mkdir(parents=True)
        (root / split / "depth").mkdir(parents=True)
        g, d = guide[top:top + 32, left:left + 32], depth[top:top + 32, left:left + 32]
        cv2.imwrite(str(root / split / "guide" / "0.png"), g[..., ::-1])
        cv2.imwrite(str(root / split / "depth" / "0.png"),
                    np.nan_to_num(d).round().astype(np.uint16))
    return root


def test_fit_sweep_trains_tests_logs_and_skips(tmp_path, pairs, counting):
    args = ["--model.extractor", "light", "--model.lead_in", "4", "--model.train_iter", "4",
            "--model.lr", "1e-3", "--model.image_every_n_val_steps", "0",
            "--data.class_path", "node_dada.data.FolderDataModule",
            "--data.init_args.root", str(pairs), "--data.init_args.scale", "8",
            "--data.init_args.crop_size", "32", "--data.init_args.batch_size", "1",
            "--data.init_args.horizontal_flip", "false", "--data.init_args.max_rotation", "0",
            "--trainer.max_steps", "3", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "2", "--trainer.limit_val_batches", "0"]
    spec = write_spec(
        tmp_path / "tiny_training.yaml", name="tiny_training", kind="fit", fit={"args": args},
        grid=[{"solver": "discrete", "grad_mode": "unrolled"},
              {"solver": "ode", "grad_mode": "adjoint"},
              {"solver": "ode", "grad_mode": "no_such_mode"}],
    )
    out = tmp_path / "out"
    assert cli_main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    table = {r["label"]: r for r in rows(out)}
    for label in ("solver=discrete grad_mode=unrolled", "solver=ode grad_mode=adjoint"):
        row = table[label]
        assert row["status"] == "ok", row["error"]
        # steps are the optimiser's, not the logged ones (one of three here)
        assert int(row["steps"]) == 3 and float(row["test_mae_cm"]) > 0
        run = out / row["run"]
        assert list((run / "tb" / "fit").glob("events.out.tfevents.*"))
        assert list((run / "tb" / "test").glob("events.out.tfevents.*"))
        assert (run / "tb" / "fit" / "config.yaml").is_file()
        assert not (run / "ckpt").exists()  # checkpoints are not kept by default
    assert float(table["solver=ode grad_mode=adjoint"]["nfe_backward"]) > 0
    bad = table["solver=ode grad_mode=no_such_mode"]
    assert bad["status"] == "failed" and "grad_mode" in bad["error"]
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert "--model.extractor light" in (out / "README.md").read_text()

    calls = counting("fit")
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 0
    assert calls == []


def test_fit_cells_stop_on_a_cpu_budget_and_record_step_memory(tmp_path, pairs):
    """The horizon study's budget (process CPU time, kept across a resume) and its
    per-step memory reading, through the real CLI."""
    args = ["--model.extractor", "light", "--model.lead_in", "0", "--model.train_iter", "16",
            "--model.image_every_n_val_steps", "0",
            "--data.class_path", "node_dada.data.FolderDataModule",
            "--data.init_args.root", str(pairs), "--data.init_args.scale", "8",
            "--data.init_args.crop_size", "32", "--data.init_args.batch_size", "1",
            "--trainer.max_steps", "100000", "--trainer.max_epochs", "100000",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "0",
            "--trainer.callbacks+=node_dada.models.callbacks.CpuTimeBudget",
            "--trainer.callbacks.seconds=2",
            "--trainer.callbacks+=node_dada.models.callbacks.StepMemory"]
    spec = write_spec(tmp_path / "budget.yaml", name="budget", kind="fit", fit={"args": args},
                      grid=[{"solver": "discrete", "grad_mode": "unrolled"}])
    out = tmp_path / "out"
    assert cli_main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    (row,) = rows(out)
    assert row["status"] == "ok", row["error"]
    # stopped by the budget, not by max_steps; the CPU time includes setup and the test
    assert 1 <= int(row["steps"]) < 100000
    assert 2 <= float(row["fit_cpu_s"]) < 60
    assert 0 <= float(row["step_peak_mib"]) < 1000
    assert "step peak MiB" in (out / "README.md").read_text()


def test_cpu_time_budget_resumes_with_what_is_left():
    from node_dada.models.callbacks import CpuTimeBudget

    budget = CpuTimeBudget(seconds=10.0)
    budget.load_state_dict({"used": 9.5})
    assert budget.state_dict()["used"] == pytest.approx(9.5)

    class Trainer:
        should_stop = False

    budget.on_train_start(Trainer(), None)
    budget.on_train_batch_end(Trainer())
    trainer = Trainer()
    end = time.process_time() + 0.6
    while time.process_time() < end:  # spend CPU time, not wall time
        pass
    budget.on_train_batch_end(trainer)
    assert trainer.should_stop
    with pytest.raises(ValueError, match="seconds must be > 0"):
        CpuTimeBudget(seconds=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"kind": "sideways"}, "kind expected one of solver, gradient, fit"),
     ({"colour": "red"}, "unknown key 'colour'"),
     ({"grid": [{"method": "euler", "step": 0.24}]}, "unknown key 'step' for kind 'solver'"),
     ({"data": dict(DATA, crop=32)}, "unknown key 'crop' in data"),
     ({"grid": [{"method": "warp_drive"}]}, "method expected one of"),
     ({"grid": [{"method": "euler", "rtol": "tight"}]}, "rtol expected a number"),
     ({"fit": {"args": []}}, "section 'fit' belongs to kind 'fit'"),
     ({"grid": []}, "non-empty")],
)
def test_a_bad_spec_exits_2_with_one_line(tmp_path, capfd, change, message):
    spec = {"name": "bad", "kind": "solver", "data": DATA, "fixed": {"t_end": 1},
            "grid": [{"method": "euler"}]} | change
    path = write_spec(tmp_path / "bad.yaml", **spec)
    assert sweep_main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("node-dada sweep: error:"), err
    assert message in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_yaml_missing_file_and_changed_data_are_one_line_errors(tmp_path, capfd):
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [solver\n")
    assert sweep_main([str(broken)]) == 2
    assert sweep_main([str(tmp_path / "absent.yaml")]) == 2
    assert cli_main(["sweep", str(tmp_path / "absent.yaml")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("node-dada sweep: error:") for line in err)
    spec, out = solver_spec(tmp_path), tmp_path / "out"
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--max-cells", "1"]) == 0
    changed = yaml.safe_load(spec.read_text())
    changed["data"]["crops"] = [201]
    spec.write_text(yaml.safe_dump(changed))
    capfd.readouterr()
    assert sweep_main([str(spec), "--out", str(out), "--no-progress"]) == 2
    assert "recorded with other data" in capfd.readouterr().err


def test_grid_expansion_crosses_lists_unites_subgrids_and_adds_fixed():
    cells = sweep.expand_grid(
        [{"method": ["euler", "rk4"], "step_size": [0.1, 0.2]},
         {"method": "dopri5", "rtol": 1e-3},
         {"method": "euler", "step_size": 0.1}],  # a duplicate of the first sub-grid's
        {"t_end": 10.0, "step_size": 0.24},
    )
    assert [c.label for c in cells] == [
        "method=euler step_size=0.1", "method=euler step_size=0.2",
        "method=rk4 step_size=0.1", "method=rk4 step_size=0.2", "method=dopri5 rtol=0.001"]
    assert cells[-1].params == {"method": "dopri5", "rtol": 1e-3, "t_end": 10.0,
                                "step_size": 0.24}
    assert cells[0].id == "method=euler step_size=0.1 t_end=10"


def test_list_shows_the_state_of_each_cell(tmp_path, capsys):
    spec, out = solver_spec(tmp_path), tmp_path / "out"
    assert sweep_main([str(spec), "--out", str(out), "--no-progress", "--max-cells", "1"]) == 0
    capsys.readouterr()
    assert sweep_main([str(spec), "--out", str(out), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ok", "method=discrete", "step_size=0.24"]
    assert all(line.startswith("todo") for line in lines[1:]) and len(lines) == 6


def test_without_out_a_sweep_writes_under_runs_not_into_results(tmp_path, monkeypatch):
    spec = solver_spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(spec), "--no-progress", "--max-cells", "1"]) == 0
    assert len(rows(tmp_path / "runs" / "sweeps" / "tiny_solvers")) == 1
    assert not (tmp_path / "results").exists()
