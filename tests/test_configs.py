"""Every shipped LightningCLI config parses: known keys, valid values, linked options."""

from __future__ import annotations

from pathlib import Path

import pytest

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
