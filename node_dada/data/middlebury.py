"""Middlebury stereo scenes as guided depth super-resolution data (docs/design.md section 6).

Layouts (``root`` is either the parent of year folders or one folder of scenes)::

    <root>/2005/<Scene>/view1.png view5.png disp1.png disp5.png dmin.txt
    <root>/2006/<Scene>/...        (same files as 2005)
    <root>/2014/<Scene>-perfect/im0.png im1.png disp0.pfm disp1.pfm calib.txt
    <root>/MiddEval3/training{Q,H,F}/<Scene>/im0.png disp0GT.pfm calib.txt
    # or flat: <root>/<Scene>/... (e.g. the ThirdSize folder of the 2005/2006 sets,
    # or one MiddEval3 training{Q,H,F} folder)

``root`` may also be a list of such folders, which are read together (for
example the 2005/2006 ThirdSize scenes and MiddEval3 ``trainingQ``).

2005/2006: ``disp*.png`` values are the FULL-size disparity at every
resolution (0 = unknown), ``dmin.txt`` the full-size offset, so
``depth mm = 3740 * 160 / (disp + dmin)``. A scene without ``dmin.txt`` has no
metric depth: it is refused, unless ``target="disparity"`` (learn on disparity
in pixels), ``missing_dmin="skip"`` (leave it out) or ``missing_dmin="assume"``
(give it an assumed offset, by default the median ``dmin.txt`` of the training
scenes that have one: a plausible, not the true, depth, for training only; see
docs/design.md section 6).
2014: ``depth mm = f * baseline / (disp + doffs)`` from ``calib.txt``; ``inf``
disparity = unknown; ``*-imperfect`` scenes are skipped.
MiddEval3 (the 2014 scenes as the stereo evaluation ships them, at quarter,
half or full size): the same formula with the ``calib.txt`` of that size, left
view only (``disp0GT.pfm``, rows bottom-up, ``inf`` = unknown). The variants
``<Scene>E`` and ``<Scene>L`` share ``im0.png`` and the ground truth with their
base scene, so for single-view super-resolution they repeat it and are left
out; ``<Scene>P`` (imperfect rectification, its own ground truth) is kept. A
variant always follows its base scene's split.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from node_dada.data.io import guide_to_float, read_image, read_number, read_pfm, require_dir
from node_dada.data.pipeline import Scene
from node_dada.errors import DataError, InputValueError

__all__ = [
    "MIDDLEBURY_2005_2006_BASELINE_MM",
    "MIDDLEBURY_2005_2006_FOCAL_PX",
    "MIDDLEBURY_DEPTH_SCALE_MM",
    "MIDDLEBURY_DISPARITY_SCALE_PX",
    "MIDDLEBURY_DOWNLOAD",
    "MIDDLEBURY_TEST_SCENES",
    "MIDDLEBURY_VAL_SCENES",
    "MIDDEVAL3_SIZES",
    "MiddleburyScenes",
    "disparity_to_depth_2005_2006",
    "middlebury_split",
    "read_calibration",
]

#: Depth divisor of the Middlebury benchmark, mm (the reference's depth standard deviation).
MIDDLEBURY_DEPTH_SCALE_MM = 1122.7
#: Divisor of the disparity target mode, px: the standard deviation of the 2005/2006
#: ``disp1.png`` values (full-size disparity) over all 27 scenes, 45.2 (measured on the
#: third-size set; mean 117.7). The analogue of the depth scale above.
MIDDLEBURY_DISPARITY_SCALE_PX = 45.2
#: 2005/2006 full-size focal length (px) and baseline (mm), from the dataset's web page.
MIDDLEBURY_2005_2006_FOCAL_PX = 3740.0
MIDDLEBURY_2005_2006_BASELINE_MM = 160.0
#: Reference split (docs/design.md section 6); 2014 names without the ``-perfect`` suffix.
MIDDLEBURY_TEST_SCENES = ("Reindeer", "Bowling1", "Bowling2", "Adirondack", "Motorcycle")
MIDDLEBURY_VAL_SCENES = ("Moebius", "Lampshade1", "Lampshade2", "Shelves", "Playtable")
MIDDLEBURY_DOWNLOAD = (
    "https://vision.middlebury.edu/stereo/data/ (2005: scenes2005/, 2006: scenes2006/, "
    "2014: scenes2014/; MiddEval3: https://vision.middlebury.edu/stereo/submit3/, the "
    "MiddEval3-data-{Q,H,F}.zip and MiddEval3-GT0-{Q,H,F}.zip files unzipped into one folder)"
)
#: MiddEval3 sizes: quarter, half and full (``training{Q,H,F}`` folders).
MIDDEVAL3_SIZES = ("Q", "H", "F")
#: MiddEval3 variants: E (exposure) and L (lighting) repeat their base scene's left
#: image and ground truth; P (imperfect rectification) has its own.
_MIDDEVAL3_VARIANTS = {"E": False, "L": False, "P": True}
_MIDDEVAL3_BASES = ("Adirondack", "ArtL", "Jadeplant", "Motorcycle", "Piano", "Pipes",
                    "Playroom", "Playtable", "Recycle", "Shelves", "Teddy", "Vintage")
_YEARS = ("2005", "2006", "2014")
_LAYOUT = (
    "  <root>/2005/<Scene>/{view1,view5}.png {disp1,disp5}.png dmin.txt\n"
    "  <root>/2006/<Scene>/(same as 2005)\n"
    "  <root>/2014/<Scene>-perfect/{im0,im1}.png {disp0,disp1}.pfm calib.txt\n"
    "  <root>/MiddEval3/training{Q,H,F}/<Scene>/im0.png disp0GT.pfm calib.txt\n"
    "  or a flat folder of scenes: <root>/<Scene>/..."
)
_FILES_0506 = ("view1.png", "view5.png", "disp1.png", "disp5.png")
_FILES_2014 = ("im0.png", "im1.png", "disp0.pfm", "disp1.pfm", "calib.txt")
_FILES_EVAL3 = ("im0.png", "disp0GT.pfm", "calib.txt")
_REQUIRED = {"0506": _FILES_0506, "2014": _FILES_2014, "eval3": _FILES_EVAL3}

Split = Literal["train", "val", "test", "all"]
Target = Literal["depth", "disparity"]


def _middeval3_variant(name: str) -> tuple[str, str | None]:
    """``(base scene, variant letter)`` of a MiddEval3 folder name (letter None: no variant)."""
    if name[-1:] in _MIDDEVAL3_VARIANTS and name[:-1] in _MIDDEVAL3_BASES:
        return name[:-1], name[-1]
    return name, None


def middlebury_split(scene_dir_name: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a scene folder name (``-perfect`` and
    MiddEval3 variant letters ignored: a variant follows its base scene)."""
    base, _ = _middeval3_variant(scene_dir_name.removesuffix("-perfect"))
    if base in MIDDLEBURY_TEST_SCENES:
        return "test"
    if base in MIDDLEBURY_VAL_SCENES:
        return "val"
    return "train"


