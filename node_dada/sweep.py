"""``node-dada sweep configs/sweeps/<name>.yaml``: an ablation grid as one command
(docs/design.md sections 4, 7 and 8).

A sweep spec names a kind of measurement (``solver``: learning-free inference;
``gradient``: one forward and backward per gradient mode; ``fit``: a real
``node-dada fit`` then ``node-dada test``) and a grid of cells. The spec format,
every key of each kind and an example spec per kind are in ``docs/sweeps.md``;
the shipped specs are in ``configs/sweeps/``.

Outputs in the results folder: ``cells.csv`` (one row per finished cell with
its parameters, measurements, status, the command and the code that produced
it; rewritten atomically after each cell), ``README.md`` (the command, the data
and a table), PNG plots and ``setup.yaml`` (the data and shared settings the
rows depend on). A cell that fails (a solver beyond its stability limit, a
blown NFE budget, the naive adjoint diverging, a rejected override) is a row
with status ``failed`` or ``diverged`` and the error's first line, never a
crash; ``skipped`` marks cells left out on purpose. Re-running the command
skips every cell already in ``cells.csv`` (``--rerun-failed`` retries the
failures), so a killed sweep resumes where it stopped; a changed ``data`` or
shared section is refused rather than mixed with old rows. ``--replot`` redraws
the summary and plots from ``cells.csv`` alone, ``--list`` shows each cell's
state, ``--max-cells N`` stops after N new cells.

Time and memory are measured in-process, after a short warm-up of the same
call: peak memory is the rise of the resident set over the cell (Linux), with
glibc told to map every block of 4 KiB or more separately so that freed tensors
leave the resident set. The progress bar goes to stderr; the library part logs,
never prints.

The command line (its options and ``main``) is :mod:`node_dada.commands.sweep`.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import itertools
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from node_dada.errors import DataError, InputValueError, NodeDadaError, SolverError, error_line
from node_dada.evaluation.report import markdown_table, write_table
from node_dada.libc import LIBC, Libc, reset_resident_peak, resident_kib

__all__ = [
    "KINDS",
    "RUNNERS",
    "Cell",
    "SweepContext",
    "SweepSpec",
    "expand_grid",
    "load_spec",
    "read_cells",
    "run_sweep",
]

_log = logging.getLogger(__name__)

KINDS = ("solver", "gradient", "fit")
#: Where a sweep writes without --out: runs/sweeps/<name>, never a committed results folder.
DEFAULT_OUT = Path("runs") / "sweeps"
_TOP_KEYS = {"name", "kind", "description", "threads", "kernels", "data", "fixed", "grid",
             "gradient", "fit"}
_KERNEL_MODES = ("never", "auto", "always")
_DATA_KEYS = {"dataset", "root", "split", "views", "scale", "crop_size", "crops"}
_SOLVE_KEYS = ("method", "step_size", "rtol", "atol", "t_end", "projection", "max_nfe",
               "options")
_CELL_KEYS = {
    "solver": set(_SOLVE_KEYS),
    "gradient": {"grad_mode", "seed", *_SOLVE_KEYS},
    "fit": {"solver", "grad_mode", "method", "step_size", "rtol", "atol", "projection",
            "max_nfe", "lead_in", "train_iter", "seed_everything"},
}
_FIT_PREFIXES = ("model.", "data.", "trainer.", "checkpoint.", "optimizer.", "lr_scheduler.")
_SECTION_KEYS = {"gradient": {"reference_mode", "max_horizon"},
                 "fit": {"args", "keep_checkpoints"}}
_FLOAT_KEYS = {"step_size", "rtol", "atol", "t_end"}
_INT_KEYS = {"max_nfe", "seed", "lead_in", "train_iter"}
_DISCRETE_STEP = 0.24
_MIB = 1024.0


# --- the spec ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One point of the grid: ``params`` in grid order, ``label`` from the grid keys only."""

    params: dict[str, Any]
    grid_keys: tuple[str, ...]

    @property
    def id(self) -> str:
        """Identity in ``cells.csv``: every parameter, so a changed setting is a new cell."""
        return " ".join(f"{key}={_fmt(value)}" for key, value in self.params.items())

    @property
    def label(self) -> str:
        keys = self.grid_keys or tuple(self.params)
        return " ".join(f"{key}={_fmt(self.params[key])}" for key in keys if key in self.params)

    @property
    def slug(self) -> str:
        """A folder name for the cell's files."""
        text = "_".join(f"{key.split('.')[-1]}-{_fmt(self.params[key])}"
                        for key in (self.grid_keys or tuple(self.params)))
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:120] or "cell"


@dataclass
class SweepSpec:
    """A parsed, validated sweep spec (see the module docstring)."""

    name: str
    kind: str
    description: str = ""
    threads: int | None = 1
    kernels: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)
    section: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def cells(self) -> list[Cell]:
        return expand_grid(self.grid, self.fixed)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


def _coerce(key: str, value: Any, where: str) -> Any:
    """YAML reads ``1e-3`` as a string: numeric keys are converted, with a clear error."""
    name = key.split(".")[-1]
    if value is None:
        return None
    try:
        if name in _FLOAT_KEYS:
            return float(value)
        if name in _INT_KEYS:
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
    except (TypeError, ValueError):
        kind = "a number" if name in _FLOAT_KEYS else "an integer"
        raise InputValueError(f"{where}: {key} expected {kind}, got {value!r}") from None
    return value


def _check_cell_keys(kind: str, keys: Any, where: str) -> None:
    for key in keys:
        if not isinstance(key, str):
            raise InputValueError(f"{where}: keys must be strings, got {key!r}")
        if key in _CELL_KEYS[kind]:
            continue
        if kind == "fit" and key.startswith(_FIT_PREFIXES):
            continue
        allowed = sorted(_CELL_KEYS[kind])
        extra = f" or a dotted LightningCLI key ({', '.join(_FIT_PREFIXES)})" \
            if kind == "fit" else ""
        raise InputValueError(
            f"{where}: unknown key {key!r} for kind {kind!r}; expected one of "
            f"{', '.join(allowed)}{extra}"
        )


