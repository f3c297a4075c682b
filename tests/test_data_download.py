"""``node-dada data``: downloads against a loopback HTTP server (no network).

The server serves bytes the tests build in ``tmp_path`` (a fake MiddEval3 pair of zips
with two real, tiny scenes), and can ignore ``Range``, drop a connection mid-body or
answer 404; every request it saw is logged with its ``Range`` header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from node_dada import cli
from node_dada.data import download
from node_dada.data.download import (
    CATALOGUE,
    RemoteFile,
    download_file,
    fetch_dataset,
    format_catalogue,
)
from node_dada.errors import DataError

SCENES = ("Adirondack", "Motorcycle")


class _Server:
    """A loopback server: ``files`` by URL path, behaviour switches, a request log."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.drop_first: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                wanted = self.headers.get("Range")
                server.log.append((self.path, wanted))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if self.path in server.drop_first:
                    server.drop_first.discard(self.path)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 3])
                    self.close_connection = True  # the peer hangs up mid-body
                    return
                start = 0
                if wanted and server.honour_range:
                    start = int(wanted.removeprefix("bytes=").partition("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    instance = _Server()
    yield instance
    instance.close()


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _pfm(disparity: np.ndarray) -> bytes:
    """A little-endian greyscale PFM (rows bottom-up), as MiddEval3 ships them."""
    height, width = disparity.shape
    header = f"Pf\n{width} {height}\n-1\n".encode()
    return header + np.ascontiguousarray(disparity[::-1], dtype="<f4").tobytes()


def _middeval3_zips() -> tuple[bytes, bytes]:
    """(data zip, ground-truth zip) shaped like MiddEval3-{data,GT0}-Q.zip: two
    training scenes (tiny but real files) and one test scene without ground truth."""
    rng = np.random.default_rng(0)
    data, truth = {}, {}
    for scene in SCENES:
        image = cv2.imencode(".png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))[1]
        folder = f"MiddEval3/trainingQ/{scene}"
        data[f"{folder}/im0.png"] = image.tobytes()
        data[f"{folder}/im1.png"] = image.tobytes()
        data[f"{folder}/calib.txt"] = (
            b"cam0=[100 0 8; 0 100 6; 0 0 1]\ncam1=[100 0 8; 0 100 6; 0 0 1]\n"
            b"doffs=10\nbaseline=190\nwidth=16\nheight=12\nndisp=40\n")
        truth[f"{folder}/disp0GT.pfm"] = _pfm(np.full((12, 16), 20.0, np.float32))
        truth[f"{folder}/mask0nocc.png"] = cv2.imencode(".png", np.full((12, 16), 255,
                                                                        np.uint8))[1].tobytes()
    data["MiddEval3/testQ/Australia/im0.png"] = b"no ground truth"
    return _zip(data), _zip(truth)


def _middeval3_catalogue(server: _Server) -> dict:
    data, truth = _middeval3_zips()
    server.files["/MiddEval3-data-Q.zip"] = data
    server.files["/MiddEval3-GT0-Q.zip"] = truth
    entry = dataclasses.replace(
        CATALOGUE["middeval3-Q"], scenes=SCENES,
        files=(RemoteFile(f"{server.base}/MiddEval3-data-Q.zip"),
               RemoteFile(f"{server.base}/MiddEval3-GT0-Q.zip")))
    return {"middeval3-Q": entry}


def _payload(size: int = 300_000) -> bytes:
    return np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_download_unpacks_middeval3_into_the_layout_the_loader_reads(server, tmp_path):
    from node_dada.data import MiddleburyScenes

    root = tmp_path / "data"
    report = fetch_dataset("middeval3-Q", root, progress=False,
                           catalogue=_middeval3_catalogue(server))
    training = root / "middlebury2014" / "MiddEval3" / "trainingQ"
    assert report.path == training and sorted(report.installed) == list(SCENES)
    for scene in SCENES:
        for name in ("im0.png", "im1.png", "calib.txt", "disp0GT.pfm", "mask0nocc.png"):
            assert (training / scene / name).is_file(), (scene, name)
    assert sorted(p.name for p in training.iterdir()) == list(SCENES)  # no test scenes
    assert not list(training.parent.glob(".unpack-*"))  # the staging folder is gone
    assert {p.name for p in (root / "downloads").iterdir()} == {
        "MiddEval3-data-Q.zip", "MiddEval3-GT0-Q.zip"}
    scenes = MiddleburyScenes(root / "middlebury2014", split="all")
    assert len(scenes) == 2
    depth = scenes.load(0).depth
    assert np.allclose(depth, 100 * 190 / (20 + 10))  # f * baseline / (disp + doffs)


def test_a_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    body = _payload()
    server.files["/big.bin"] = body
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(body[:100_000])
    download_file(f"{server.base}/big.bin", dest, progress=False)
    assert server.log == [("/big.bin", "bytes=100000-")]
    assert dest.read_bytes() == body
    assert not dest.with_name("big.bin.part").exists()


def test_a_server_that_ignores_range_starts_the_file_over(server, tmp_path):
    body = _payload()
    server.files["/big.bin"] = body
    server.honour_range = False
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(b"\0" * 100_000)  # wrong bytes: must go
    download_file(f"{server.base}/big.bin", dest, progress=False)
    assert server.log == [("/big.bin", "bytes=100000-")]
    assert dest.read_bytes() == body


def test_a_wrong_sha256_leaves_neither_the_file_nor_the_part(server, tmp_path):
    server.files["/big.bin"] = _payload()
    dest = tmp_path / "big.bin"
    with pytest.raises(DataError) as caught:
        download_file(f"{server.base}/big.bin", dest, sha256="0" * 64, progress=False)
    message = str(caught.value)
    actual = hashlib.sha256(server.files["/big.bin"]).hexdigest()
    assert "big.bin" in message and "0" * 64 in message and actual in message
    assert not dest.exists() and not dest.with_name("big.bin.part").exists()


def test_a_dropped_connection_is_retried_and_resumed(server, tmp_path):
    body = _payload()
    server.files["/big.bin"] = body
    server.drop_first.add("/big.bin")
    dest = tmp_path / "big.bin"
    download_file(f"{server.base}/big.bin", dest, progress=False)
    assert dest.read_bytes() == body
    assert server.log == [("/big.bin", None), ("/big.bin", f"bytes={len(body) // 3}-")]


def test_an_existing_complete_file_is_verified_not_downloaded_again(server, tmp_path):
    body = _payload(1000)
    server.files["/small.bin"] = body
    dest = tmp_path / "small.bin"
    digest = hashlib.sha256(body).hexdigest()
    download_file(f"{server.base}/small.bin", dest, sha256=digest, size=1000, progress=False)
    download_file(f"{server.base}/small.bin", dest, sha256=digest, size=1000, progress=False)
    assert len(server.log) == 1
    dest.write_bytes(b"changed")
    with pytest.raises(DataError, match="--force"):
        download_file(f"{server.base}/small.bin", dest, sha256=digest, progress=False)
    download_file(f"{server.base}/small.bin", dest, sha256=digest, progress=False, force=True)
    assert dest.read_bytes() == body


def _nyuv2_from(monkeypatch, url: str) -> None:
    entry = dataclasses.replace(CATALOGUE["nyuv2"], files=(RemoteFile(url),))
    monkeypatch.setitem(download.CATALOGUE, "nyuv2", entry)


def test_a_404_is_one_line_and_exit_code_2(server, tmp_path, monkeypatch, capsys):
    _nyuv2_from(monkeypatch, f"{server.base}/missing.mat")
    code = cli.main(["data", "download", "nyuv2", "--root", str(tmp_path), "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("node-dada data download nyuv2: error:")
    assert "HTTP 404" in lines[0] and "by hand into" in lines[0]
    assert not list((tmp_path / "nyu_depth_v2").glob("*"))


def test_an_unreachable_host_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/nyu_depth_v2_labeled.mat"
    _nyuv2_from(monkeypatch, url)
    code = cli.main(["data", "download", "nyuv2", "--root", str(tmp_path), "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "cannot reach 127.0.0.1" in lines[0] and url in lines[0]
    assert "check the connection" in lines[0]


def test_a_dataset_without_a_direct_url_says_where_to_get_it(tmp_path, capsys):
    code = cli.main(["data", "download", "rgbdd", "--root", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "github.com/lingzhi96" in lines[0]


def test_data_list_prints_every_dataset_once(capsys):
    assert cli.main(["data", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(CATALOGUE)
    for name in ("middlebury2005", "middlebury2006", "middeval3-Q", "middeval3-H",
                 "middeval3-F", "middlebury2014", "nyuv2", "diml", "rgbdd"):
        assert name in CATALOGUE
    assert "dmin.txt is not in the zips" in format_catalogue()


def test_an_unpacked_scene_is_not_overwritten_without_force(server, tmp_path, capsys):
    root = tmp_path / "data"
    catalogue = _middeval3_catalogue(server)
    mine = root / "middlebury2014" / "MiddEval3" / "trainingQ" / "Adirondack" / "im0.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    report = fetch_dataset("middeval3-Q", root, progress=False, catalogue=catalogue)
    assert report.kept == ["Adirondack"] and report.installed == ["Motorcycle"]
    assert report.incomplete == ["Adirondack"] and mine.read_bytes() == b"mine"
    assert "not overwritten" in download.describe(report)

    requests = len(server.log)  # every scene is there now: nothing is fetched
    report = fetch_dataset("middeval3-Q", root, progress=False, catalogue=catalogue)
    assert len(server.log) == requests and not report.installed
    assert "already there" in download.describe(report) and mine.read_bytes() == b"mine"

    report = fetch_dataset("middeval3-Q", root, force=True, progress=False,
                           catalogue=catalogue)
    assert sorted(report.installed) == list(SCENES) and mine.read_bytes() != b"mine"
    assert (mine.parent / "disp0GT.pfm").is_file()


def test_a_zip_with_a_parent_member_is_refused(server, tmp_path):
    server.files["/evil.zip"] = _zip({"MiddEval3/trainingQ/A/im0.png": b"x", "../evil": b"x"})
    entry = dataclasses.replace(CATALOGUE["middeval3-Q"],
                                files=(RemoteFile(f"{server.base}/evil.zip"),))
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"'\.\./evil'.*refused"):
        fetch_dataset("middeval3-Q", root, progress=False, catalogue={"middeval3-Q": entry})
    assert not list(tmp_path.rglob("evil"))
    assert not (root / "middlebury2014" / "MiddEval3" / "trainingQ").exists()
    assert not list((root / "middlebury2014" / "MiddEval3").glob(".unpack-*"))


def test_scene_folders_are_found_at_any_depth_without_scenes_under(server, tmp_path):
    """The 2005/2006 zips: scenes found wherever they sit; one without ground truth is
    left out and named."""
    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    members = {f"ALL-2views/Art/{name}": png
               for name in ("view1.png", "view5.png", "disp1.png", "disp5.png")}
    members.update({"ALL-2views/Computer/view1.png": png, "ALL-2views/Computer/view5.png": png})
    server.files["/ALL-2views.zip"] = _zip(members)
    entry = dataclasses.replace(CATALOGUE["middlebury2005"],
                                files=(RemoteFile(f"{server.base}/ALL-2views.zip"),))
    report = fetch_dataset("middlebury2005", tmp_path, progress=False,
                           catalogue={"middlebury2005": entry})
    third = tmp_path / "middlebury0506" / "ThirdSize"
    assert report.installed == ["Art"] and (third / "Art" / "disp5.png").is_file()
    assert report.left_out == {"Computer": ["disp1.png", "disp5.png"]}
    assert not (third / "Computer").exists()