def disparity_to_depth_2005_2006(disparity: np.ndarray, dmin: float) -> np.ndarray:
    """2005/2006 disparity PNG values -> depth in mm, NaN where the value is 0 (unknown).

    ``depth = 3740 * 160 / (disp + dmin)`` (full-size focal length and
    baseline; the PNG holds full-size disparity at every resolution).
    """
    disparity = disparity.astype(np.float64)
    depth = np.full(disparity.shape, np.nan)
    valid = disparity > 0
    depth[valid] = (
        MIDDLEBURY_2005_2006_FOCAL_PX * MIDDLEBURY_2005_2006_BASELINE_MM
        / (disparity[valid] + dmin)
    )
    return depth.astype(np.float32)


def read_calibration(path: str | Path) -> dict[str, float]:
    """Read a Middlebury 2014 ``calib.txt``: focal length ``f`` (px, from ``cam0``),
    ``baseline`` (mm), ``doffs`` (px), ``width`` and ``height`` (px)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"calibration: expected {path}, found nothing; re-download the scene")
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            entries[key.strip()] = value.strip()
    try:
        focal = float(entries["cam0"].strip("[]").replace(";", " ").split()[0])
        result = {"f": focal, "baseline": float(entries["baseline"]),
                  "doffs": float(entries["doffs"])}
        for key in ("width", "height"):
            if key in entries:
                result[key] = float(entries[key])
    except (KeyError, ValueError, IndexError):
        raise DataError(
            f"calibration: expected cam0=[f 0 cx; ...], baseline= and doffs= lines in {path}, "
            f"got keys {sorted(entries)}; the file is corrupt, re-download the scene"
        ) from None
    return result


@dataclass(frozen=True)
class _View:
    name: str
    kind: Literal["0506", "2014", "eval3"]
    folder: Path
    view: int
    dmin: float | None


def _scene_kind(folder: Path) -> str | None:
    names = {p.name for p in folder.iterdir()}
    if names & {"view1.png", "disp1.png", "dmin.txt"}:
        return "0506"
    if "disp0GT.pfm" in names:
        return "eval3"
    if names & {"im0.png", "disp0.pfm", "calib.txt"}:
        return "2014"
    return None


def _middeval3_folder(root: Path, size: str | None) -> Path | None:
    """The ``training<size>`` folder under ``root`` (itself, ``root/training<size>`` or
    ``root/MiddEval3/training<size>``), or None when ``root`` is no MiddEval3 tree."""
    for parent in (root / "MiddEval3", root):
        present = [s for s in MIDDEVAL3_SIZES if (parent / f"training{s}").is_dir()]
        if not present:
            continue
        if size is None:
            if len(present) > 1:
                raise InputValueError(
                    f"Middlebury: {parent} holds MiddEval3 at several sizes "
                    f"({', '.join('training' + s for s in present)}); choose one with "
                    f"middeval3_size={present[0]!r} (Q quarter, H half, F full)"
                )
            size = present[0]
        if size not in present:
            raise DataError(
                f"Middlebury: {parent} has no training{size} folder (found "
                f"{', '.join('training' + s for s in present)}); download "
                f"MiddEval3-data-{size}.zip and MiddEval3-GT0-{size}.zip or choose "
                f"middeval3_size={present[0]!r}"
            )
        return parent / f"training{size}"
    return None


def _median_train_dmin(folders: Sequence[tuple[str, Path]]) -> float:
    """Median ``dmin.txt`` of the training-split 2005/2006 scenes among ``folders``."""
    values = [
        read_number(folder / "dmin.txt", what=f"Middlebury {folder.name} dmin")
        for _, folder in folders
        if _scene_kind(folder) == "0506" and (folder / "dmin.txt").is_file()
        and middlebury_split(folder.name) == "train"
    ]
    if not values:
        raise DataError(
            "Middlebury: missing_dmin='assume' needs an offset, and no training scene "
            "under the root has a dmin.txt to take the median of; pass assumed_dmin= (the "
            "2005/2006 scenes have 200-300)"
        )
    return float(np.median(values))


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: expected a PNG image, could not read it ({error})") from None
    return height, width


class MiddleburyScenes:
    """Middlebury scenes of one split, one item per view (both views by default,
    as in the reference protocol).

    Args:
        root: parent of ``2005/``, ``2006/``, ``2014/``, a MiddEval3 tree, a flat
            folder of scenes, or a list of those (read together, in order).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        years: year folders to use when ``root`` has them.
        target: ``"depth"`` (mm) or ``"disparity"`` (px, needs no ``dmin.txt``).
        missing_dmin: what to do in depth mode with a 2005/2006 scene without
            ``dmin.txt``: ``"error"`` (default), ``"skip"`` (warn and leave it
            out) or ``"assume"`` (warn and give a training-split scene
            ``assumed_dmin``: a plausible depth with the true edges; validation
            and test scenes are left out, since an assumed depth is not scored).
        assumed_dmin: the full-size disparity offset of ``missing_dmin="assume"``;
            None: the median ``dmin.txt`` of the training-split 2005/2006 scenes
            under ``root`` (251 for the third-size set).
        views: ``"both"`` (views 1 and 5 / 0 and 1) or ``"left"`` (view 1 / 0).
        depth_scale: divisor of the target; default 1122.7 (mm) or 45.2 (px).
        middeval3_size: ``"Q"``, ``"H"`` or ``"F"``: which MiddEval3 ``training*``
            folder to read when a root holds several (None: the only one present).
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        *,
        split: Split = "train",
        years: tuple[str, ...] = _YEARS,
        target: Target = "depth",
        missing_dmin: Literal["error", "skip", "assume"] = "error",
        views: Literal["both", "left"] = "both",
        depth_scale: float | None = None,
        middeval3_size: str | None = None,
        assumed_dmin: float | None = None,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise InputValueError(f"split: expected train, val, test or all, got {split!r}")
        if target not in ("depth", "disparity"):
            raise InputValueError(f"target: expected 'depth' or 'disparity', got {target!r}")
        if missing_dmin not in ("error", "skip", "assume"):
            raise InputValueError(
                f"missing_dmin: expected 'error', 'skip' or 'assume', got {missing_dmin!r}"
            )
        if assumed_dmin is not None and not (np.isfinite(assumed_dmin) and assumed_dmin >= 0):
            raise InputValueError(
                f"assumed_dmin: expected a finite full-size disparity offset >= 0 (the "
                f"2005/2006 scenes have 200-300), got {assumed_dmin!r}"
            )
        if views not in ("both", "left"):
            raise InputValueError(f"views: expected 'both' or 'left', got {views!r}")
        unknown = set(years) - set(_YEARS)
        if unknown:
            raise InputValueError(f"years: expected a subset of {_YEARS}, got {sorted(unknown)}")
        if middeval3_size is not None and middeval3_size not in MIDDEVAL3_SIZES:
            raise InputValueError(
                f"middeval3_size: expected one of {MIDDEVAL3_SIZES} or None, got "
                f"{middeval3_size!r}"
            )
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        if not roots:
            raise InputValueError("root: expected a folder or a list of folders, got an empty list")
        self.roots = [
            require_dir(r, what="Middlebury", layout=_LAYOUT, download=MIDDLEBURY_DOWNLOAD)
            for r in roots
        ]
        self.root = self.roots[0]
        self._middeval3_size = middeval3_size
        self.split = split
        self.target = target
        self.unit = "mm" if target == "depth" else "px"
        default_scale = (
            MIDDLEBURY_DEPTH_SCALE_MM if target == "depth" else MIDDLEBURY_DISPARITY_SCALE_PX
        )
        self.depth_scale = float(default_scale if depth_scale is None else depth_scale)
        self.assumed_dmin = assumed_dmin
        self._views = self._discover(years, missing_dmin, views)
        self._shapes: dict[int, tuple[int, int]] = {}

    def _scene_folders(self, years: tuple[str, ...]) -> list[tuple[str, Path]]:
        parents: list[tuple[str, Path]] = []
        for root in self.roots:
            year_dirs = [root / y for y in _YEARS if (root / y).is_dir()]
            eval3 = _middeval3_folder(root, self._middeval3_size)
            if year_dirs:
                parents += [(y, root / y) for y in years if (root / y).is_dir()]
            if eval3 is not None:
                parents.append((f"MiddEval3/{eval3.name}", eval3))
            if not year_dirs and eval3 is None:
                parents.append(("", root))
        folders = []
        for prefix, parent in parents:
            for folder in sorted(parent.iterdir()):
                if folder.is_dir() and not folder.name.startswith((".", "_")):
                    folders.append((prefix, folder))
        return folders

    def _discover(
        self, years: tuple[str, ...], missing_dmin: str, views: str
    ) -> list[_View]:
        found: list[_View] = []
        skipped: list[str] = []
        assumed: list[str] = []
        ignored: list[str] = []
        folders = self._scene_folders(years)
        for prefix, folder in folders:
            kind = _scene_kind(folder)
            if kind is None:
                ignored.append(str(folder))
                continue
            if folder.name.endswith("-imperfect"):
                continue
            variant = _middeval3_variant(folder.name)[1] if kind == "eval3" else None
            if variant is not None and not _MIDDEVAL3_VARIANTS[variant]:
                continue  # E/L variants repeat their base scene's im0 and ground truth
            if self.split != "all" and middlebury_split(folder.name) != self.split:
                continue
            required = _REQUIRED[kind]
            missing = [name for name in required if not (folder / name).is_file()]
            if missing:
                raise DataError(
                    f"Middlebury: scene {folder} lacks {', '.join(missing)}.\n"
                    f"Expected layout:\n{_LAYOUT}\nDownload: {MIDDLEBURY_DOWNLOAD}"
                )
            dmin = None
            if kind == "0506" and self.target == "depth":
                if not (folder / "dmin.txt").is_file():
                    training = middlebury_split(folder.name) == "train"
                    if missing_dmin == "skip" or (missing_dmin == "assume" and not training):
                        skipped.append(folder.name)  # an assumed depth is never scored
                        continue
                    if missing_dmin == "error":
                        raise DataError(
                            f"Middlebury: scene {folder} has no dmin.txt, so its disparity "
                            "cannot be turned into metric depth. Add the scene's dmin.txt "
                            f"(full-size disparity offset, from {MIDDLEBURY_DOWNLOAD}), use "
                            "target='disparity', missing_dmin='skip' to leave such scenes "
                            "out, or missing_dmin='assume' to train on them with an assumed "
                            "offset"
                        )
                    if self.assumed_dmin is None:
                        self.assumed_dmin = _median_train_dmin(folders)
                    assumed.append(folder.name)
                    dmin = self.assumed_dmin
                else:
                    dmin = read_number(
                        folder / "dmin.txt", what=f"Middlebury {folder.name} dmin"
                    )
            if kind == "0506":
                numbers = (1, 5) if views == "both" else (1,)
            elif kind == "2014":
                numbers = (0, 1) if views == "both" else (0,)
            else:
                numbers = (0,)  # MiddEval3 ships ground truth for the left view only
            label = f"{prefix}/{folder.name}" if prefix else folder.name
            for view in numbers:
                found.append(_View(f"{label}/view{view}", kind, folder, view, dmin))
        if ignored:
            warnings.warn(
                f"Middlebury: ignored {len(ignored)} folder(s) that hold no scene files: "
                f"{', '.join(ignored[:5])}", stacklevel=3,
            )
        if skipped:
            warnings.warn(
                f"Middlebury: left out {len(skipped)} scene(s) without dmin.txt "
                f"(missing_dmin={missing_dmin!r}): {', '.join(skipped)}", stacklevel=3,
            )
        if assumed:
            warnings.warn(
                f"Middlebury: {len(assumed)} scene(s) without dmin.txt get the assumed "
                f"offset dmin={self.assumed_dmin:g} (missing_dmin='assume'; their depth is "
                f"plausible, not measured): {', '.join(assumed)}", stacklevel=3,
            )
        if not found:
            reason = (
                f" ({len(skipped)} left out for lack of dmin.txt; target='disparity' keeps them)"
                if skipped else ""
            )
            raise DataError(
                f"Middlebury: found no scene of split {self.split!r} under "
                f"{', '.join(map(str, self.roots))}{reason}.\n"
                f"Expected layout:\n{_LAYOUT}\nDownload: {MIDDLEBURY_DOWNLOAD}"
            )
        return found

    def __len__(self) -> int:
        return len(self._views)

    def scene_name(self, index: int) -> str:
        return self._views[index].name

    def _guide_path(self, view: _View) -> Path:
        name = f"view{view.view}.png" if view.kind == "0506" else f"im{view.view}.png"
        return view.folder / name

    def shape(self, index: int) -> tuple[int, int]:
        if index not in self._shapes:
            self._shapes[index] = _image_size(self._guide_path(self._views[index]))
        return self._shapes[index]

    def load(self, index: int) -> Scene:
        view = self._views[index]
        what = f"Middlebury {view.name}"
        guide = read_image(self._guide_path(view), what=f"{what} guide")
        if view.kind == "0506":
            disparity = read_image(view.folder / f"disp{view.view}.png", what=f"{what} disparity")
            if disparity.ndim != 2:
                raise DataError(
                    f"{what}: expected a single-channel disparity PNG, got shape {disparity.shape}"
                )
            if self.target == "depth":
                depth = disparity_to_depth_2005_2006(disparity, view.dmin)
            else:
                depth = np.where(disparity > 0, disparity, np.nan).astype(np.float32)
        else:
            name = "disp0GT.pfm" if view.kind == "eval3" else f"disp{view.view}.pfm"
            disparity = read_pfm(view.folder / name, what=f"{what} disparity")
            if disparity.ndim != 2:
                raise DataError(f"{what}: expected a single-channel PFM, got {disparity.shape}")
            valid = np.isfinite(disparity)
            if self.target == "depth":
                calib = read_calibration(view.folder / "calib.txt")
                denominator = disparity.astype(np.float64) + calib["doffs"]
                valid &= denominator > 0
                depth = np.full(disparity.shape, np.nan, np.float32)
                depth[valid] = calib["f"] * calib["baseline"] / denominator[valid]
            else:
                valid &= disparity > 0
                depth = np.where(valid, disparity, np.nan).astype(np.float32)
        if guide.shape[:2] != depth.shape:
            raise DataError(
                f"{what}: guide size {guide.shape[:2]} differs from disparity size "
                f"{depth.shape}; the scene's files do not belong together, re-download it"
            )
        return Scene(view.name, guide_to_float(guide, what=f"{what} guide"), depth=depth)