def expand_grid(grid: list[dict[str, Any]], fixed: dict[str, Any] | None = None) -> list[Cell]:
    """Cells of a list of sub-grids: within one, list values are crossed (dict order);
    ``fixed`` settings join every cell unless the sub-grid sets them. Duplicates are dropped."""
    fixed = fixed or {}
    cells: list[Cell] = []
    seen: set[str] = set()
    for sub in grid:
        keys = list(sub)
        choices = [v if isinstance(v, list) else [v] for v in sub.values()]
        for combo in itertools.product(*choices):
            params = dict(zip(keys, combo, strict=True))
            params.update({k: v for k, v in fixed.items() if k not in params})
            cell = Cell(params, tuple(keys))
            if cell.id not in seen:
                seen.add(cell.id)
                cells.append(cell)
    return cells


def _check_mapping(path: Path, value: object, name: str) -> None:
    if not isinstance(value, dict):
        raise InputValueError(f"sweep spec {path}: {name} expected a mapping, got {value!r}")


def _check_keys(path: Path, mapping: dict, allowed: set[str], where: str) -> None:
    """Refuse the first key of ``mapping`` outside ``allowed`` (``where``: its section)."""
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise InputValueError(
            f"sweep spec {path}: unknown key {unknown[0]!r}{where}; expected "
            f"{', '.join(sorted(allowed))}"
        )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec; problems raise ``InputValueError`` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"sweep spec: no file at {path}; expected configs/sweeps/<name>.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputValueError(f"sweep spec {path}: not valid YAML ({first})") from None
    if not isinstance(raw, dict):
        raise InputValueError(f"sweep spec {path}: expected a mapping at the top, got {raw!r}")
    _check_keys(path, raw, _TOP_KEYS, "")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise InputValueError(
            f"sweep spec {path}: kind expected one of {', '.join(KINDS)}, got {kind!r}"
        )
    name = raw.get("name") or path.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        raise InputValueError(
            f"sweep spec {path}: name expected letters, digits, _ . -; got {name!r}"
        )
    for section in ("gradient", "fit"):
        if section in raw and section != kind:
            raise InputValueError(
                f"sweep spec {path}: section {section!r} belongs to kind {section!r}, not {kind!r}"
            )
    section = raw.get(kind, {}) if kind in _SECTION_KEYS else {}
    _check_mapping(path, section, kind)
    _check_keys(path, section, _SECTION_KEYS.get(kind, set()), f" in section {kind!r}")
    data = raw.get("data") or {}
    _check_mapping(path, data, "data")
    _check_keys(path, data, _DATA_KEYS, " in data")
    if kind == "fit" and data:
        raise InputValueError(
            f"sweep spec {path}: a fit sweep takes its data from the LightningCLI arguments "
            "(fit: {args: [...]}), not from a data section"
        )
    fixed = raw.get("fixed") or {}
    grid = raw.get("grid")
    if isinstance(grid, dict):
        grid = [grid]
    if not isinstance(fixed, dict) or not isinstance(grid, list) or not grid or \
            not all(isinstance(sub, dict) and sub for sub in grid):
        raise InputValueError(
            f"sweep spec {path}: expected grid as a non-empty mapping or list of mappings and "
            "fixed as a mapping"
        )
    _check_cell_keys(kind, fixed, f"sweep spec {path}: fixed")
    fixed = {k: _coerce(k, v, f"sweep spec {path}: fixed") for k, v in fixed.items()}
    clean_grid = []
    for index, sub in enumerate(grid):
        where = f"sweep spec {path}: grid[{index}]"
        _check_cell_keys(kind, sub, where)
        clean_grid.append({
            k: [_coerce(k, x, where) for x in v] if isinstance(v, list) else _coerce(k, v, where)
            for k, v in sub.items()
        })
    threads = raw.get("threads", 1)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputValueError(
            f"sweep spec {path}: threads expected a positive integer, got {threads!r}"
        )
    kernels = raw.get("kernels")
    if kernels is not None and kernels not in _KERNEL_MODES:
        raise InputValueError(
            f"sweep spec {path}: kernels expected one of {', '.join(_KERNEL_MODES)}, got "
            f"{kernels!r}"
        )
    if kind == "fit" and not isinstance(section.get("args", []), list):
        raise InputValueError(f"sweep spec {path}: fit.args expected a list of CLI arguments")
    spec = SweepSpec(str(name), kind, str(raw.get("description") or "").strip(), threads,
                     kernels, data, fixed, clean_grid, dict(section), path)
    _check_values(spec)
    return spec


def _check_values(spec: SweepSpec) -> None:
    """Names that would only fail cell by cell are checked up front."""
    from node_dada.diffusion import ADAPTIVE_METHODS, FIXED_GRID_METHODS, GRAD_MODES, PROJECTIONS

    methods = (*FIXED_GRID_METHODS, *ADAPTIVE_METHODS)
    for cell in spec.cells():
        p = cell.params
        where = f"sweep spec {spec.path}: cell {cell.label!r}"
        if spec.kind in ("solver", "gradient"):
            allowed = (*methods, "discrete") if spec.kind == "solver" else methods
            if p.get("method", "euler") not in allowed:
                raise InputValueError(f"{where}: method expected one of {', '.join(allowed)}")
            if p.get("projection", "multiplicative") not in PROJECTIONS:
                raise InputValueError(f"{where}: projection expected one of {PROJECTIONS}")
            if "t_end" not in p:
                raise InputValueError(f"{where}: t_end (the horizon) is required")
        if spec.kind == "gradient" and p.get("grad_mode") not in ("unrolled", *GRAD_MODES):
            raise InputValueError(
                f"{where}: grad_mode expected one of unrolled, {', '.join(GRAD_MODES)}"
            )
    if spec.kind == "gradient":
        mode = spec.section.get("reference_mode", "direct")
        if mode not in GRAD_MODES:
            raise InputValueError(
                f"sweep spec {spec.path}: gradient.reference_mode expected one of {GRAD_MODES}"
            )


# --- measuring -----------------------------------------------------------------------


@contextlib.contextmanager
def _measuring_malloc() -> Iterator[None]:
    """Blocks of 4 KiB or more get their own mapping and go back to the system when
    freed, so the resident set follows live tensors (at a cost of ~10-30 % speed,
    the same for every cell). glibc's defaults are restored afterwards."""
    LIBC.mallopt(Libc.M_MMAP_THRESHOLD, 4096)
    LIBC.mallopt(Libc.M_TRIM_THRESHOLD, 0)
    try:
        yield
    finally:
        LIBC.mallopt(Libc.M_MMAP_THRESHOLD, Libc.DEFAULT)
        LIBC.mallopt(Libc.M_TRIM_THRESHOLD, Libc.DEFAULT)


