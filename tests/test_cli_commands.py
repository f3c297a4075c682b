"""``node-dada`` as a newcomer meets it: one help that lists every command, a
version, every command reachable by name, and one line for an unknown one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node_dada import __version__
from node_dada.cli import _COMMANDS, _LIGHTNING, main


def test_help_lists_every_command_with_a_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*_LIGHTNING, *_COMMANDS]:
        assert f"\n  {name} " in out, name
    assert "--version" in out


def test_no_command_prints_the_help_to_stderr_and_exits_2(capsys):
    assert main([]) == 2
    assert "Everything else:" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"node-dada {__version__}"


@pytest.mark.parametrize("name", list(_COMMANDS))
def test_every_command_is_reachable_by_name(name, capsys):
    try:
        code = main([name, "--help"])
    except SystemExit as exit_info:  # argparse prints the command's help and exits 0
        code = exit_info.code
    assert code == 0
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "node_dada.cli", "frob"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown command 'frob'" in lines[0]
    assert "upsample" in lines[0] and "fit" in lines[0]


@pytest.mark.parametrize("module", ["node_dada.commands.benchmark", "node_dada.commands.demo",
                                    "node_dada.commands.tuning"])
def test_default_outputs_go_under_runs_never_into_committed_results(module):
    """A quick run without --out must not overwrite the committed tables."""
    import importlib

    source = importlib.import_module(module)
    parser = source.build_parser() if hasattr(source, "build_parser") else None
    if parser is not None:
        default = parser.get_default("out")
    else:  # demo and tuning build their parser inside main(): read its --out default
        import inspect
        import re

        found = re.search(r"\"--out\", type=Path, default=Path\(\"([^\"]+)\"\)",
                          inspect.getsource(source.main))
        assert found, module
        default = found.group(1)
    assert str(default).startswith("runs/"), default


def _pair(tmp_path, source_name, source):
    import cv2
    import numpy as np

    guide = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "guide.png"), guide)
    if source_name.endswith(".npy"):
        np.save(tmp_path / source_name, source)
    else:
        cv2.imwrite(str(tmp_path / source_name), source)
    return tmp_path / "guide.png", tmp_path / source_name


def test_output_problems_are_refused_before_the_work(tmp_path, monkeypatch, capfd):
    import numpy as np

    import node_dada

    def refuse(*args, **kwargs):
        raise AssertionError("the upsampling ran before the output was checked")

    monkeypatch.setattr(node_dada, "upsample", refuse)
    guide, source = _pair(tmp_path, "depth.npy", np.full((4, 4), 1000.0, np.float32))
    for out, phrase in [("out.png", "cannot store float depth as .png"),
                        ("out.jpg", "unsupported suffix '.jpg'"),
                        ("missing/out.npy", "does not exist")]:
        code = main(["upsample", "--guide", str(guide), "--source", str(source), "--scale",
                     "8", "--out", str(tmp_path / out)])
        assert code == 2
        assert phrase in capfd.readouterr().err


def test_a_jpeg_source_gets_a_png_output_by_default(tmp_path):
    import numpy as np

    guide, source = _pair(tmp_path, "depth.jpg", np.full((4, 4), 120, np.uint8))
    assert main(["upsample", "--guide", str(guide), "--source", str(source), "--scale",
                 "8"]) == 0
    assert (tmp_path / "depth_x8.png").is_file()


def test_upsample_help_shows_what_a_newcomer_needs_on_its_first_screen(capsys):
    with pytest.raises(SystemExit):
        main(["upsample", "--help"])
    first_screen = "\n".join(capsys.readouterr().out.splitlines()[:60])
    for needed in ("--guide", "--source", "--scale", "middlebury-x8", "millimetres",
                   "PFM", "16-bit", "--depth-scale"):
        assert needed in first_screen, needed
