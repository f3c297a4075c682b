"""Every shipped LightningCLI config parses: known keys, valid values, linked options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from node_dada.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(path.relative_to(ROOT) for path in (ROOT / "configs").rglob("*.yaml")
                 if "sweeps" not in path.parts)


def test_configs_exist_for_every_benchmark_and_the_shipped_models():
    names = {path.as_posix() for path in CONFIGS}
    for dataset in ("middlebury", "nyuv2", "diml"):
        assert f"configs/{dataset}_x8_ode_adjoint.yaml" in names
    assert "configs/trained/middlebury_x8_discrete.yaml" in names
    assert "configs/trained/middlebury_x8_ode_adjoint.yaml" in names


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_config_parses(config, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as done:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "data:" in printed and "trainer:" in printed


def _printed(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["fit", *argv, "--print_config"])
    assert done.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_base_files_are_read_first_in_order_and_the_config_overrides_them(tmp_path, capsys):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "first.yaml").write_text(
        "model:\n  lr: 1.0e-3\n  train_iter: 7\ntrainer:\n  max_epochs: 3\n")
    (tmp_path / "common" / "second.yaml").write_text("model:\n  lr: 2.0e-3\n")
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("base: [common/first.yaml, common/second.yaml]\n"
                    "model:\n  lead_in: 11\n")
    config = _printed(["--config", str(leaf)], capsys)
    assert config["model"]["lr"] == 2.0e-3  # the later base wins
    assert config["model"]["train_iter"] == 7 and config["trainer"]["max_epochs"] == 3
    assert config["model"]["lead_in"] == 11
    # the same as the files given one after the other on the command line
    explicit = _printed(["--config", str(tmp_path / "common" / "first.yaml"),
                         "--config", str(tmp_path / "common" / "second.yaml"),
                         "--model.lead_in", "11"], capsys)
    assert config == explicit


def test_bad_base_files_give_one_clear_error(tmp_path):
    from node_dada.training import ConfigError, expand_configs

    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="base 'missing.yaml' does not exist"):
        expand_configs(["fit", "--config", str(leaf)])
    leaf.write_text("base: leaf.yaml\n")
    with pytest.raises(ConfigError, match="include it again"):
        expand_configs(["fit", "--config", str(leaf)])
    leaf.write_text("base: {model: 1}\n")
    with pytest.raises(ConfigError, match="expected a file or a list"):
        expand_configs(["fit", f"--config={leaf}"])
    plain = tmp_path / "plain.yaml"
    plain.write_text("model:\n  lr: 1.0\n")
    assert expand_configs(["fit", "-c", str(plain), "--model.lr", "2"]) == [
        "fit", "--config", str(plain.resolve()), "--model.lr", "2"]


def test_the_benchmark_configs_state_only_what_differs():
    """Every dataset x scale x solver config is composed from configs/base/."""
    for dataset in ("middlebury", "nyuv2", "diml"):
        for scale in (4, 8, 16, 32):
            for solver in ("discrete", "ode_adjoint", "ode_checkpointed", "ode_rkc"):
                path = ROOT / "configs" / f"{dataset}_x{scale}_{solver}.yaml"
                content = yaml.safe_load(path.read_text())
                assert content["base"] == ["base/cpu.yaml", f"base/{dataset}.yaml"], path
                assert content["data"] == {"init_args": {"scale": scale}}, path
                assert set(content) == {"base", "model", "data", "trainer"}, path