@dataclass
class Measurement:
    seconds: float = math.nan
    peak_mib: float = math.nan


@contextlib.contextmanager
def measure() -> Iterator[Measurement]:
    """Wall time and the peak rise of the resident set (MiB) over the block.

    The kernel's high-water mark is reset through ``/proc/self/clear_refs``; where
    that is unavailable the memory stays NaN.
    """
    result = Measurement()
    gc.collect()
    LIBC.trim()
    before = resident_kib("VmRSS")
    reset = before is not None and reset_resident_peak()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        peak = resident_kib("VmHWM") if reset else None
        if peak is not None and before is not None:
            result.peak_mib = max(0.0, (peak - before) / _MIB)


def _kernel_mode(mode: str | None) -> contextlib.AbstractContextManager[Any]:
    """The whole sweep in one mode of the fused CPU kernels (``never``: eager torch)."""
    if mode is None:
        return contextlib.nullcontext()
    try:
        from node_dada.diffusion import fused
    except ImportError:
        if mode == "never":
            return contextlib.nullcontext()
        raise InputValueError(
            f"kernels: {mode!r} needs node_dada.diffusion.fused, which this build lacks; "
            "use kernels: never or leave the key out"
        ) from None
    return fused.using(mode)


def _compiled_kernels() -> contextlib.AbstractContextManager[Any]:
    """Warm-ups run on the fused kernels when the build has them, so that their one-off
    JIT compilation (or loading from numba's cache) is not part of a measured cell."""
    try:
        from node_dada.diffusion import fused
    except ImportError:
        return contextlib.nullcontext()
    if not fused.available() or fused.mode() == "never":
        return contextlib.nullcontext()
    return fused.using("always")


def _provenance() -> str:
    """The code a sweep ran: git commit (and whether the package had local changes) and
    the fused-kernel mode."""
    parts = []
    root = Path(__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "node_dada"], cwd=root,
                               text=True, capture_output=True, timeout=10, check=True).stdout
        parts.append(f"commit {commit}" + (" with uncommitted changes in node_dada/"
                                           if dirty.strip() else ""))
    with contextlib.suppress(ImportError):
        from node_dada.diffusion import fused

        parts.append(f"fused kernels {fused.mode() if fused.available() else 'unavailable'}")
    parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    if not isinstance(error, NodeDadaError):
        line = f"{type(error).__name__}: {line}"
    return line[:300]


# --- data for the solver and gradient kinds ------------------------------------------


@dataclass
class Problem:
    """The crops of a solver or gradient sweep, batched, with learning-free coefficients."""

    names: list[str]
    guide: torch.Tensor
    depth0: torch.Tensor
    source: torch.Tensor
    mask_lr: torch.Tensor
    target_mm: torch.Tensor  # NaN where invalid
    cv: torch.Tensor
    ch: torch.Tensor
    shift: float
    depth_scale: float
    scale: int
    description: str

    @property
    def max_coefficient(self) -> float:
        return float(torch.maximum(self.cv.max(), self.ch.max()))


def load_problem(data: dict[str, Any]) -> Problem:
    """Crops from ``data`` (see the module docstring) through the evaluation crop loader
    (:mod:`node_dada.evaluation.crops`)."""
    from node_dada.data.root import describe_search, resolve_data_path
    from node_dada.diffusion import learning_free_coefficients, shift_positive
    from node_dada.evaluation.crops import count_crops, eval_samples, load_scenes

    dataset = data.get("dataset", "middlebury")
    scale = int(data.get("scale", 8))
    crop = int(data.get("crop_size", 96))
    split = data.get("split", "test")
    if dataset == "motorcycle":
        scenes = load_scenes("motorcycle")
    elif dataset == "middlebury":
        if "root" not in data:
            raise InputValueError(
                "data.root: dataset middlebury needs the folder of its scenes, got none"
            )
        root = Path(data["root"])
        if not resolve_data_path(root).is_dir():
            raise DataError(
                f"data.root: no folder at {describe_search(root)}; name the Middlebury "
                "2005/2006 ThirdSize folder (`node-dada data download middlebury2005 --root "
                "data`)"
            )
        scenes = load_scenes("middlebury", root=root, split=split,
                             views=data.get("views", "left"))
    else:
        raise InputValueError(f"data.dataset: expected middlebury or motorcycle, got {dataset!r}")
    if scenes.unit != "mm":
        raise InputValueError(
            f"data: errors are reported in cm and need depth in mm, got {scenes.unit}"
        )
    count = count_crops(scenes, scale=scale, crop_size=crop)
    wanted = data.get("crops", 1)
    indices = list(range(min(int(wanted), count))) if isinstance(wanted, int) else list(wanted)
    bad = [i for i in indices if not (isinstance(i, int) and 0 <= i < count)]
    if bad or not indices:
        raise InputValueError(
            f"data.crops: expected indices in 0..{count - 1} of the {crop} px evaluation "
            f"grid (or a count), got {wanted!r}"
        )
    samples = list(eval_samples(scenes, scale=scale, crop_size=crop, indices=indices))
    stack = {key: torch.stack([getattr(s, key) for s in samples])
             for key in ("guide", "depth0", "source", "mask_lr", "target", "mask_hr")}
    depth_scale = samples[0].depth_scale
    target_mm = torch.where(stack["mask_hr"], stack["target"] * depth_scale,
                            torch.full_like(stack["target"], math.nan))
    source, depth0, shift = shift_positive(stack["source"], stack["depth0"], stack["mask_lr"])
    cv, ch = learning_free_coefficients(stack["guide"], depth0)
    where = "Middlebury third size" if dataset == "middlebury" else "Motorcycle (scikit-image)"
    text = (f"{where}, split {split}, x{scale}, {len(samples)} crop(s) of {crop} x {crop} px: "
            + ", ".join(s.name for s in samples))
    return Problem([s.name for s in samples], stack["guide"], depth0, source, stack["mask_lr"],
                   target_mm, cv, ch, float(shift), float(depth_scale), scale, text)


def _solve_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": params.get("method", "euler"),
        "step_size": params.get("step_size", _DISCRETE_STEP),
        "rtol": params.get("rtol"),
        "atol": params.get("atol"),
        "projection": params.get("projection", "multiplicative"),
        "max_nfe": params.get("max_nfe"),
        "options": params.get("options"),
    }


