"""``node-dada data``: list the datasets the loaders read, and download them.

    node-dada data list
    node-dada data download middeval3-Q --root data
    node-dada data download nyuv2 --root data --no-progress

Every dataset is one entry of :data:`CATALOGUE`: its URLs, the archive type, where it
unpacks under ``--root`` and which loader reads it. A download goes to ``<file>.part``
(resumed with an HTTP ``Range`` request when it exists; a dropped connection is
retried and resumed up to three times), and is renamed to its final name only once its
size (and SHA-256, where the table knows one) checked out. Archives are kept in
``<root>/downloads/``; zips are checked member by member (no absolute path, no
``..``), unpacked into a hidden folder beside the target, checked scene by scene
(every scene must hold the files its loader needs) and only then moved into place.
An unpacked scene folder that already exists is never replaced without ``--force``.

Target layouts (what the loaders of :mod:`node_dada.data` read)::

    middlebury2005/2006  <root>/middlebury0506/ThirdSize/<Scene>/{view1,view5,disp1,disp5}.png
    middeval3-{Q,H,F}    <root>/middlebury2014/MiddEval3/training{Q,H,F}/<Scene>/
                             im0.png im1.png calib.txt disp0GT.pfm mask0nocc.png
    middlebury2014       <root>/middlebury2014-full/2014/<Scene>-perfect/
                             im0.png im1.png disp0.pfm disp1.pfm calib.txt
    nyuv2                <root>/nyu_depth_v2/nyu_depth_v2_labeled.mat

The full-size 2014 scenes go to their own ``middlebury2014-full`` folder: under
``middlebury2014`` (the folder the trained configs point at for MiddEval3) the loader
would read them together with MiddEval3, and the same scenes would appear twice.

Where the URLs come from (none could be fetched from here; no SHA-256 or byte size
is published with them, so the table holds none: a download is checked against the
server's ``Content-Length``, a zip against its CRCs, and the unpacked layout scene
by scene):

- MiddEval3 (``https://vision.middlebury.edu/stereo/submit3/zip/MiddEval3-{data,GT0}-
  {Q,H,F}.zip``): the file names and the layout they unzip to (``MiddEval3/training<S>/``
  and ``MiddEval3/test<S>/``, the data and ground-truth zips merging into the same scene
  folders) are verified from the official MiddEval SDK README (v1.6, "Download and unzip
  MiddEval3-data-Q.zip and MiddEval3-GT0-Q.zip"); the host path ``/stereo/submit3/zip/``
  is the one :data:`node_dada.data.middlebury.MIDDLEBURY_DOWNLOAD` names and that public
  download scripts use: believed, not read from the official page here.
- Middlebury 2005/2006 third size (``.../stereo/data/scenes{2005,2006}/ThirdSize/
  zip-2views/ALL-2views.zip``) and the 2014 scenes (``.../stereo/data/scenes2014/zip/
  <Scene>-perfect.zip``, unzipping to ``<Scene>-perfect/``): believed, from public code
  and READMEs that cite these official paths; not read from the official pages here.
  Where a 2005/2006 zip nests its scene folders one level deeper, they are found anyway.
- NYU Depth v2 labeled (``http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/
  nyu_depth_v2_labeled.mat``): the link of the official page that
  :data:`node_dada.data.nyuv2.NYUV2_DOWNLOAD` cites; believed, not fetched here.
- DIML and RGB-D-D: no direct official URL (DIML is served from its project page,
  RGB-D-D after a signed release agreement), so ``download`` says where to get them.

The command line (its options and ``main``) is :mod:`node_dada.commands.data`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from node_dada.data.diml import DIML_DOWNLOAD
from node_dada.data.nyuv2 import NYUV2_FILE_NAME
from node_dada.errors import DataError, InputValueError

__all__ = [
    "CATALOGUE",
    "DatasetEntry",
    "FetchReport",
    "RemoteFile",
    "download_file",
    "fetch_dataset",
    "format_catalogue",
]

#: Where archives are kept, under ``--root``.
DOWNLOADS_FOLDER = "downloads"
#: Bytes read per chunk of a response.
CHUNK_BYTES = 1 << 20
#: Seconds a connection may stay silent before it counts as dropped.
TIMEOUT_S = 60.0
#: Seconds before retry ``n`` of a dropped download (times ``n``).
RETRY_DELAY_S = 2.0
#: Prefix of the hidden folders archives are unpacked into, beside their target.
_STAGING_PREFIX = ".unpack-"
_USER_AGENT = "node-dada-data-download (python urllib)"

_MIDDLEBURY = "https://vision.middlebury.edu/stereo"
_MIDDEVAL3_TRAINING = ("Adirondack", "ArtL", "Jadeplant", "Motorcycle", "MotorcycleE", "Piano",
                       "PianoL", "Pipes", "Playroom", "Playtable", "PlaytableP", "Recycle",
                       "Shelves", "Teddy", "Vintage")
#: The 2005 scenes whose ground truth was released (Computer, Drumsticks, Dwarves: not).
_SCENES_2005 = ("Art", "Books", "Dolls", "Laundry", "Moebius", "Reindeer")
_SCENES_2006 = ("Aloe", "Baby1", "Baby2", "Baby3", "Bowling1", "Bowling2", "Cloth1", "Cloth2",
                "Cloth3", "Cloth4", "Flowerpots", "Lampshade1", "Lampshade2", "Midd1", "Midd2",
                "Monopoly", "Plastic", "Rocks1", "Rocks2", "Wood1", "Wood2")
#: The 23 scenes of 2014 with public ground truth.
_SCENES_2014 = ("Adirondack", "Backpack", "Bicycle1", "Cable", "Classroom1", "Couch", "Flowers",
                "Jadeplant", "Mask", "Motorcycle", "Piano", "Pipes", "Playroom", "Playtable",
                "Recycle", "Shelves", "Shopvac", "Sticks", "Storage", "Sword1", "Sword2",
                "Umbrella", "Vintage")
_FILES_0506 = ("view1.png", "view5.png", "disp1.png", "disp5.png")
_FILES_EVAL3 = ("im0.png", "im1.png", "calib.txt", "disp0GT.pfm", "mask0nocc.png")
_FILES_2014 = ("im0.png", "im1.png", "disp0.pfm", "disp1.pfm", "calib.txt")
_MIDDLEBURY_LOADER = "MiddleburyScenes / MiddleburyDataModule (configs/middlebury_*.yaml)"
_MIDDEVAL3_SIZE_WORDS = {"Q": "quarter", "H": "half", "F": "full"}


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its URL and, where known, its size and SHA-256."""

    url: str
    size: int | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        """The file name the download is stored under (the URL's last part)."""
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset of :data:`CATALOGUE`: where it comes from and where it goes.

    Args:
        name: the name ``node-dada data download`` takes.
        what: one phrase on what it is.
        approx_size: the download size, for people (``"~45 MB"``).
        layout: where it lands under ``--root`` (shown by ``data list``).
        loader: which loader and configs read it.
        files: the files to download (none: ``manual`` says where to get it).
        archive: ``"zip"`` (unpacked into ``target``) or ``"file"`` (stored as ``target``).
        target: the folder the scene folders go into, or the file path, under ``--root``.
        scenes_under: the folder inside the archives that holds the scene folders;
            None: every folder of the archives holding one of ``required``.
        required: the files every scene folder must hold.
        scenes: the scene names expected (how an existing copy is recognised).
        manual: for a dataset without a direct URL: where and how to get it.
        note: anything else ``data list`` should say.
    """

    name: str
    what: str
    approx_size: str
    layout: str
    loader: str
    files: tuple[RemoteFile, ...] = ()
    archive: Literal["zip", "file"] = "zip"
    target: str = ""
    scenes_under: str | None = None
    required: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    manual: str | None = None
    note: str = ""


def _middlebury0506(year: str, count: str, approx: str, scenes: tuple[str, ...]
                    ) -> DatasetEntry:
    return DatasetEntry(
        name=f"middlebury{year}",
        what=f"Middlebury {year} stereo, third size, 2 views ({count})",
        approx_size=approx,
        layout="<root>/middlebury0506/ThirdSize/<Scene>/{view1,view5,disp1,disp5}.png",
        loader=f"{_MIDDLEBURY_LOADER}, root <root>/middlebury0506/ThirdSize",
        files=(RemoteFile(f"{_MIDDLEBURY}/data/scenes{year}/ThirdSize/zip-2views/"
                          "ALL-2views.zip"),),
        target="middlebury0506/ThirdSize",
        required=_FILES_0506,
        scenes=scenes,
        note="dmin.txt is not in the zips: metric depth needs it per scene (add it by "
             "hand), else use target=disparity or missing_dmin=skip",
    )


def _middeval3(size: str, approx: str) -> DatasetEntry:
    return DatasetEntry(
        name=f"middeval3-{size}",
        what=f"Middlebury 2014 stereo evaluation (MiddEval3), 15 training scenes at "
             f"{_MIDDEVAL3_SIZE_WORDS[size]} size, data + ground truth",
        approx_size=approx,
        layout=f"<root>/middlebury2014/MiddEval3/training{size}/<Scene>/"
               "{im0.png,im1.png,calib.txt,disp0GT.pfm,mask0nocc.png}",
        loader=f"{_MIDDLEBURY_LOADER}, root <root>/middlebury2014",
        files=(RemoteFile(f"{_MIDDLEBURY}/submit3/zip/MiddEval3-data-{size}.zip"),
               RemoteFile(f"{_MIDDLEBURY}/submit3/zip/MiddEval3-GT0-{size}.zip")),
        target=f"middlebury2014/MiddEval3/training{size}",
        scenes_under=f"MiddEval3/training{size}",
        required=_FILES_EVAL3,
        scenes=_MIDDEVAL3_TRAINING,
        note="test scenes (no ground truth) are not unpacked; with several sizes side by "
             "side the loader needs middeval3_size",
    )


#: Every dataset ``node-dada data`` knows, by name.
CATALOGUE: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        _middlebury0506("2005", "6 scenes with ground truth", "~4 MB (est.)", _SCENES_2005),
        _middlebury0506("2006", "21 scenes", "~11 MB (est.)", _SCENES_2006),
        _middeval3("Q", "~45 MB"),
        _middeval3("H", "~0.2 GB (est.)"),
        _middeval3("F", "~0.7 GB (est.)"),
        DatasetEntry(
            name="middlebury2014",
            what="Middlebury 2014 stereo, full size, the 23 scenes with ground truth "
                 "(perfect rectification), one zip each",
            approx_size="~2 GB (est.)",
            layout="<root>/middlebury2014-full/2014/<Scene>-perfect/"
                   "{im0.png,im1.png,disp0.pfm,disp1.pfm,calib.txt}",
            loader=f"{_MIDDLEBURY_LOADER}, root <root>/middlebury2014-full",
            files=tuple(RemoteFile(f"{_MIDDLEBURY}/data/scenes2014/zip/{scene}-perfect.zip")
                        for scene in _SCENES_2014),
            target="middlebury2014-full/2014",
            required=_FILES_2014,
            scenes=tuple(f"{scene}-perfect" for scene in _SCENES_2014),
            note="kept apart from <root>/middlebury2014 so that MiddEval3 is not read twice",
        ),
        DatasetEntry(
            name="nyuv2",
            what="NYU Depth v2, labeled set (1449 RGB-D frames, one MATLAB v7.3 file)",
            approx_size="2.8 GB",
            layout=f"<root>/nyu_depth_v2/{NYUV2_FILE_NAME}",
            loader="NYUv2Scenes / NYUv2DataModule (configs/nyuv2_*.yaml: data.init_args.root "
                   "= the .mat; the 849/300/300 split ships with the package)",
            files=(RemoteFile("http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/"
                              f"{NYUV2_FILE_NAME}"),),
            archive="file",
            target=f"nyu_depth_v2/{NYUV2_FILE_NAME}",
        ),
        DatasetEntry(
            name="diml",
            what="DIML/CVL indoor RGB-D, HR train/test (manual download)",
            approx_size="tens of GB",
            layout="<root>/DIML/npy/{images,depth}_{train,val,test}_HR.npy",
            loader="DIMLScenes / DIMLDataModule (configs/diml_*.yaml, root <root>/DIML)",
            manual=f"no direct official URL: get the indoor HR data from {DIML_DOWNLOAD}, "
                   "then run python -m node_dada.data.diml_convert <raw folder> --out "
                   "<root>/DIML",
        ),
        DatasetEntry(
            name="rgbdd",
            what="RGB-D-D (He et al., CVPR 2021), real phone ToF + Helios ToF depth "
                 "(manual download, evaluation only)",
            approx_size="a few GB",
            layout="<root>/rgbdd/{test,realscene}/{RGB,Depth,DepthLR}/",
            loader="benchmarks/sensors.py --part real --rgbdd <root>/rgbdd/realscene",
            manual="no direct official URL: the data is released after a signed release "
                   "agreement, see https://github.com/lingzhi96/RGB-D-D-Dataset; unpack it "
                   "so that <root>/rgbdd/realscene/{RGB,Depth,DepthLR}/ exist",
        ),
    )
}


@dataclass
class FetchReport:
    """What :func:`fetch_dataset` did.

    Attributes:
        name: the dataset.
        path: where it is (the scene folder's parent, or the file).
        downloaded: files fetched now.
        reused: files that were already complete (verified, not fetched again).
        installed: scene folders moved into place now.
        kept: scene folders (or the file) that existed and were left as they were.
        incomplete: of ``kept``, those lacking required files (``--force`` replaces them).
        left_out: scenes of the archives lacking required files -> the missing names.
    """

    name: str
    path: Path
    downloaded: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- download


class _Restart(Exception):
    """The partial file cannot be resumed: it was removed, start again from byte 0."""


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_existing(path: Path, *, sha256: str | None, size: int | None) -> None:
    """Check a file that is already in place (no download): size, then SHA-256."""
    if size is not None and path.stat().st_size != size:
        raise DataError(
            f"{path}: expected {size} bytes, found {path.stat().st_size}; it is not the "
            "complete file: delete it or rerun with --force")
    if sha256 is not None:
        actual = _sha256_of(path)
        if actual != sha256.lower():
            raise DataError(
                f"{path}: expected sha256 {sha256.lower()}, got {actual}; it is not the "
                "expected file: delete it or rerun with --force")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) -> (START, TOTAL), None where absent."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    start = span.partition("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


@contextmanager
def _progress_bar(total: int | None, initial: int, label: str,
                  enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr when tqdm is importable and ``enabled``; else a no-op."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar
        tqdm = None
    if tqdm is None or not enabled:
        yield None
        return
    with tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
              desc=label, file=sys.stderr, leave=False) as bar:
        yield bar


def _fetch_into(url: str, part: Path, offset: int, *, label: str, folder: Path,
                progress: bool) -> int | None:
    """One request: write (or append to) ``part``; return the size the server announced.

    Raises :class:`http.client.IncompleteRead` when the body ends short (a dropped
    connection), :class:`_Restart` when the partial file had to be discarded.
    """
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    by_hand = f"download {url} by hand into {folder}"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing left after `offset`: the partial file is complete, or too long.
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return total
            part.unlink(missing_ok=True)
            raise _Restart from None
        raise DataError(f"{url}: the server answered HTTP {error.code} {error.reason}; check "
                        f"that the file still exists on {_host(url)}, or {by_hand}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, (ConnectionResetError, TimeoutError)):
            raise reason from None  # a dropped connection: the caller retries
        raise DataError(f"cannot reach {_host(url)} ({reason}): check the connection or "
                        f"{by_hand}") from None
    with response:
        length_text = response.headers.get("Content-Length", "")
        length = int(length_text) if length_text.isdigit() else None
        if offset and response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Restart
            mode = "ab"
            expected = total if total is not None else (
                offset + length if length is not None else None)
        else:  # the whole file: no partial file, or a server that ignores Range
            offset, mode, expected = 0, "wb", length
        received = offset
        with open(part, mode) as out, _progress_bar(expected, offset, label, progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    if expected is not None and received < expected:
        # http.client returns a short body without complaint when the peer closes early.
        raise http.client.IncompleteRead(b"", expected - received)
    return expected


def download_file(url: str, dest: str | Path, *, sha256: str | None = None,
                  size: int | None = None, progress: bool = True, retries: int = 3,
                  force: bool = False) -> Path:
    """Download ``url`` to ``dest``, resumably and atomically; return ``dest``.

    The bytes go to ``<dest>.part``; an existing ``.part`` is resumed with a
    ``Range: bytes=<its size>-`` request (a ``206`` answer is appended, a ``200``
    starts over). A dropped connection (short body, reset, time-out) is retried up to
    ``retries`` times, resuming each time. ``.part`` becomes ``dest`` only once its
    size matches ``size`` (or the server's ``Content-Length``) and its SHA-256 matches
    ``sha256``; a wrong digest removes ``.part``. An existing ``dest`` is verified
    instead of downloaded again, unless ``force``.

    Raises:
        DataError: unreachable host, HTTP error, too many dropped connections, wrong
            size or digest (the message names the file and what to do).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file() and not force:
        _verify_existing(dest, sha256=sha256, size=size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if force:
        part.unlink(missing_ok=True)
    expected: int | None = size
    drops = 0
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if size is not None and offset == size:
            break  # an earlier run got every byte
        try:
            announced = _fetch_into(url, part, offset, label=dest.name, folder=dest.parent,
                                    progress=progress)
        except _Restart:
            continue
        except (http.client.IncompleteRead, ConnectionResetError, TimeoutError) as error:
            drops += 1
            if drops > retries:
                last = (f"the body ended {error.expected} bytes short"
                        if isinstance(error, http.client.IncompleteRead)
                        else f"{type(error).__name__}: {error}")
                raise DataError(
                    f"{url}: the connection dropped {drops} times (last: {last}); rerun the "
                    f"same command to resume from {part}") from None
            time.sleep(RETRY_DELAY_S * drops)
            continue
        if expected is None:
            expected = announced
        break
    got = part.stat().st_size if part.is_file() else 0
    if expected is not None and got != expected:
        part.unlink(missing_ok=True)
        raise DataError(f"{dest.name}: expected {expected} bytes, got {got}; removed {part}, "
                        "rerun to download it again")
    if sha256 is not None:
        actual = _sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise DataError(
                f"{dest.name}: expected sha256 {sha256.lower()}, got {actual}; the download "
                f"is corrupt or the file changed on {_host(url)}; removed {part}, rerun to "
                "download it again")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- unpack


def _check_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse an archive with a member that would land outside the unpack folder."""
    for member in archive.namelist():
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if (member.startswith(("/", "\\")) or ".." in parts
                or (parts and ":" in parts[0])):
            raise DataError(
                f"{path}: member {member!r} has an absolute path or '..'; refused to unpack "
                "it (it is not the expected archive): delete it and download it again")


def _unpack_zip(path: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive, path)
            archive.extractall(into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable zip ({error}); delete it or rerun with "
                        "--force to download it again") from None


def _scene_folders(staging: Path, entry: DatasetEntry, archives: list[Path]) -> list[Path]:
    """The scene folders the unpacked archives hold."""
    if entry.scenes_under is not None:
        base = staging / entry.scenes_under
        if not base.is_dir():
            raise DataError(
                f"{', '.join(p.name for p in archives)}: expected a folder "
                f"{entry.scenes_under}/ inside, found none; the archives are not the expected "
                "ones: delete them or rerun with --force")
        return sorted(p for p in base.iterdir() if p.is_dir())
    found = {file.parent for name in entry.required for file in staging.rglob(name)}
    return sorted(found)


def _existing_scenes(entry: DatasetEntry, target: Path) -> tuple[list[str], list[str]]:
    """(present, incomplete) scene folders of ``entry`` already in ``target``."""
    if entry.scenes:
        present = [s for s in entry.scenes if (target / s).exists()]
    else:
        present = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
    incomplete = [s for s in present
                  if any(not (target / s / name).is_file() for name in entry.required)]
    return present, incomplete


def _install(scene: Path, destination: Path, trash: Path) -> None:
    """Move ``scene`` to ``destination``, replacing an older copy (moved to ``trash``)."""
    if destination.exists():
        os.replace(destination, trash / destination.name)
    os.replace(scene, destination)


def _unpack(entry: DatasetEntry, archives: list[Path], target: Path, *, force: bool,
            report: FetchReport) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{_STAGING_PREFIX}{entry.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted earlier run
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{entry.name}-", dir=target.parent))
    try:
        unpacked = staging / "unpacked"
        trash = staging / "replaced"
        trash.mkdir()
        for archive in archives:
            _unpack_zip(archive, unpacked)
        complete: list[Path] = []
        for folder in _scene_folders(unpacked, entry, archives):
            missing = [name for name in entry.required if not (folder / name).is_file()]
            if missing:
                report.left_out[folder.name] = missing
            else:
                complete.append(folder)
        if not complete:
            raise DataError(
                f"{', '.join(p.name for p in archives)}: no scene holds all of "
                f"{', '.join(entry.required)}; the archives are not the expected ones: "
                "delete them or rerun with --force")
        names = [folder.name for folder in complete]
        if len(set(names)) != len(names):
            raise DataError(f"{', '.join(p.name for p in archives)}: several scene folders "
                            f"share a name ({sorted(names)}); cannot tell which to keep")
        target.mkdir(parents=True, exist_ok=True)
        for folder in complete:
            destination = target / folder.name
            if destination.exists() and not force:
                report.kept.append(folder.name)
                continue
            _install(folder, destination, trash)
            report.installed.append(folder.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- datasets


def fetch_dataset(name: str, root: str | Path, *, force: bool = False, progress: bool = True,
                  catalogue: dict[str, DatasetEntry] | None = None) -> FetchReport:
    """Download dataset ``name`` of ``catalogue`` (default :data:`CATALOGUE`) under ``root``.

    Archives go to ``<root>/downloads/``, are unpacked and checked scene by scene, and
    the complete scenes are moved to ``<root>/<entry.target>/``. Scene folders that
    already exist are kept as they are, unless ``force`` (which also downloads every
    file again); when all expected scenes exist, nothing is downloaded.

    Raises:
        InputValueError: ``name`` is not in the catalogue.
        DataError: a dataset without a direct URL (the message says where to get it),
            or a failed download, verification or unpack.
    """
    table = CATALOGUE if catalogue is None else catalogue
    if name not in table:
        raise InputValueError(f"expected a dataset name of `node-dada data list` "
                              f"({', '.join(table)}), got {name!r}")
    entry = table[name]
    if entry.manual is not None or not entry.files:
        raise DataError(entry.manual or f"{name}: no file to download")
    root = Path(root)
    target = root / entry.target
    report = FetchReport(name=name, path=target)
    if entry.archive == "file":
        remote = entry.files[0]
        existed = target.is_file() and not force
        download_file(remote.url, target, sha256=remote.sha256, size=remote.size,
                      progress=progress, force=force)
        (report.reused if existed else report.downloaded).append(target)
        if existed:
            report.kept.append(target.name)
        return report
    present, incomplete = _existing_scenes(entry, target)
    if not force and present and set(present) >= set(entry.scenes):
        # every expected scene is there (or any content, where the scenes are not listed)
        report.kept, report.incomplete = present, incomplete
        return report
    archives = []
    for remote in entry.files:
        path = root / DOWNLOADS_FOLDER / remote.name
        existed = path.is_file() and not force
        download_file(remote.url, path, sha256=remote.sha256, size=remote.size,
                      progress=progress, force=force)
        (report.reused if existed else report.downloaded).append(path)
        archives.append(path)
    _unpack(entry, archives, target, force=force, report=report)
    report.incomplete = [s for s in report.kept if s in incomplete]
    return report


def format_catalogue(catalogue: dict[str, DatasetEntry] | None = None) -> str:
    """``node-dada data list``: one line per dataset."""
    table = CATALOGUE if catalogue is None else catalogue
    width = max(map(len, table))
    lines = []
    for name, entry in table.items():
        how = f"; manual download: {entry.manual}" if entry.manual else ""
        note = f"; {entry.note}" if entry.note else ""
        lines.append(f"{name:<{width}}  {entry.what}; {entry.approx_size}; -> {entry.layout}; "
                     f"read by {entry.loader}{note}{how}")
    return "\n".join(lines) + "\n"


def describe(report: FetchReport, *, downloads: Path | None = None) -> str:
    """What :func:`fetch_dataset` did, for people (the lines ``data download`` prints)."""
    lines = []
    if report.downloaded:
        lines.append(f"downloaded {', '.join(p.name for p in report.downloaded)}")
    if report.reused:
        lines.append(f"already complete, not downloaded again: "
                     f"{', '.join(p.name for p in report.reused)}")
    if report.installed:
        lines.append(f"unpacked {len(report.installed)} scene(s) into {report.path}: "
                     f"{', '.join(report.installed)}")
    if report.kept and not report.installed and not report.downloaded:
        lines.append(f"{report.path} is already there ({len(report.kept)} item(s)): not "
                     "overwritten; rerun with --force to download and replace it")
    elif report.kept:
        lines.append(f"kept existing, not overwritten (--force replaces them): "
                     f"{', '.join(report.kept)}")
    if report.incomplete:
        lines.append(f"incomplete existing scene(s), lacking files: "
                     f"{', '.join(report.incomplete)} (--force replaces them)")
    if report.left_out:
        lines.append("left out (the archive lacks files): " + "; ".join(
            f"{scene} (no {', '.join(missing)})" for scene, missing in report.left_out.items()))
    if downloads is not None and report.downloaded and report.installed:
        lines.append(f"the archives stay in {downloads} (delete them to save space)")
    lines.append(f"{report.name}: {report.path}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from node_dada.commands.data import main

    raise SystemExit(main())
