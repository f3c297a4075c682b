"""``node-dada upsample`` on folders and glob patterns: how pairs are matched, where the
outputs go, what is refused before the first frame, one model load for every pair,
and a failing frame that keeps the frames before it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from node_dada.cli import main
from node_dada.predict_files import match_pairs

#: Guide side per frame: the sizes differ so that a pair matched wrongly fails on its
#: shapes, and every output's size shows which guide it was made with.
SIDES = (64, 48, 32)


def write_frame(guide_path: Path, source_path: Path, side: int, seed: int) -> None:
    """A ``side x side`` RGB guide and its ``side/8`` uint16 depth (millimetres)."""
    rng = np.random.default_rng(seed)
    guide_path.parent.mkdir(parents=True, exist_ok=True)
    source_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(guide_path), (rng.random((side, side, 3)) * 255).astype(np.uint8))
    depth = (1000 + 1000 * rng.random((side // 8, side // 8))).astype(np.uint16)
    if source_path.suffix == ".npy":
        np.save(source_path, depth.astype(np.float32))
    else:
        cv2.imwrite(str(source_path), depth)


def write_frames(root: Path, guide_names, source_names) -> None:
    pairs = zip(guide_names, source_names, SIDES[: len(guide_names)], strict=True)
    for seed, (guide, source, side) in enumerate(pairs):
        write_frame(root / guide, root / source, side, seed)


def upsample(*argv: str | Path) -> int:
    return main(["upsample", *map(str, argv), "--scale", "8"])


def output_sides(folder: Path, pattern: str = "*_x8.png") -> dict[str, int]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[0]
            for p in folder.glob(pattern)}


def test_folders_pair_by_stem_whatever_their_sorted_order(tmp_path, capsys):
    # sorted by path the sources run c, a, b (two folders): only the stems pair them
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png", "rgb/c.png"],
                 ["depth_near/a.png", "depth_near/b.png", "depth_far/c.png"])
    code = upsample("--guide", tmp_path / "rgb", "--source", str(tmp_path / "depth_*" / "?.png"),
                    "--out", tmp_path / "out")
    assert code == 0, capsys.readouterr().err
    assert output_sides(tmp_path / "out") == {"a_x8.png": 64, "b_x8.png": 48, "c_x8.png": 32}
    assert capsys.readouterr().out.strip().endswith(f"wrote 3 depth maps to {tmp_path / 'out'}")
    assert not list((tmp_path / "out").glob("*_preview.png"))  # only with --previews


def test_a_glob_writes_beside_each_source_and_skips_other_files(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/f1.png", "rgb/f2.png", "rgb/f3.png"],
                 ["depth/f1.png", "depth/f2.png", "depth/f3.png"])
    (tmp_path / "rgb" / "notes.txt").write_text("not an image")
    write_frame(tmp_path / "rgb" / "other.png", tmp_path / "depth" / "other.png", 64, 9)
    code = upsample("--guide", str(tmp_path / "rgb" / "f*"),
                    "--source", str(tmp_path / "depth" / "f*.png"))
    assert code == 0, capsys.readouterr().err
    assert output_sides(tmp_path / "depth") == {"f1_x8.png": 64, "f2_x8.png": 48,
                                                "f3_x8.png": 32}
    assert f"wrote 3 depth maps to {tmp_path / 'depth'}" in capsys.readouterr().out
    # a second run sees the same three sources, not the outputs written beside them
    assert upsample("--guide", str(tmp_path / "rgb" / "f*"), "--overwrite",
                    "--source", str(tmp_path / "depth" / "f*.png")) == 0
    assert len(output_sides(tmp_path / "depth")) == 3


def test_different_stems_of_equal_count_pair_in_sorted_order(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/rgb_000.png", "rgb/rgb_001.png", "rgb/rgb_002.png"],
                 ["depth/depth_000.png", "depth/depth_001.png", "depth/depth_002.png"])
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", tmp_path / "out") == 0, capsys.readouterr().err
    assert output_sides(tmp_path / "out") == {
        "depth_000_x8.png": 64, "depth_001_x8.png": 48, "depth_002_x8.png": 32}
    # the same folders under --match stem: refused, naming the first lonely files
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--match", "stem", "--out", tmp_path / "again") == 2
    err = capsys.readouterr().err
    assert "no source for the guide" in err and "rgb_000.png" in err and "--match order" in err
    assert not (tmp_path / "again").exists()


def test_a_count_mismatch_is_refused_before_any_output(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png", "rgb/c.png"],
                 ["depth/a.png", "depth/b.png", "depth/c.png"])
    (tmp_path / "depth" / "c.png").unlink()
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--guide lists 3 files and --source 2" in err[0]
    assert f"the guide {tmp_path / 'rgb' / 'c.png'}" in err[0]
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "depth").glob("*_x8*"))


def test_out_folder_naming_follows_the_single_pair_rule(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png"], ["depth/a.png", "depth/b.npy"])
    out = tmp_path / "results" / "deep"  # created, parents included
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", out) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_x8.png", "b_x8.npy"]
    assert np.load(out / "b_x8.npy").shape == (48, 48)
    assert main(["upsample", "--guide", str(tmp_path / "rgb"), "--source",
                 str(tmp_path / "depth"), "--out", str(tmp_path / "auto")]) == 0
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["a_up.png", "b_up.npy"]
    # a file name is not a folder
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", tmp_path / "depth.png") == 2
    assert "several pairs need a folder" in capsys.readouterr().err


def test_existing_outputs_are_kept_without_overwrite(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png"], ["depth/a.png", "depth/b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_x8.png").write_bytes(b"earlier result")
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{out / 'b_x8.png'} exists already" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["b_x8.png"]  # nothing else written
    assert (out / "b_x8.png").read_bytes() == b"earlier result"
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", out, "--overwrite") == 0
    assert output_sides(out) == {"a_x8.png": 64, "b_x8.png": 48}


def test_previews_only_when_asked(tmp_path, capsys):
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png"], ["depth/a.png", "depth/b.png"])
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", tmp_path / "out", "--previews") == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_x8.png", "a_x8_preview.png", "b_x8.png", "b_x8_preview.png"]


def test_a_shipped_model_is_loaded_once_for_every_pair(tmp_path, monkeypatch, capsys):
    from node_dada.models import inference

    loads = []
    load_model = inference.load_model

    def counted(checkpoint):
        loads.append(checkpoint)
        return load_model(checkpoint)

    monkeypatch.setattr(inference, "load_model", counted)
    inference._load_model_once.cache_clear()
    for index in range(3):
        write_frame(tmp_path / "rgb" / f"{index}.png", tmp_path / "depth" / f"{index}.png",
                    32, index)
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--checkpoint", "middlebury-x8", "--out", tmp_path / "out") == 0, \
        capsys.readouterr().err
    assert len(output_sides(tmp_path / "out")) == 3
    assert len(loads) == 1


@pytest.mark.parametrize(("spoil", "phrase"), [
    (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40)), "truncated or corrupt"),
    (lambda path: cv2.imwrite(str(path), np.zeros((40, 40, 3), np.uint8)),
     "expected spatial size"),
], ids=["unreadable guide", "wrong-size guide"])
def test_a_bad_frame_stops_the_run_and_keeps_the_frames_before_it(tmp_path, capsys, spoil,
                                                                    phrase):
    write_frames(tmp_path, ["rgb/a.png", "rgb/b.png", "rgb/c.png"],
                 ["depth/a.png", "depth/b.png", "depth/c.png"])
    spoil(tmp_path / "rgb" / "b.png")
    out = tmp_path / "out"
    assert upsample("--guide", tmp_path / "rgb", "--source", tmp_path / "depth",
                    "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"frame 2 of 3 (guide {tmp_path / 'rgb' / 'b.png'}" in err[0]
    assert phrase in err[0] and "the 1 depth map written before it" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["a_x8.png"]


def test_match_pairs_refuses_a_stem_that_two_files_share():
    guides = [Path("rgb/a.png"), Path("rgb/b.png")]
    sources = [Path("depth/a.npy"), Path("depth/a.png")]
    with pytest.raises(ValueError, match="share the stem 'a'"):
        match_pairs(guides, sources, match="stem")
    assert match_pairs(guides, sources) == list(zip(guides, sources, strict=True))


@pytest.mark.parametrize(("encode", "flags"), [
    (lambda mm: (mm * 5).astype(np.uint16), ["--depth-unit-mm", "0.2"]),  # TUM, 1/5000 m
    (lambda mm: ((mm << 3) | (mm >> 13)).astype(np.uint16), ["--depth-encoding", "sun_rgbd"]),
    (lambda mm: mm.byteswap(), ["--swap-bytes"]),
])
def test_sensor_depth_encodings_are_decoded_to_millimetres(tmp_path, capsys, encode, flags):
    """A frame stored the sensor's way, decoded with the matching flags, gives the depth
    map of the same frame stored in plain millimetres, written in millimetres."""
    rng = np.random.default_rng(3)
    guide = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    mm = (1000 + 1000 * rng.random((8, 8))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb.png"), guide)
    cv2.imwrite(str(tmp_path / "plain.png"), mm)
    cv2.imwrite(str(tmp_path / "sensor.png"), encode(mm))
    for name, extra in (("plain", []), ("sensor", flags)):
        assert main(["predict", "--guide", str(tmp_path / "rgb.png"), "--source",
                     str(tmp_path / f"{name}.png"), "--scale", "8", "--out",
                     str(tmp_path / f"{name}_up.png"), *extra]) == 0
    plain = cv2.imread(str(tmp_path / "plain_up.png"), cv2.IMREAD_UNCHANGED)
    decoded = cv2.imread(str(tmp_path / "sensor_up.png"), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and plain.shape == decoded.shape == (64, 64)
    assert np.abs(decoded.astype(int) - plain.astype(int)).max() <= 1  # mm, rounding


def test_decoding_flags_refuse_an_8_bit_depth_file(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), np.full((8, 8), 100, np.uint8))
    code = main(["predict", "--guide", str(tmp_path / "rgb.png"), "--source",
                 str(tmp_path / "d.png"), "--scale", "8", "--depth-unit-mm", "10"])
    assert code == 2
    assert "16-bit or float depth files, got uint8" in capsys.readouterr().err