def _iterations(t_end: float, step: float) -> int:
    return max(1, round(t_end / step))


# --- the cells -----------------------------------------------------------------------


@dataclass
class SweepContext:
    """What the cells of one sweep share: the spec, the results folder and caches."""

    spec: SweepSpec
    out_dir: Path
    _problem: Problem | None = None
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def problem(self) -> Problem:
        if self._problem is None:
            self._problem = load_problem(self.spec.data)
        return self._problem


def run_solver_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """Learning-free inference without gradient; errors vs the discrete iteration and the GT."""
    from node_dada.diffusion import DEFAULT_STEP, discrete_dada, solve_ode
    from node_dada.diffusion.ode import FIXED_GRID_METHODS
    from node_dada.metrics import depth_errors

    p = cell.params
    prob = ctx.problem
    t_end = float(p["t_end"])
    args = (prob.depth0, prob.cv, prob.ch, prob.source, prob.mask_lr)
    key = ("discrete", t_end)
    if key not in ctx.cache:
        with torch.no_grad():
            ctx.cache[key] = discrete_dada(*args, _iterations(t_end, DEFAULT_STEP), DEFAULT_STEP)
    reference = ctx.cache[key]
    method = p.get("method", "euler")
    kwargs = _solve_kwargs(p)
    row: dict[str, Any] = {"crops": len(prob.names)}
    if method in FIXED_GRID_METHODS or method == "discrete":
        row["h_rho"] = kwargs["step_size"] * 8 * prob.max_coefficient
    with torch.no_grad():
        # warm-up: a method's first use imports and allocates lazily
        with _compiled_kernels(), contextlib.suppress(SolverError):
            if method == "discrete":
                discrete_dada(*args, 2, kwargs["step_size"])
            else:
                solve_ode(*args, min(t_end, 2 * (kwargs["step_size"] or 1.0)), **kwargs)
        with measure() as cost:
            if method == "discrete":
                steps = _iterations(t_end, kwargs["step_size"])
                output = discrete_dada(*args, steps, kwargs["step_size"])
                row |= {"nfe": steps, "steps": steps}
            else:
                output, info = solve_ode(*args, t_end, **kwargs)
                row |= {"nfe": info.nfe_forward, "steps": info.steps, "stages": info.stages}
    row |= {"seconds": cost.seconds, "peak_mib": cost.peak_mib,
            "ms_per_nfe": 1e3 * cost.seconds / max(row["nfe"], 1)}
    if not torch.isfinite(output).all():
        bad = float((~torch.isfinite(output)).float().mean())
        row["status"] = "diverged"
        row["error"] = (f"non-finite depth on {bad:.0%} of the pixels: the step is beyond the "
                        "method's stability limit")
        return row
    prediction = (output - prob.shift) * prob.depth_scale
    discrete_mm = (reference - prob.shift) * prob.depth_scale
    valid = torch.isfinite(prob.target_mm)
    errors = depth_errors(prediction, prob.target_mm)
    row |= {
        "rel_l2_discrete": float((output - reference).norm() / reference.norm()),
        "diff_discrete_cm": float((prediction - discrete_mm)[valid].abs().mean()) / 10.0,
        "mae_cm": errors.mae_cm,
        "rmse_cm": errors.rmse_cm,
    }
    return row


def _coefficient_gradient(prob: Problem, params: dict[str, Any], mode: str,
                          dtype: torch.dtype, t_end: float) -> tuple[torch.Tensor, dict]:
    """Gradient of ``sum(w * output)`` w.r.t. ``(cv, ch)``, flattened, and the solver's cost.

    ``node_dada.diffusion.coefficient_gradient`` computes the same gradient but not
    the solver's NFE, which this table needs; both sides of every comparison here
    come from this one function.
    """
    from node_dada.diffusion import discrete_dada, solve_ode

    weights = torch.rand(prob.depth0.shape, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(int(params.get("seed", 0))))
    depth0, source = prob.depth0.to(dtype), prob.source.to(dtype)
    cv = prob.cv.detach().to(dtype).requires_grad_(True)
    ch = prob.ch.detach().to(dtype).requires_grad_(True)
    kwargs = _solve_kwargs(params)
    with torch.enable_grad():
        if mode == "unrolled":
            steps = _iterations(t_end, kwargs["step_size"])
            output = discrete_dada(depth0, cv, ch, source, prob.mask_lr, steps, kwargs["step_size"])
            info = {"nfe": steps, "nfe_backward": None, "steps": steps}
            solve_info = None
        else:
            output, solve_info = solve_ode(depth0, cv, ch, source, prob.mask_lr, t_end,
                                           grad_mode=mode, **kwargs)
        loss = (output * weights.to(dtype)).sum()
        grad_cv, grad_ch = torch.autograd.grad(loss, (cv, ch))
    if solve_info is not None:
        info = {"nfe": solve_info.nfe_forward, "steps": solve_info.steps,
                # direct backpropagates through the solver's operations: no evaluations
                "nfe_backward": solve_info.nfe_backward if mode != "direct" else None}
    return torch.cat([grad_cv.flatten(), grad_ch.flatten()]).double(), info


