"""The data root: datasets named relative to $NODE_DADA_DATA (else ./data), and no
shipped code or config that points at a folder only the project's machines have."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from node_dada.data import MiddleburyScenes
from node_dada.data.download import CATALOGUE
from node_dada.data.nyuv2 import NYUv2Scenes
from node_dada.data.root import DATA_ENV, data_root, describe_search, resolve_data_path
from node_dada.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_the_data_root_is_the_variable_else_data_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert data_root() == Path("data")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.setenv(DATA_ENV, "  ")
    assert data_root() == Path("data")


def test_a_relative_path_is_read_from_the_working_directory_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work" / "scenes").mkdir(parents=True)
    (tmp_path / "store" / "scenes").mkdir(parents=True)
    (tmp_path / "store" / "only_here").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "store"))
    assert resolve_data_path("scenes") == Path("scenes")
    assert resolve_data_path("only_here") == tmp_path / "store" / "only_here"
    assert resolve_data_path(tmp_path / "nowhere") == tmp_path / "nowhere"
    assert resolve_data_path("nowhere") == Path("nowhere")
    monkeypatch.delenv(DATA_ENV)
    (tmp_path / "work" / "data" / "fetched").mkdir(parents=True)
    assert resolve_data_path("fetched") == Path("data") / "fetched"


def test_a_missing_dataset_names_both_places_and_how_to_get_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError) as error:
        MiddleburyScenes("middlebury0506/ThirdSize")
    message = str(error.value)
    assert "middlebury0506/ThirdSize (working directory)" in message
    assert "data/middlebury0506/ThirdSize" in message and DATA_ENV in message
    assert "node-dada data download" in message
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "store"))
    assert f"{tmp_path / 'store' / 'x'} (${DATA_ENV})" in describe_search("x")
    with pytest.raises(DataError, match=f"looked for nyu_depth_v2 .*\\${DATA_ENV}"):
        len(NYUv2Scenes("nyu_depth_v2", split="test"))


def test_middlebury_scenes_are_found_under_the_data_root(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    scenes = MiddleburyScenes(["middlebury0506/ThirdSize", "middlebury2014"], split="test",
                              missing_dmin="skip")
    assert scenes.roots[0] == shared_data / "middlebury0506" / "ThirdSize"
    assert len(scenes) > 0


def _data_section(path: Path) -> dict:
    """The ``data`` section of a config, its ``base:`` files merged in first."""
    content = yaml.safe_load(path.read_text())
    bases = content.get("base") or []
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, _data_section(path.parent / base))
    return _merge(merged, content.get("data") or {})


def _merge(first: dict, second: dict) -> dict:
    out = dict(first)
    for key, value in second.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def _config_roots() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if "sweeps" in path.parts or "base" in path.parts:
            continue
        data = _data_section(path)
        if data.get("class_path", "").endswith("FolderDataModule"):
            continue  # the user's own pairs (configs/folder_*.yaml)
        root = (data.get("init_args") or {}).get("root")
        for value in [root] if isinstance(root, str) else (root or []):
            found.append((str(path.relative_to(REPO)), value))
    return found


def test_every_config_names_its_data_where_the_download_command_puts_it() -> None:
    """A config's root is the folder `node-dada data download` fills (or a parent the
    loader reads it from), relative, so that the data root decides where it is."""
    targets = {Path(entry.target) for entry in CATALOGUE.values() if entry.target}
    targets |= {Path(entry.target).parent for entry in CATALOGUE.values()
                if entry.target.endswith(".mat")}
    targets |= {Path("DIML")}  # unpacked by hand, converted by diml_convert (data list)
    roots = _config_roots()
    assert len(roots) > 40
    for config, root in roots:
        path = Path(root)
        assert not path.is_absolute() and ".." not in path.parts, (config, root)
        assert any(path == target or path in target.parents for target in targets), (config, root)


def test_no_shipped_file_names_the_projects_own_data_folder() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("node_dada", "configs")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in {".py", ".yaml", ".md", ".json", ".txt"}
        and "../shared" in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []
