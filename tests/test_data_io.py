"""File readers: values, orientation, and clear errors on bad files."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from node_dada.data.io import (
    convert_guide_channels,
    guide_to_float,
    read_image,
    read_npy,
    read_number,
    read_pfm,
    require_dir,
    write_pfm,
)
from node_dada.errors import DataError, InputTypeError, InputValueError, NodeDadaError


def _png(path, array):
    assert cv2.imwrite(str(path), array)
    return path


# ---------------------------------------------------------------- PNG / raster


def test_png16_values_exact(tmp_path):
    depth = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    out = read_image(_png(tmp_path / "d.png", depth))
    assert out.dtype == np.uint16 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, depth)


def test_png_colour_comes_back_rgb(tmp_path):
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 200  # OpenCV writes BGR: blue channel
    out = read_image(_png(tmp_path / "c.png", bgr))
    assert out.shape == (2, 3, 3)
    assert (out[..., 2] == 200).all() and (out[..., 0] == 0).all()


def test_tiff_float32(tmp_path):
    depth = np.linspace(0.5, 3.0, 20, dtype=np.float32).reshape(4, 5)
    path = tmp_path / "d.tiff"
    assert cv2.imwrite(str(path), depth)
    np.testing.assert_array_equal(read_image(path), depth)


@pytest.mark.parametrize("cut", [1, 30, 100])
def test_truncated_png_raises(tmp_path, cut):
    data = (_png(tmp_path / "ok.png", np.random.default_rng(0).integers(
        0, 65535, (32, 32), dtype=np.uint16)).read_bytes())
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[:-cut])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_image(bad)


def test_garbage_with_image_suffix_raises(tmp_path):
    for name in ("x.png", "x.jpg", "x.tiff"):
        path = tmp_path / name
        path.write_bytes(b"this is not an image at all" * 4)
        with pytest.raises(DataError) as info:
            read_image(path)
        assert str(path) in str(info.value)


def test_missing_empty_directory_and_suffix(tmp_path):
    with pytest.raises(DataError, match="found nothing"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="directory"):
        read_image(tmp_path / "dir.png")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="suffix"):
        read_image(tmp_path / "a.gif")


def test_data_error_is_oserror_and_node_dada_error(tmp_path):
    with pytest.raises(OSError):
        read_image(tmp_path / "nope.png")
    with pytest.raises(NodeDadaError):
        read_image(tmp_path / "nope.png")


def test_png_header_claiming_huge_size_fails_fast(tmp_path):
    # A valid 1x1 PNG whose IHDR is rewritten to 100000 x 100000 (CRC fixed up).
    import struct
    import zlib

    data = bytearray(_png(tmp_path / "one.png", np.zeros((1, 1), np.uint8)).read_bytes())
    ihdr = 8 + 8  # signature + length/type
    data[ihdr:ihdr + 8] = struct.pack(">II", 100000, 100000)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(DataError):
        read_image(path)
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------ PFM


def test_pfm_matches_opencv_and_is_top_down(tmp_path):
    disparity = np.arange(12, dtype=np.float32).reshape(3, 4)
    disparity[0, 0] = np.inf
    path = tmp_path / "disp.pfm"
    assert cv2.imwrite(str(path), disparity)
    ours = read_pfm(path)
    np.testing.assert_array_equal(ours, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    np.testing.assert_array_equal(ours, disparity)  # top row first, inf kept
    assert np.isinf(ours[0, 0])


def test_pfm_rows_are_stored_bottom_up(tmp_path):
    # Hand-written little-endian file: the first stored row is the image's LAST row.
    path = tmp_path / "hand.pfm"
    rows = np.array([[1, 2], [3, 4]], "<f4")  # as stored: bottom row, then top row
    path.write_bytes(b"Pf\n2 2\n-1.0\n" + rows.tobytes())
    np.testing.assert_array_equal(read_pfm(path), [[3, 4], [1, 2]])


def test_pfm_big_endian_and_colour(tmp_path):
    path = tmp_path / "big.pfm"
    path.write_bytes(b"Pf\n2 1\n1.0\n" + np.array([1.5, -2.0], ">f4").tobytes())
    np.testing.assert_array_equal(read_pfm(path), [[1.5, -2.0]])
    rgb = np.random.default_rng(1).random((3, 5, 3)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", rgb)
    np.testing.assert_array_equal(read_pfm(tmp_path / "c.pfm"), rgb)
    opencv = cv2.imread(str(tmp_path / "c.pfm"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(opencv[..., ::-1], rgb)  # OpenCV returns BGR


def test_write_pfm_read_by_opencv(tmp_path):
    disparity = np.random.default_rng(2).random((7, 9)).astype(np.float32)
    disparity[3, 4] = np.inf
    write_pfm(tmp_path / "w.pfm", disparity)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "w.pfm"), cv2.IMREAD_UNCHANGED), disparity
    )


def test_pfm_truncated_raises(tmp_path):
    path = tmp_path / "t.pfm"
    write_pfm(path, np.ones((4, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_pfm(path)


def test_pfm_lying_header_fails_without_allocating(tmp_path):
    path = tmp_path / "lie.pfm"
    path.write_bytes(b"Pf\n60000 60000\n-1.0\n" + b"\0" * 64)
    start = time.perf_counter()
    with pytest.raises(DataError):
        read_pfm(path)
    path.write_bytes(b"Pf\n9000 9000\n-1.0\n" + b"\0" * 64)  # under the pixel cap
    with pytest.raises(DataError, match="truncated"):
        read_pfm(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "content",
    [b"P6\n2 2\n255\n" + b"\0" * 12, b"Pf\nfour 2\n-1\n" + b"\0" * 32, b"Pf\n2 2\n0\n" + b"\0" * 16,
     b"Pf\n-2 2\n-1\n" + b"\0" * 16, b"Pf\n"],
)
def test_pfm_bad_header_raises(tmp_path, content):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(DataError):
        read_pfm(path)


# ------------------------------------------------------------------------ NPY


def test_npy_roundtrip_and_mmap(tmp_path):
    array = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy"), array)
    mapped = read_npy(tmp_path / "a.npy", mmap=True)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array)


def test_npy_truncated_and_lying_header(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones((100, 100), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_npy(path)
    header = np.lib.format.header_data_from_array_1_0(np.ones((1,), np.float32))
    header["shape"] = (100000, 100000, 3)
    with (tmp_path / "lie.npy").open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)
    with pytest.raises(DataError, match="truncated"):
        read_npy(tmp_path / "lie.npy")


def test_npy_refuses_objects_and_non_npy(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects"):
        read_npy(tmp_path / "o.npy")
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="header"):
        read_npy(tmp_path / "x.npy")


def test_read_image_npy_checks_rank(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(5))
    with pytest.raises(DataError, match="shape"):
        read_image(tmp_path / "v.npy")
    np.save(tmp_path / "m.npy", np.ones((3, 4), np.float32))
    assert read_image(tmp_path / "m.npy").shape == (3, 4)


# ---------------------------------------------------------------- small files


def test_read_number_and_require_dir(tmp_path):
    (tmp_path / "dmin.txt").write_text("230\n")
    assert read_number(tmp_path / "dmin.txt", what="dmin") == 230.0
    (tmp_path / "bad.txt").write_text("two hundred")
    with pytest.raises(DataError, match="single number"):
        read_number(tmp_path / "bad.txt", what="dmin")
    with pytest.raises(DataError, match="Expected layout:\nL\nDownload: http://x"):
        require_dir(tmp_path / "missing", what="D", layout="L", download="http://x")
    assert require_dir(tmp_path, what="D", layout="L", download="x") == tmp_path


# --------------------------------------------------------------------- guides


def test_guide_to_float_units():
    np.testing.assert_allclose(guide_to_float(np.array([[0, 255]], np.uint8))[..., 0], [[0, 1]])
    np.testing.assert_allclose(
        guide_to_float(np.array([[0, 65535]], np.uint16))[..., 0], [[0, 1]]
    )
    out = guide_to_float(np.full((2, 2, 5), 0.25, np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 2, 5)
    with pytest.raises(InputValueError, match="0-1"):
        guide_to_float(np.full((2, 2), 3.0))
    with pytest.raises(InputTypeError):
        guide_to_float(np.ones((2, 2), np.int64))


def test_convert_guide_channels():
    rgb = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    grey = convert_guide_channels(rgb, 1)
    assert grey.shape == (4, 5, 1)
    np.testing.assert_allclose(grey[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-6)
    assert convert_guide_channels(grey, 3).shape == (4, 5, 3)
    rgba = np.concatenate([rgb, np.ones((4, 5, 1), np.float32)], axis=2)
    np.testing.assert_array_equal(convert_guide_channels(rgba, 3), rgb)
    assert convert_guide_channels(rgb, None) is rgb
    with pytest.raises(InputValueError, match="guide_channels"):
        convert_guide_channels(rgb, 7)