def run_gradient_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """One forward+backward in float32: fidelity vs float64, time, peak memory, NFE."""
    p = cell.params
    mode = p["grad_mode"]
    t_end = float(p["t_end"])
    limit = (ctx.spec.section.get("max_horizon") or {}).get(mode)
    if limit is not None and t_end > float(limit):
        return {"status": "skipped",
                "error": f"{mode} keeps every step for the backward pass (memory and time grow "
                         f"linearly); run only up to T={float(limit):g} in this sweep"}
    prob = ctx.problem
    reference_mode = "unrolled" if mode == "unrolled" else \
        ctx.spec.section.get("reference_mode", "direct")
    solver_key = tuple(sorted((k, _fmt(v)) for k, v in p.items() if k != "grad_mode"))
    key = ("reference", reference_mode, solver_key)
    row: dict[str, Any] = {"reference": f"{reference_mode} float64"}
    warm = min(t_end, 2 * float(p.get("step_size", _DISCRETE_STEP)))
    with _compiled_kernels(), contextlib.suppress(SolverError):  # warm-up, not measured
        _coefficient_gradient(prob, p, mode, torch.float32, warm)
    # measured before the float64 reference: that one leaves the allocator's heap full
    # of freed, still-resident pages that a later measurement would reuse unseen
    with measure() as cost:
        gradient, info = _coefficient_gradient(prob, p, mode, torch.float32, t_end)
    row |= info
    row |= {"step_time_s": cost.seconds, "peak_mib": cost.peak_mib}
    if not torch.isfinite(gradient).all():
        row |= {"status": "diverged", "error": "non-finite gradient"}
        return row
    if key not in ctx.cache:
        ctx.cache[key] = _coefficient_gradient(prob, p, reference_mode, torch.float64, t_end)[0]
    reference = ctx.cache[key]
    norm = float(reference.norm())
    unit = gradient / max(float(gradient.norm()), 1e-300)
    unit_reference = reference / max(norm, 1e-300)
    row |= {
        "cosine": float(unit @ unit_reference),
        # 1 - cos = |u - v|^2 / 2 for unit vectors: accurate where the cosine rounds to 1
        "one_minus_cosine": 0.5 * float((unit - unit_reference).norm()) ** 2,
        "relative_error": float((gradient - reference).norm()) / max(norm, 1e-300),
        "reference_norm": norm,
    }
    return row


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return _fmt(value) if isinstance(value, float) else str(value)


def fit_overrides(params: dict[str, Any]) -> list[str]:
    """A fit cell's parameters as LightningCLI arguments (short keys mean ``model.<key>``)."""
    args = []
    for key, value in params.items():
        if key == "seed_everything":
            name = key
        elif "." in key:
            name = key
        else:
            name = f"model.{key}"
        args += [f"--{name}", _cli_value(value)]
    return args


def _run_lightning(argv: list[str]) -> str:
    """:func:`node_dada.training.run` in-process: '' when it succeeded, else why not
    (one line)."""
    from node_dada.training import ConfigError, run

    try:
        run(argv)
    except (ConfigError, NodeDadaError) as error:
        return error_line(error, 300)
    return ""


def read_scalars(run_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """TensorBoard scalars of one run folder: tag -> [(wall_time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.is_dir() or not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1,
                                                                "histograms": 1})
    accumulator.Reload()
    return {tag: [(e.wall_time, e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _trained_steps(checkpoint: Path) -> int:
    """Optimiser steps a fit took, from its last checkpoint (0 when it saved none);
    the logged scalars miss steps whenever ``trainer.log_every_n_steps`` > 1."""
    if not checkpoint.is_file():
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state.get("global_step", 0))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _fit_args(cell: Cell, ctx: SweepContext, run_dir: Path, checkpoints: Path) -> list[str]:
    """The shared arguments, the cell's overrides, then where its files go."""
    return [
        *[str(a) for a in ctx.spec.section.get("args", [])], *fit_overrides(cell.params),
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger.class_path", "lightning.pytorch.loggers.TensorBoardLogger",
        "--trainer.logger.init_args.save_dir", str(run_dir),
        "--trainer.logger.init_args.name", "tb",
        "--checkpoint.dirpath", str(checkpoints),
    ]


def run_fit_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """``fit`` then ``test`` through the real CLI; the TensorBoard runs stay in runs/<cell>/."""
    run_dir = ctx.out_dir / "runs" / cell.slug
    if run_dir.exists():  # what an interrupted attempt left
        shutil.rmtree(run_dir)
    checkpoints = run_dir / "ckpt"
    try:
        return _fit_and_test(cell, ctx, run_dir, checkpoints)
    finally:
        if not ctx.spec.section.get("keep_checkpoints", False):
            shutil.rmtree(checkpoints, ignore_errors=True)


def _fit_and_test(cell: Cell, ctx: SweepContext, run_dir: Path,
                  checkpoints: Path) -> dict[str, Any]:
    common = _fit_args(cell, ctx, run_dir, checkpoints)
    row: dict[str, Any] = {"run": str(run_dir.relative_to(ctx.out_dir))}
    # the fit's own resident-set rise would mostly measure what the first fit of the
    # process loads (Lightning, data caches): memory is the StepMemory callback's
    # per-step reading, when the spec adds it
    cpu_start = time.process_time()
    with measure() as cost:
        failure = _run_lightning(["fit", *common, "--trainer.logger.init_args.version", "fit"])
    row["fit_s"] = cost.seconds
    row["fit_cpu_s"] = time.process_time() - cpu_start
    train = read_scalars(run_dir / "tb" / "fit")
    losses = [v for _, _, v in train.get("train/loss", [])]
    last = checkpoints / "last.ckpt"
    steps = _trained_steps(last)
    if failure:
        return row | {"steps": steps, "status": "failed", "error": f"fit: {failure}"}
    # the loss columns average the logged steps (every trainer.log_every_n_steps-th)
    row |= {
        "steps": steps,
        "train_loss_first": _mean(losses[:10]),
        "train_loss_last": _mean(losses[-10:]),
        "nfe_forward": _mean([v for _, _, v in train.get("train/nfe_forward", [])]),
        "nfe_backward": _mean([v for _, _, v in train.get("train/nfe_backward", [])]),
        "s_per_step": cost.seconds / steps if steps else math.nan,
        "step_peak_mib": max((v for _, _, v in train.get("train/step_peak_mib", [])),
                             default=math.nan),
    }
    with measure() as test_cost:
        failure = _run_lightning(["test", *common, "--trainer.logger.init_args.version", "test",
                                  "--ckpt_path", str(last)])
    row["test_s"] = test_cost.seconds
    if failure:
        return row | {"status": "failed", "error": f"test: {failure}"}
    tested = read_scalars(run_dir / "tb" / "test")
    for tag, column in (("test/mae_cm", "test_mae_cm"), ("test/rmse_cm", "test_rmse_cm")):
        if tag in tested:
            row[column] = tested[tag][-1][2]
    return row


RUNNERS: dict[str, Callable[[Cell, SweepContext], dict[str, Any]]] = {
    "solver": run_solver_cell,
    "gradient": run_gradient_cell,
    "fit": run_fit_cell,
}


# --- cells.csv -----------------------------------------------------------------------

_METRICS = {
    "solver": ["crops", "h_rho", "nfe", "steps", "stages", "seconds", "ms_per_nfe", "peak_mib",
               "rel_l2_discrete", "diff_discrete_cm", "mae_cm", "rmse_cm", "load_avg", "cell_s"],
    "gradient": ["reference", "nfe", "nfe_backward", "steps", "step_time_s", "peak_mib",
                 "cosine", "one_minus_cosine", "relative_error", "reference_norm", "load_avg",
                 "cell_s"],
    "fit": ["run", "steps", "fit_s", "fit_cpu_s", "s_per_step", "step_peak_mib", "test_s",
            "nfe_forward", "nfe_backward", "train_loss_first", "train_loss_last", "test_mae_cm",
            "test_rmse_cm", "load_avg", "cell_s"],
}


def read_cells(path: Path) -> list[dict[str, str]]:
    """Rows of a ``cells.csv`` (empty if there is none)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def _write_cells(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    for row in rows:
        columns += [key for key in row if key not in columns]
    # written atomically: a killed sweep never leaves a half-written table
    write_table(path, columns, ([row.get(c, "") for c in columns] for row in rows))


def _format_row(cell: Cell, result: dict[str, Any]) -> dict[str, str]:
    row = {"cell": cell.id, "label": cell.label, "status": result.get("status", "ok")}
    row |= {key: _fmt(value) for key, value in cell.params.items()}
    for key, value in result.items():
        if key in ("status", "error"):
            continue
        if isinstance(value, float):
            row[key] = "" if math.isnan(value) else f"{value:.6g}"
        else:
            row[key] = "" if value is None else str(value)
    row["error"] = str(result.get("error", "")).replace("\n", " ")
    return row


# --- running -------------------------------------------------------------------------


def _setup(spec: SweepSpec) -> dict[str, Any]:
    """What every cell depends on besides its own parameters."""
    return {"kind": spec.kind, "data": spec.data, spec.kind: spec.section}


def _check_setup(spec: SweepSpec, out_dir: Path, *, fresh: bool) -> None:
    """Recorded cells are reused only under the same data and shared settings."""
    path = out_dir / "setup.yaml"
    current = _setup(spec)
    if path.is_file() and not fresh:
        recorded = yaml.safe_load(path.read_text())
        if recorded != yaml.safe_load(yaml.safe_dump(current)):
            raise InputValueError(
                f"{out_dir}/cells.csv was recorded with other data or shared settings (see "
                f"{path}); delete that folder's cells.csv to start again or pass --out"
            )
    path.write_text(yaml.safe_dump(current, sort_keys=False))


@dataclass
class SweepReport:
    total: int
    already: int
    ran: int
    statuses: dict[str, int]
    out_dir: Path
    interrupted: bool = False


def run_sweep(
    spec: SweepSpec,
    out_dir: Path,
    *,
    command: str,
    rerun_failed: bool = False,
    max_cells: int | None = None,
    progress: bool = True,
    replot: bool = False,
) -> SweepReport:
    """Run the cells of ``spec`` not yet in ``out_dir/cells.csv``, then write the
    summary and plots. ``max_cells`` stops after that many new cells (a budget);
    ``replot`` runs none and rewrites the summary and plots from ``cells.csv``.

    The table is read again before each row is added, so a second process on the
    same folder loses nothing as long as the two run different cells (for example
    one started with ``--max-cells`` after the first has taken its cells)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "cells.csv"
    _check_setup(spec, out_dir, fresh=not table.is_file())
    rows = read_cells(table)
    if replot and not rows:
        raise InputValueError(f"--replot: {table} holds no cells yet; run the sweep first")
    if rerun_failed:
        rows = [r for r in rows if r.get("status") in ("ok", "skipped")]
    done = {row["cell"] for row in rows}
    cells = spec.cells()
    todo = [cell for cell in cells if cell.id not in done]
    columns = ["cell", "label", "status"] + [k for c in cells for k in c.params]
    columns = list(dict.fromkeys(columns + _METRICS[spec.kind] + ["error", "command", "code"]))
    ctx = SweepContext(spec, out_dir)
    runner = RUNNERS[spec.kind]
    if max_cells is not None:
        todo = todo[:max_cells]
    if replot:
        todo = []
    with _kernel_mode(spec.kernels):
        provenance = _provenance() if todo else ""
    report = SweepReport(len(cells), len(cells) - len([c for c in cells if c.id not in done]),
                         0, {}, out_dir)
    threads = torch.get_num_threads()
    recorded: dict[str, dict[str, str]] = {}  # the rows of the cells this call ran
    from tqdm import tqdm

    bar = tqdm(total=len(cells), initial=report.already, desc=spec.name, unit="cell",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        # fits measure their memory with glibc's defaults: Lightning's many small
        # allocations would each cost a system call
        tuned = _measuring_malloc() if spec.kind != "fit" else contextlib.nullcontext()
        with tuned, _kernel_mode(spec.kernels):
            for cell in todo:
                bar.set_postfix_str(cell.label[:60])
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
                started = time.perf_counter()
                try:
                    result = runner(cell, ctx)
                except NodeDadaError as error:
                    status = "diverged" if "diverged" in str(error) or "not finite" in str(error) \
                        else "failed"
                    result = {"status": status, "error": first_line(error)}
                except Exception as error:  # noqa: BLE001 (one cell's crash must not end the sweep)
                    _log.debug("cell %s crashed", cell.label, exc_info=True)
                    result = {"status": "failed", "error": first_line(error)}
                result["load_avg"] = load
                result["cell_s"] = time.perf_counter() - started  # references included
                row = _format_row(cell, result) | {"command": command, "code": provenance}
                recorded[cell.id] = row
                # the table as it is now: another process running other cells of this
                # folder may have recorded some since, and their rows are kept
                rows = [r for r in read_cells(table) if r["cell"] not in recorded] \
                    + list(recorded.values())
                _write_cells(table, rows, columns)
                report.ran += 1
                if row["status"] != "ok":
                    _log.info("%s: %s: %s", cell.label, row["status"], row["error"])
                bar.update(1)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        torch.set_num_threads(threads)
    for row in rows:
        report.statuses[row["status"]] = report.statuses.get(row["status"], 0) + 1
    if report.ran == 0 and not report.interrupted and not replot and \
            (out_dir / "README.md").is_file():
        return report  # nothing new: the summary and plots already show these rows
    order = {cell.id: i for i, cell in enumerate(cells)}
    rows.sort(key=lambda r: order.get(r["cell"], len(order)))
    data_text = ctx.problem.description if spec.kind in ("solver", "gradient") else ""
    write_summary(spec, rows, out_dir, command=command, data_text=data_text,
                  complete=not report.interrupted and len(done | {r["cell"] for r in rows})
                  >= len(cells))
    return report


# --- summary and plots ---------------------------------------------------------------


def _num(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "") or "nan")
    except ValueError:
        return math.nan


def _cell_text(value: str) -> str:
    return value.replace("|", "\\|")


_TABLES = {
    "solver": [("method", "method"), ("setting", None), ("status", "status"), ("NFE", "nfe"),
               ("h·8max(c)", "h_rho"),
               ("time (s)", "seconds"), ("ms/NFE", "ms_per_nfe"), ("peak MiB", "peak_mib"),
               ("rel. L2 vs discrete", "rel_l2_discrete"), ("Δ discrete (cm)", "diff_discrete_cm"),
               ("MAE (cm)", "mae_cm"), ("RMSE (cm)", "rmse_cm")],
    "gradient": [("T", "t_end"), ("mode", "grad_mode"), ("status", "status"), ("NFE fwd", "nfe"),
                 ("NFE bwd", "nfe_backward"), ("time/step (s)", "step_time_s"),
                 ("peak MiB", "peak_mib"), ("1 - cosine", "one_minus_cosine"),
                 ("rel. error", "relative_error"), ("reference", "reference")],
    "fit": [("cell", "label"), ("status", "status"), ("steps", "steps"),
            ("s/step", "s_per_step"), ("NFE fwd", "nfe_forward"), ("NFE bwd", "nfe_backward"),
            ("loss first 10", "train_loss_first"), ("loss last 10", "train_loss_last"),
            ("step peak MiB", "step_peak_mib"),
            ("test MAE (cm)", "test_mae_cm"), ("test RMSE (cm)", "test_rmse_cm"),
            ("fit (s)", "fit_s"), ("fit CPU (s)", "fit_cpu_s")],
}


def _setting(row: dict[str, str]) -> str:
    parts = []
    for key in ("step_size", "rtol", "atol"):
        if row.get(key):
            parts.append(f"{'h' if key == 'step_size' else key} {row[key]}")
    if row.get("stages"):
        parts.append(f"{row['stages']} stages")
    if row.get("projection") and row["projection"] != "multiplicative":
        parts.append(row["projection"])
    return ", ".join(parts)


def _short(value: str, digits: int = 3) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if number == int(number) and abs(number) < 1e7:
        return str(int(number))
    return f"{number:.{digits}g}"


# columns whose differences between cells sit in the fourth digit
_PRECISE = {"mae_cm", "rmse_cm", "test_mae_cm", "test_rmse_cm", "train_loss_first",
            "train_loss_last"}


def cells_table(kind: str, rows: list[dict[str, str]]) -> list[str]:
    columns = _TABLES[kind]
    table = []
    for row in rows:
        cells = []
        for _, key in columns:
            value = _setting(row) if key is None else row.get(key, "")
            if key in ("label", "method"):
                cells.append(_cell_text(value))
            else:
                cells.append(_cell_text(_short(value, 4 if key in _PRECISE else 3)))
        error = row.get("error", "")
        cells.append(_cell_text(error[:140] + ("…" if len(error) > 140 else "")))
        table.append(cells)
    return markdown_table([*(title for title, _ in columns), "error"], table,
                          "l" * (len(columns) + 1))


def write_summary(spec: SweepSpec, rows: list[dict[str, str]], out_dir: Path, *, command: str,
                  data_text: str, complete: bool) -> None:
    """``README.md`` and the plots of the sweep."""
    plots = PLOTTERS[spec.kind](rows, out_dir)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"# Sweep `{spec.name}` ({spec.kind})", ""]
    if spec.description:
        lines += [spec.description, ""]
    state = "" if complete else "; the sweep is incomplete, rerun the command to resume"
    # every row records the command and code that produced it (a sweep may be resumed)
    runs: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.get("command") or command, row.get("code", ""))
        runs[key] = runs.get(key, 0) + 1
    for (used, code), count in runs.items():
        where = f"; {code}" if code else ""
        lead = f"{count} cell{'s' if count != 1 else ''} produced" if len(runs) > 1 else \
            "Produced"
        lines.append(f"{lead} by `{used}` (torch threads: {spec.threads or 'default'}{where}).")
    times = [_num(r, "cell_s") for r in rows]
    known = [t for t in times if not math.isnan(t)]
    spent = f"; {sum(known) / 60:.1f} min of cell time" if known and len(known) == len(times) \
        else ""
    lines += [f"Cells: {len(rows)} recorded ({tally}){state}{spent}.", ""]
    if data_text:
        lines += [f"Data: {data_text}.", ""]
    if spec.kind == "fit" and spec.section.get("args"):
        lines += ["Shared LightningCLI arguments: `" + shlex.join(map(str, spec.section["args"]))
                  + "`; each cell's TensorBoard runs and config are in `runs/<cell>/tb/`.", ""]
    lines += cells_table(spec.kind, rows) + [""]
    lines += [f"![{name}]({name})" for name in plots]
    lines += ["", "All numbers: `cells.csv`. Time and memory were measured in-process on a "
              "shared machine; compare them within this table only."]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


_MARKERS = "osD^v<>phX*P"


def _style(index: int) -> dict[str, Any]:
    """Marker and colour of the index-th series, the same in every panel."""
    from matplotlib import colormaps

    return {"marker": _MARKERS[index % len(_MARKERS)],
            "color": colormaps["tab10"](index % 10)}


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **kwargs)


def _failed_note(figure: Any, rows: list[dict[str, str]]) -> float:
    """List the cells that are not plotted under the panels; returns the space taken."""
    bad = [f"{r['label']}: {r['status']}" for r in rows if r["status"] not in ("ok", "skipped")]
    if not bad:
        return 0.0
    text = "not shown: " + "; ".join(bad)
    lines = [text[i:i + 190] for i in range(0, len(text), 190)][:4]
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=7, va="bottom", color="0.3")
    return 0.03 + 0.035 * len(lines)


def _point_note(row: dict[str, str]) -> str:
    note = f"h {_short(row['step_size'])}" if row.get("step_size") else \
        f"rtol {row.get('rtol', '')}"
    return note + (" add." if row.get("projection") == "additive" else "")


def _plot_solver(rows: list[dict[str, str]], out_dir: Path) -> list[str]:
    plt = _pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    methods = list(dict.fromkeys(r.get("method", "") for r in rows))
    discrete = next((r for r in ok if r.get("method") == "discrete"), None)
    names = []
    for x_key, x_title, name in (("nfe", "function evaluations (NFE)", "error_vs_nfe.png"),
                                 ("seconds", "wall time (s)", "error_vs_time.png"),
                                 ("peak_mib", "peak memory rise (MiB)", "error_vs_memory.png")):
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        ys = (("rel_l2_discrete", "rel. L2 difference to the discrete iteration"),
              ("mae_cm", "MAE vs ground truth (cm)"))
        for ax, (y_key, y_title) in zip(axes, ys, strict=True):
            for index, method in enumerate(methods):
                points = [(_num(r, x_key), _num(r, y_key), r) for r in ok
                          if r.get("method", "") == method]
                points = [(x, y, r) for x, y, r in points if x > 0 and y > 0]
                if not points:
                    continue
                ax.scatter([x for x, _, _ in points], [y for _, y, _ in points], label=method,
                           s=30, **_style(index))
                for x, y, r in points:
                    ax.annotate(_point_note(r), (x, y), fontsize=6, xytext=(3, 2),
                                textcoords="offset points")
            if discrete is not None and _num(discrete, x_key) > 0:
                ax.axvline(_num(discrete, x_key), color="0.5", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_xlabel(x_title + ("; dashed: the discrete iteration" if discrete else ""))
            ax.set_ylabel(y_title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_yscale("log")
        if discrete is not None:
            axes[1].axhline(_num(discrete, "mae_cm"), color="0.5", lw=0.8, ls="--")
        _legend(axes[1], loc="center left", bbox_to_anchor=(1.02, 0.5))
        bottom = _failed_note(figure, rows)
        figure.tight_layout(rect=(0, bottom, 1, 1))
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        names.append(name)
    return names


def _plot_gradient(rows: list[dict[str, str]], out_dir: Path) -> list[str]:
    plt = _pyplot()
    modes = list(dict.fromkeys(r["grad_mode"] for r in rows))
    panels = {
        "fidelity_vs_horizon.png": (("relative_error", "relative error vs float64 reference"),
                                    ("one_minus_cosine", "1 - cosine vs float64 reference")),
        "cost_vs_horizon.png": (("step_time_s", "time of one forward+backward (s)"),
                                ("peak_mib", "peak memory rise (MiB)")),
    }
    for name, pair in panels.items():
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for ax, (key, title) in zip(axes, pair, strict=True):
            for index, mode in enumerate(modes):
                # every horizon of the mode; a failed cell is a gap, not a straight line over it
                points = sorted((_num(r, "t_end"), _num(r, key) if r["status"] == "ok"
                                 else math.nan) for r in rows
                                if r["grad_mode"] == mode and r["status"] != "skipped")
                if any(not math.isnan(y) for _, y in points):
                    ax.plot(*zip(*points, strict=True), label=mode, **_style(index))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("horizon T (= 0.24 x iterations)")
            ax.set_ylabel(title)
            ax.grid(True, which="both", alpha=0.3)
        _legend(axes[1], loc="center left", bbox_to_anchor=(1.02, 0.5))
        bottom = _failed_note(figure, rows)
        figure.tight_layout(rect=(0, bottom, 1, 1))
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
    return list(panels)


def _short_label(row: dict[str, str]) -> str:
    """``solver=ode grad_mode=adjoint method=rkc`` -> ``ode adjoint rkc``."""
    parts = [part.split("=", 1) for part in row["label"].split()]
    return " ".join(f"{key.split('.')[-1]}={value}" if "." in key else value
                    for key, value in parts)


def _running_mean(values: list[float], window: int) -> list[float]:
    sums = np.cumsum([0.0, *values])
    return [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(window, i + 1)
            for i in range(len(values))]


def _plot_fit(rows: list[dict[str, str]], out_dir: Path) -> list[str]:
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    bars = []
    curves = {index: read_scalars(out_dir / row["run"] / "tb" / "fit").get("train/loss", [])
              for index, row in enumerate(rows) if row.get("run")}
    # every cell sees the same crops (same seed): the raw loss swings with the crop,
    # a running mean (the same window for all) shows the trend
    window = max(1, max((len(c) for c in curves.values()), default=0) // 10)
    for index, row in enumerate(rows):
        style = _style(index)
        if _num(row, "test_mae_cm") > 0:
            bars.append((_short_label(row), _num(row, "test_mae_cm"), style["color"]))
        loss = curves.get(index, [])
        if not loss:
            continue
        smooth = _running_mean([v for _, _, v in loss], window)
        start = loss[0][0]
        label = _short_label(row) + ("" if row["status"] == "ok" else f" ({row['status']})")
        axes[0].plot([s for _, s, _ in loss], smooth, label=label, lw=1.2, markevery=0.1,
                     markersize=4, **style)
        axes[1].plot([w - start for w, _, _ in loss], smooth, lw=1.2, markevery=0.1,
                     markersize=4, **style)
    if bars:
        axes[2].barh(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
        axes[2].set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        axes[2].invert_yaxis()
        low, high = min(b[1] for b in bars), max(b[1] for b in bars)
        axes[2].set_xlim(low - 0.6 * (high - low + 1e-3), high + 0.3 * (high - low + 1e-3))
        for position, (_, value, _) in enumerate(bars):
            axes[2].text(value, position, f" {value:.4f}", va="center", fontsize=7)
    axes[0].set(xlabel="training step", ylabel=f"train loss (10 x L1), mean of {window} steps")
    axes[1].set(xlabel="wall time since the first logged step (s)",
                ylabel="train loss, running mean")
    axes[2].set(xlabel="test MAE after training (cm)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    # failed cells keep their curve up to the failure, marked in the legend
    bottom = 0.0
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, bottom),
                      ncol=min(len(labels), 4), fontsize=8)
    figure.tight_layout(rect=(0, bottom + (0.1 if handles else 0.0), 1, 1))
    figure.savefig(out_dir / "training_curves.png", dpi=110)
    plt.close(figure)
    return ["training_curves.png"]


PLOTTERS: dict[str, Callable[[list[dict[str, str]], Path], list[str]]] = {
    "solver": _plot_solver,
    "gradient": _plot_gradient,
    "fit": _plot_fit,
}


if __name__ == "__main__":
    from node_dada.commands.sweep import main

    raise SystemExit(main())
