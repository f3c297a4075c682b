"""Fused CPU kernels (numba) for the discrete iteration and the ODE right-hand side.

The eager torch code in ``discrete.py`` and ``field.py`` makes about ten passes
over memory per iteration (one per tensor operation, each allocating its
result). The kernels here make one: a task owns one row of ``s x s`` blocks
(``s`` image rows), computes the diffusion of its rows from the previous state
(rows above and below are only read), sums its blocks and applies the
adjustment or the projection while the rows are still in cache. Tasks are
spread over threads with ``prange``. When whole images share out over the
threads (batch 1 on one thread, batch 8 on two), each thread runs two discrete
iterations per sweep as a wavefront (``_discrete_pair``): the intermediate
state stays in a three-block-row ring in cache, which halves the memory traffic
on large images. RKC stages (``rkc_solve``) fuse the field with the stage's
linear combination.

Same answer: every kernel performs the eager code's floating-point operations
in the same order (``(I - t_above) + t_below``, block sums in row-major order
then divided by ``s*s``, the same ``eps``) with ``fastmath=False`` and IEEE
division (``error_model="numpy"``: inf/NaN as in torch, no exception), so the
discrete iteration and the vector field are bit-identical to the eager path in
float32 and float64 (up to the sign of exact zeros); the vector-Jacobian
product is the same expression as autograd's, grouped differently (round-off).

Dispatch (done by ``discrete.py``, ``field.py`` and ``ode.py``): the kernels take CPU tensors
of one float dtype when numba imports and the mode allows it; otherwise the
eager torch path runs. Without a graph to record they replace the discrete
loop, the solver's vector field and, for ``method="rkc"``, whole RKC stages;
with one, the field runs as a ``torch.autograd.Function`` whose backward is the
fused vector-Jacobian product (which the stable adjoint also calls directly).
Modes: ``auto`` (default; fused once the work repays loading the kernels),
``always``, ``never``. Set with ``NODE_DADA_FUSED=auto|1|0`` in the environment
(read at import), ``set_mode(...)`` for the process, or ``with using("never"): ...``
for a block. Errors are the package's typed ones (``ShapeError`` for arrays the
kernels cannot take, ``InputValueError`` for a mode they do not know).

Kernel arrays drop the channel axis: ``image`` (B, H, W), ``cv`` (B, H-1, W),
``ch`` (B, H, W-1), ``source``/``mask`` (B, h, w). Scalars (``step``, ``eps``,
``area = s*s``) are passed in the arrays' dtype so that float32 work stays
float32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import torch

from node_dada.diffusion.operators import ADJUST_EPS
from node_dada.errors import InputValueError, ShapeError

try:
    import numba
    from numba import njit, prange
except ImportError:  # numba is a dependency, but the eager path must work without it
    numba = None
    njit = None
    prange = range

__all__ = [
    "ENV_SWITCH",
    "MODES",
    "AUTO_MIN_WORK",
    "available",
    "mode",
    "set_mode",
    "using",
    "set_enabled",
    "disabled",
    "supports",
    "fits",
    "discrete_iterate",
    "projected_field",
    "field_vjp",
    "rkc_solve",
]

#: Environment variable read at import: ``0``/``never``, ``1``/``always`` or ``auto``.
ENV_SWITCH = "NODE_DADA_FUSED"
#: ``never``: eager torch only; ``always``: fused wherever the tensors allow it;
#: ``auto`` (default): fused when the work is large enough to repay the one-off
#: JIT compile (a few seconds, cached on disk afterwards).
MODES = ("never", "auto", "always")
#: ``auto`` runs fused kernels from this many pixel-evaluations on (pixels of the
#: batch times iterations or function evaluations), e.g. 128 x 128 x 256: below
#: it the eager path takes well under a second and loading the kernels (about a
#: second per process once compiled) would not pay.
AUTO_MIN_WORK = 2**22
_ALIASES = {"0": "never", "false": "never", "off": "never", "1": "always", "true": "always",
            "on": "always"}
_DTYPES = (torch.float32, torch.float64)


def _mode_from(value: str) -> str:
    value = _ALIASES.get(value.strip().lower(), value.strip().lower())
    if value not in MODES:
        raise InputValueError(
            f"{ENV_SWITCH}: expected one of {MODES} (or 0/1), got {value!r}")
    return value


def _initial_mode() -> str:
    try:
        return _mode_from(os.environ.get(ENV_SWITCH, "auto"))
    except ValueError as error:
        warnings.warn(f"{error}; using 'auto'", stacklevel=2)
        return "auto"


_state: dict[str, str] = {"mode": _initial_mode()}


def available() -> bool:
    """Whether numba imported (the kernels can run at all)."""
    return njit is not None


def mode() -> str:
    """The current mode (``never``, ``auto`` or ``always``)."""
    return _state["mode"]


def set_mode(value: str) -> str:
    """Set the mode for this process; returns the previous one."""
    previous = _state["mode"]
    _state["mode"] = _mode_from(value)
    return previous


def set_enabled(flag: bool) -> str:
    """Deprecated: ``set_mode("auto" if flag else "never")``."""
    warnings.warn("fused.set_enabled is deprecated; use fused.set_mode('auto'|'never')",
                  DeprecationWarning, stacklevel=2)
    return set_mode("auto" if flag else "never")


@contextmanager
def using(value: str) -> Iterator[None]:
    """Run a block in another mode, e.g. ``with using("never"): ...`` for the eager path."""
    previous = set_mode(value)
    try:
        yield
    finally:
        set_mode(previous)


def disabled() -> AbstractContextManager[None]:
    """Deprecated: ``using("never")``."""
    warnings.warn("fused.disabled is deprecated; use fused.using('never')",
                  DeprecationWarning, stacklevel=2)
    return using("never")


def supports(*tensors: torch.Tensor, work: float | None = None) -> bool:
    """Whether the kernels should take these tensors: numba present, mode not ``never``,
    CPU tensors of one float dtype and, in ``auto`` mode, ``work`` (pixel-evaluations)
    of at least ``AUTO_MIN_WORK`` (``None``: the tensors' size alone decides)."""
    current = _state["mode"]
    if njit is None or current == "never":
        return False
    dtype = tensors[0].dtype
    if dtype not in _DTYPES or any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return False
    if current == "always":
        return True
    return (tensors[0].numel() if work is None else work) >= AUTO_MIN_WORK


def fits(image: torch.Tensor, cv: torch.Tensor, ch: torch.Tensor, mask_lr: torch.Tensor,
         scale: int) -> bool:
    """Whether the shapes are the kernels' layout (no broadcasting): ``image``
    (B, 1, H, W), ``cv`` (B, 1, H-1, W), ``ch`` (B, 1, H, W-1), ``mask_lr`` (B, 1, H/s, W/s)."""
    if image.dim() != 4 or image.shape[1] != 1 or scale < 1:
        return False
    batch, _, height, width = image.shape
    return (height % scale == 0 and width % scale == 0
            and tuple(cv.shape) == (batch, 1, height - 1, width)
            and tuple(ch.shape) == (batch, 1, height, width - 1)
            and tuple(mask_lr.shape) == (batch, 1, height // scale, width // scale))


def _require_fit(image: torch.Tensor, cv: torch.Tensor, ch: torch.Tensor,
                 mask_lr: torch.Tensor, scale: int) -> None:
    # the kernels do not check bounds: a wrong shape would read past the arrays
    if not fits(image, cv, ch, mask_lr, scale):
        raise ShapeError(
            f"fused kernels: expected image (B, 1, H, W), cv (B, 1, H-1, W), ch (B, 1, H, W-1), "
            f"mask_lr (B, 1, H/{scale}, W/{scale}); got {tuple(image.shape)}, "
            f"{tuple(cv.shape)}, {tuple(ch.shape)}, {tuple(mask_lr.shape)}")


def _compile(function: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    if njit is None:
        return function
    try:
        return njit(cache=True, fastmath=False, error_model="numpy", **options)(function)
    except RuntimeError:  # no writable cache location: compile in every process
        return njit(cache=False, fastmath=False, error_model="numpy", **options)(function)


def _jit(function: Callable[..., Any]) -> Callable[..., Any]:
    return _compile(function, parallel=True, nogil=True)


def _jit_serial(function: Callable[..., Any]) -> Callable[..., Any]:
    return _compile(function)


# ---------------------------------------------------------------- row helpers
# A "row" is one image row (length W). Fluxes of absent neighbours are zero
# rows, which reproduces the eager zero padding bit for bit (x - 0 = x).


@_jit_serial
def _transmission(upper, lower, coeff, out):
    """``out = coeff * (lower - upper)`` for two explicit rows (``coeff = lam * cv``)."""
    for j in range(out.shape[0]):
        out[j] = coeff[j] * (lower[j] - upper[j])


@_jit_serial
def _flux_down(image, cv, i, out):
    """``out = cv[i] * (I[i+1] - I[i])`` (zero on the last row)."""
    height, width = image.shape
    if i >= height - 1:
        for j in range(width):
            out[j] = image[i, j] - image[i, j]
        return
    upper = image[i]
    lower = image[i + 1]
    coeff = cv[i]
    for j in range(width):
        out[j] = coeff[j] * (lower[j] - upper[j])


@_jit_serial
def _discrete_row(row, t_up, t_down, ch_row, vertical, t_row, out):
    """One row of a discrete iteration before the adjustment (docs/design.md s. 3, steps 1-2)."""
    width = row.shape[0]
    for j in range(width):
        vertical[j] = (row[j] - t_up[j]) + t_down[j]
    if width == 1:
        out[0] = vertical[0]
        return
    for j in range(width - 1):
        t_row[j] = ch_row[j] * (vertical[j + 1] - vertical[j])
    out[0] = vertical[0] + t_row[0]
    for j in range(1, width - 1):
        out[j] = (vertical[j] - t_row[j - 1]) + t_row[j]
    out[width - 1] = vertical[width - 1] - t_row[width - 2]


@_jit_serial
def _diffusion_row(row, f_up, f_down, ch_row, f_row, out):
    """``D(I)`` on one row from the vertical fluxes above and below it
    (``operators.diffusion_operator``); ``f_row`` is scratch for the horizontal fluxes."""
    width = row.shape[0]
    if width == 1:
        for j in range(width):
            out[j] = f_down[j] - f_up[j]
        return
    for j in range(width - 1):
        f_row[j] = ch_row[j] * (row[j + 1] - row[j])
    out[0] = (f_down[0] - f_up[0]) + f_row[0]
    for j in range(1, width - 1):
        out[j] = ((f_down[j] - f_up[j]) + f_row[j]) - f_row[j - 1]
    out[width - 1] = (f_down[width - 1] - f_up[width - 1]) - f_row[width - 2]


@_jit_serial
def _accumulate_blocks(row, scale, acc):
    """``acc[k] += row[k*s]``, then ``row[k*s+1]``, ... in order (as ``avg_pool2d`` sums)."""
    for k in range(acc.shape[0]):
        base = k * scale
        total = acc[k]
        for offset in range(scale):
            total += row[base + offset]
        acc[k] = total


@_jit_serial
def _zero(row):
    for j in range(row.shape[0]):
        row[j] = 0


@_jit_serial
def _clear(values):
    for k in range(values.shape[0]):
        values[k] = 0


# ------------------------------------------------------------ discrete iteration


@_jit_serial
def _discrete_rows(above, rows, below, has_above, has_below, dst, cv, ch, source, mask, bi,
                   scale, eps, area, work, acc):
    """Block row ``bi`` of one iteration, adjusted: ``rows`` (its ``s`` rows) with the row
    ``above`` and ``below`` it (ignored at the image border) -> ``dst`` (``s`` rows)."""
    t_up = work[0]
    t_down = work[1]
    vertical = work[2]
    t_row = work[3]
    first = bi * scale
    if has_above:
        _transmission(above, rows[0], cv[first - 1], t_up)
    else:
        _zero(t_up)
    _clear(acc)
    for r in range(scale):
        i = first + r
        if r < scale - 1:
            _transmission(rows[r], rows[r + 1], cv[i], t_down)
        elif has_below:
            _transmission(rows[r], below, cv[i], t_down)
        else:
            _zero(t_down)
        _discrete_row(rows[r], t_up, t_down, ch[i], vertical, t_row, dst[r])
        _accumulate_blocks(dst[r], scale, acc)
        t_up, t_down = t_down, t_up
    # hard adjustment I * U(source / (P(I) + eps)); ratio 1 (x * 1 = x exactly) on invalid
    # blocks, spread over a row once so that the s rows multiply in one vector loop each
    ratio = work[4]
    for k in range(acc.shape[0]):
        if mask[bi, k]:
            value = source[bi, k] / (acc[k] / area + eps)
            for offset in range(scale):
                ratio[k * scale + offset] = value
        else:
            for offset in range(scale):
                ratio[k * scale + offset] = 1
    for r in range(scale):
        out = dst[r]
        for j in range(out.shape[0]):
            out[j] = out[j] * ratio[j]


@_jit_serial
def _discrete_block_row(src, dst, cv, ch, source, mask, bi, scale, eps, area, work, acc):
    """Rows ``[bi*s, (bi+1)*s)`` of one iteration, adjusted, from ``src`` into ``dst``."""
    first = bi * scale
    last = first + scale
    height = src.shape[0]
    _discrete_rows(src[max(first - 1, 0)], src[first:last], src[min(last, height - 1)],
                   first > 0, last < height, dst[first:last], cv, ch, source, mask, bi, scale,
                   eps, area, work, acc)


@_jit_serial
def _discrete_pair(image, ring, cv, ch, source, mask, scale, eps, area, work, acc):
    """Two iterations of one image in place, as a wavefront over block rows: block row
    ``b`` of the first iteration goes to a ring of three block rows, then block row
    ``b - 1`` of the second is computed from the ring into ``image`` (whose block row
    ``b - 1`` nothing reads any more). The intermediate state never leaves the cache:
    half the memory traffic of two separate sweeps, the same arithmetic."""
    rows = source.shape[0]
    height = image.shape[0]
    for b in range(rows + 1):
        if b < rows:
            first = b * scale
            last = first + scale
            _discrete_rows(image[max(first - 1, 0)], image[first:last],
                           image[min(last, height - 1)], first > 0, last < height,
                           ring[b % 3], cv, ch, source, mask, b, scale, eps, area, work, acc)
        if b >= 1:
            c = b - 1
            middle = ring[c % 3]
            above = ring[(c + 2) % 3][scale - 1]  # last row of block row c - 1
            below = ring[(c + 1) % 3][0]  # first row of block row c + 1
            _discrete_rows(above, middle, below, c > 0, c < rows - 1,
                           image[c * scale:(c + 1) * scale], cv, ch, source, mask, c, scale,
                           eps, area, work, acc)


@_jit
def _discrete_kernel(image, spare, cv, ch, source, mask, scale, num_iter, eps, area,
                     work, acc, by_image, ring):
    """``num_iter`` iterations ping-ponging between ``image`` and ``spare``.

    ``by_image``: each thread runs whole images through all iterations, two at a
    time (``_discrete_pair``; ``ring`` (B, 3, s, W) holds the intermediate block
    rows), with no barrier; for batches that share out evenly over the threads.
    Otherwise the
    block rows of an iteration are shared out, one parallel region (the only
    barrier) per iteration. Returns 0 if the result is in ``image``, 1 if it is
    in ``spare``.
    """
    batch = image.shape[0]
    rows = source.shape[1]
    if by_image:
        for b in prange(batch):
            task = b * rows
            for _ in range(num_iter // 2):
                _discrete_pair(image[b], ring[b], cv[b], ch[b], source[b], mask[b], scale,
                               eps, area, work[task], acc[task])
            if num_iter % 2:
                for bi in range(rows):
                    _discrete_block_row(image[b], spare[b], cv[b], ch[b], source[b], mask[b],
                                        bi, scale, eps, area, work[task], acc[task])
    else:
        for it in range(num_iter):
            src = image if it % 2 == 0 else spare
            dst = spare if it % 2 == 0 else image
            for task in prange(batch * rows):
                b = task // rows
                bi = task - b * rows
                _discrete_block_row(src[b], dst[b], cv[b], ch[b], source[b], mask[b], bi, scale,
                                    eps, area, work[task], acc[task])
    return num_iter % 2


# ------------------------------------------------------------------ vector field


@_jit_serial
def _field_block_row(image, cv, ch, mask, bi, scale, area, multiplicative, work, acc, acc_i,
                     target):
    """Projected field ``f(I)`` (``field.projected_field``) on block row ``bi`` into ``target``
    (``s`` rows)."""
    f_up = work[0]
    f_down = work[1]
    f_row = work[2]
    first = bi * scale
    if first > 0:
        _flux_down(image, cv, first - 1, f_up)
    else:
        _zero(f_up)
    _clear(acc)
    _clear(acc_i)
    for r in range(scale):
        i = first + r
        _flux_down(image, cv, i, f_down)
        _diffusion_row(image[i], f_up, f_down, ch[i], f_row, target[r])
        _accumulate_blocks(target[r], scale, acc)
        if multiplicative:
            _accumulate_blocks(image[i], scale, acc_i)
        f_up, f_down = f_down, f_up
    # the correction per block (0 on invalid blocks, as the eager torch.where), spread
    # over a row once so that each of the s rows is corrected in one vector loop
    spread = work[3]
    for k in range(acc.shape[0]):
        if mask[bi, k]:
            pooled = acc[k] / area
            value = pooled / (acc_i[k] / area) if multiplicative else pooled
            for offset in range(scale):
                spread[k * scale + offset] = value
        else:
            for offset in range(scale):
                spread[k * scale + offset] = 0
    for r in range(scale):
        row = target[r]
        if multiplicative:
            image_row = image[first + r]
            for j in range(row.shape[0]):
                row[j] = row[j] - image_row[j] * spread[j]
        else:
            for j in range(row.shape[0]):
                row[j] = row[j] - spread[j]


# One pass of the field over the image, optionally fused with the linear
# combination of a stage of rkc.RKC2 (torch's operation order):
#   mode 0: out = f(state)
#   mode 1: f0 = f(state), out = state + c_field f0                 (RKC first stage)
#   mode 2: out = c_y0 y0 + c_prev state + c_prev2 prev2 + c_field f(state) + c_f0 f0
#           (then y0 + (out - y0) if final, as torchdiffeq's y0 + dy)


@_jit
def _field_pass(kind, state, prev2, y0, f0, cv, ch, mask, scale, area, multiplicative, c_y0,
                c_prev, c_prev2, c_field, c_f0, final, work, acc, acc_i, out):
    batch, _, width = state.shape
    rows = mask.shape[1]
    for task in prange(batch * rows):
        b = task // rows
        bi = task - b * rows
        first = bi * scale
        if kind == 0:
            target = out[b, first:first + scale]
        elif kind == 1:
            target = f0[b, first:first + scale]
        else:
            target = work[task, 4:]
        _field_block_row(state[b], cv[b], ch[b], mask[b], bi, scale, area, multiplicative,
                         work[task], acc[task], acc_i[task], target)
        if kind == 1:
            for r in range(scale):
                i = first + r
                for j in range(width):
                    out[b, i, j] = state[b, i, j] + c_field * f0[b, i, j]
        elif kind == 2:
            for r in range(scale):
                i = first + r
                y0_row, state_row, prev2_row = y0[b, i], state[b, i], prev2[b, i]
                field_row, f0_row, out_row = target[r], f0[b, i], out[b, i]
                for j in range(width):
                    out_row[j] = (
                        c_y0 * y0_row[j]
                        + c_prev * state_row[j]
                        + c_prev2 * prev2_row[j]
                        + c_field * field_row[j]
                        + c_f0 * f0_row[j]
                    )
                if final:
                    for j in range(width):
                        out_row[j] = y0_row[j] + (out_row[j] - y0_row[j])


# ------------------------------------------------------- vector-Jacobian product
# For a cotangent a, with q = P(D(I)), p = P(I), rho = m q / p, U/P as in s. 2:
#   multiplicative: alpha = m P(a I) / p,  e = a - U(alpha)
#       a^T df/dI = D(e) - a U(rho) + U(alpha rho)
#   additive:       alpha = m P(a),        e = a - U(alpha)
#       a^T df/dI = D(e)
#   both: a^T df/dcv[i,j] = (e[i,j] - e[i+1,j]) (I[i+1,j] - I[i,j]), same along rows for ch
# (D is self-adjoint: zero-flux divergence of c grad).


@_jit
def _vjp_prepare(image, cv, ch, adjoint, mask, scale, area, multiplicative, work, acc, acc_i,
                 acc_a, rho, beta, e):
    batch = image.shape[0]
    rows = mask.shape[1]
    for task in prange(batch * rows):
        b = task // rows
        bi = task - b * rows
        img = image[b]
        adj = adjoint[b]
        first = bi * scale
        f_up = work[task, 0]
        f_down = work[task, 1]
        diffused = work[task, 2]
        f_row = work[task, 3]
        sums_d = acc[task]
        sums_i = acc_i[task]
        sums_a = acc_a[task]
        if first > 0:
            _flux_down(img, cv[b], first - 1, f_up)
        else:
            _zero(f_up)
        _clear(sums_d)
        _clear(sums_i)
        _clear(sums_a)
        for r in range(scale):
            i = first + r
            _flux_down(img, cv[b], i, f_down)
            _diffusion_row(img[i], f_up, f_down, ch[b, i], f_row, diffused)
            _accumulate_blocks(diffused, scale, sums_d)
            _accumulate_blocks(img[i], scale, sums_i)
            if multiplicative:
                for j in range(diffused.shape[0]):
                    diffused[j] = adj[i, j] * img[i, j]
                _accumulate_blocks(diffused, scale, sums_a)
            else:
                _accumulate_blocks(adj[i], scale, sums_a)
            f_up, f_down = f_down, f_up
        blocks = sums_d.shape[0]
        for k in range(blocks):
            alpha = area - area
            ratio = alpha
            if mask[b, bi, k]:
                if multiplicative:
                    pooled_image = sums_i[k] / area
                    ratio = (sums_d[k] / area) / pooled_image
                    alpha = (sums_a[k] / area) / pooled_image
                else:
                    alpha = sums_a[k] / area
            rho[b, bi, k] = ratio
            beta[b, bi, k] = alpha * ratio
            for r in range(scale):
                i = first + r
                for offset in range(scale):
                    j = k * scale + offset
                    e[b, i, j] = adj[i, j] - alpha


@_jit
def _vjp_finish(image, cv, ch, adjoint, e, rho, beta, mask, scale, multiplicative, work,
                g_image, g_cv, g_ch):
    batch, height, width = image.shape
    rows = mask.shape[1]
    for task in prange(batch * rows):
        b = task // rows
        bi = task - b * rows
        img = image[b]
        ev = e[b]
        first = bi * scale
        f_up = work[task, 0]
        f_down = work[task, 1]
        f_row = work[task, 2]
        if first > 0:
            _flux_down(ev, cv[b], first - 1, f_up)
        else:
            _zero(f_up)
        for r in range(scale):
            i = first + r
            _flux_down(ev, cv[b], i, f_down)
            out = g_image[b, i]
            _diffusion_row(ev[i], f_up, f_down, ch[b, i], f_row, out)
            if multiplicative:
                for k in range(rho.shape[2]):
                    if mask[b, bi, k]:
                        ratio = rho[b, bi, k]
                        extra = beta[b, bi, k]
                        for offset in range(scale):
                            j = k * scale + offset
                            out[j] = (out[j] - adjoint[b, i, j] * ratio) + extra
            if i < height - 1:
                for j in range(width):
                    g_cv[b, i, j] = (ev[i, j] - ev[i + 1, j]) * (img[i + 1, j] - img[i, j])
            for j in range(width - 1):
                g_ch[b, i, j] = (ev[i, j] - ev[i, j + 1]) * (img[i, j + 1] - img[i, j])
            f_up, f_down = f_down, f_up


# ------------------------------------------------------------------- wrappers


def _launch_pool() -> None:
    """Start numba's thread pool without changing torch's thread count.

    numba's OpenMP layer and torch share the OpenMP runtime (one ``libgomp``),
    and starting numba's pool resets the runtime's thread count to numba's
    default: torch's setting (``torch.set_num_threads``) is restored after it.
    """
    if _state.get("launched"):
        return
    before = torch.get_num_threads()
    numba.get_num_threads()  # starts the pool
    torch.set_num_threads(before)
    _state["launched"] = "yes"


def _threads() -> int:
    """Follow torch's intra-op setting (``torch.set_num_threads``) within numba's pool."""
    _launch_pool()
    count = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(count)
    return count


def _array(tensor: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) tensor -> contiguous (B, H, W) array sharing memory where possible."""
    return tensor.detach().contiguous().numpy()[:, 0]


def _scalar(dtype: np.dtype, value: float) -> np.generic:
    return dtype.type(value)


def _workspace(image: np.ndarray, mask: np.ndarray, rows: int) -> tuple[np.ndarray, ...]:
    batch, _, width = image.shape
    tasks = batch * mask.shape[1]
    blocks = mask.shape[2]
    return (np.empty((tasks, rows, width), image.dtype),
            np.empty((tasks, blocks), image.dtype),
            np.empty((tasks, blocks), image.dtype))


def discrete_iterate(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    source: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    num_iter: int,
    step: float,
    eps: float = ADJUST_EPS,
    *,
    callback: Callable[[int], None] | None = None,
    chunk: int = 250,
) -> torch.Tensor:
    """``num_iter`` discrete iterations (``discrete.discrete_step``), fused; no autograd.

    Inputs are validated (``discrete.prepare_problem``): ``source`` finite,
    ``mask_lr`` bool. The result is a new tensor; the inputs are not modified.
    With a ``callback``, the work runs in chunks of ``chunk`` iterations and the
    callback is called after each chunk with the number of finished iterations.
    """
    _require_fit(image, cv, ch, mask_lr, scale)
    if tuple(source.shape) != tuple(mask_lr.shape):
        raise ShapeError(f"fused kernels: source {tuple(source.shape)} and mask_lr "
                         f"{tuple(mask_lr.shape)} differ")
    threads = _threads()
    current = image.detach().contiguous().clone().numpy()[:, 0]
    spare = np.empty_like(current)
    # lam * c once, by torch as the eager step computes it (lam * c * dI multiplies left
    # to right): the same bits, two multiplications per pixel fewer in every iteration
    cv_a, ch_a, source_a = _array(step * cv), _array(step * ch), _array(source)
    mask_a = _array(mask_lr.to(torch.bool))
    dtype = current.dtype
    work, acc, _ = _workspace(current, mask_a, 5)
    # whole images per thread when they share out evenly: no barrier per iteration
    by_image = current.shape[0] % threads == 0
    ring = np.empty((current.shape[0] if by_image else 1, 3, scale, current.shape[2]),
                    current.dtype)
    done = 0
    while done < num_iter:
        count = num_iter - done if callback is None else min(chunk, num_iter - done)
        where = _discrete_kernel(current, spare, cv_a, ch_a, source_a, mask_a, scale, count,
                                 _scalar(dtype, eps),
                                 _scalar(dtype, scale * scale), work, acc, by_image, ring)
        if where == 1:
            current, spare = spare, current
        done += count
        if callback is not None:
            callback(done)
    return torch.from_numpy(current).unsqueeze(1)


def _field(image: torch.Tensor, cv: torch.Tensor, ch: torch.Tensor, mask_lr: torch.Tensor,
           scale: int, projection: str) -> torch.Tensor:
    _require_fit(image, cv, ch, mask_lr, scale)
    _threads()
    image_a = _array(image)
    mask_a = _array(mask_lr.to(torch.bool))
    out = np.empty_like(image_a)
    work, acc, acc_i = _workspace(image_a, mask_a, 4)
    dtype = image_a.dtype
    zero = _scalar(dtype, 0)
    _field_pass(0, image_a, image_a, image_a, image_a, _array(cv), _array(ch), mask_a, scale,
                _scalar(dtype, scale * scale), projection == "multiplicative", zero, zero, zero,
                zero, zero, False, work, acc, acc_i, out)
    return torch.from_numpy(out).unsqueeze(1)


def field_vjp(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    projection: str,
    adjoint: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``adjoint^T`` times the Jacobian of ``f`` w.r.t. ``image``, ``cv`` and ``ch``.

    What ``torch.autograd.grad(f(image), (image, cv, ch), adjoint)`` returns, in
    two fused passes and without a graph.
    """
    _require_fit(image, cv, ch, mask_lr, scale)
    if adjoint.shape != image.shape:
        raise ShapeError(f"fused kernels: adjoint {tuple(adjoint.shape)} and image "
                         f"{tuple(image.shape)} differ")
    _threads()
    image_a, adjoint_a = _array(image), _array(adjoint)
    cv_a, ch_a = _array(cv), _array(ch)
    mask_a = _array(mask_lr.to(torch.bool))
    dtype = image_a.dtype
    multiplicative = projection == "multiplicative"
    work, acc, acc_i = _workspace(image_a, mask_a, 4)
    acc_a = np.empty_like(acc)
    rho = np.empty(mask_a.shape, dtype)
    beta = np.empty(mask_a.shape, dtype)
    e = np.empty_like(image_a)
    _vjp_prepare(image_a, cv_a, ch_a, adjoint_a, mask_a, scale, _scalar(dtype, scale * scale),
                 multiplicative, work, acc, acc_i, acc_a, rho, beta, e)
    g_image = np.empty_like(image_a)
    g_cv = np.empty_like(cv_a)
    g_ch = np.empty_like(ch_a)
    _vjp_finish(image_a, cv_a, ch_a, adjoint_a, e, rho, beta, mask_a, scale, multiplicative,
                work, g_image, g_cv, g_ch)
    return (torch.from_numpy(g_image).unsqueeze(1), torch.from_numpy(g_cv).unsqueeze(1),
            torch.from_numpy(g_ch).unsqueeze(1))


class _FusedField(torch.autograd.Function):
    """``f(I)`` with the fused kernel forward and the fused vector-Jacobian product backward."""

    @staticmethod
    def forward(ctx, image, cv, ch, mask_lr, scale, projection):  # noqa: D102
        ctx.save_for_backward(image, cv, ch, mask_lr)
        ctx.scale, ctx.projection = scale, projection
        return _field(image, cv, ch, mask_lr, scale, projection)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        image, cv, ch, mask_lr = ctx.saved_tensors
        grads = field_vjp(image, cv, ch, mask_lr, ctx.scale, ctx.projection, grad)
        kept = tuple(g if need else None
                     for g, need in zip(grads, ctx.needs_input_grad[:3], strict=True))
        return (*kept, None, None, None)


def projected_field(
    image: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    projection: str = "multiplicative",
) -> torch.Tensor:
    """Fused ``field.projected_field``; differentiable (fused backward) when a graph is recorded."""
    if torch.is_grad_enabled() and (image.requires_grad or cv.requires_grad or
                                    ch.requires_grad):
        return _FusedField.apply(image, cv, ch, mask_lr, scale, projection)
    return _field(image, cv, ch, mask_lr, scale, projection)


def _solve_start(y0: torch.Tensor, cv: torch.Tensor, ch: torch.Tensor, mask_lr: torch.Tensor,
                 scale: int, *, rows: int) -> tuple:
    """What a whole fused solve starts from: a private copy of the state, the arrays of
    the coefficients and mask, a slope buffer, the block area and zero in the state's
    dtype, and the workspace of ``rows`` rows per block row."""
    _require_fit(y0, cv, ch, mask_lr, scale)
    _threads()
    state = y0.detach().contiguous().clone().numpy()[:, 0]
    mask_a = _array(mask_lr.to(torch.bool))
    dtype = state.dtype
    return (state, _array(cv), _array(ch), mask_a, np.empty_like(state),
            _scalar(dtype, scale * scale), _scalar(dtype, 0), _workspace(state, mask_a, rows))


def rkc_solve(
    y0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    projection: str,
    knots: torch.Tensor,
    *,
    stages: int | None = None,
    spectral_radius: float | None = None,
) -> tuple[torch.Tensor, int]:
    """``rkc.RKC2`` over the time grid ``knots`` with one fused pass per stage; no autograd.

    The same arithmetic as torchdiffeq running ``RKC2`` on ``projected_field``
    (coefficients rounded to the state's dtype as torch does). Returns the
    final state and the number of function evaluations.
    """
    from node_dada.diffusion.rkc import rkc_coefficients, rkc_stages_for

    if stages is None and spectral_radius is None:
        raise InputValueError("rkc_solve: expected stages or spectral_radius, got neither")
    state, cv_a, ch_a, mask_a, f0, area, zero, (work, acc, acc_i) = _solve_start(
        y0, cv, ch, mask_lr, scale, rows=4 + scale)
    dtype = state.dtype
    multiplicative = projection == "multiplicative"
    spares = [np.empty_like(state) for _ in range(3)]
    times = [float(x) for x in knots]
    nfe = 0
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        dt = t1 - t0
        count = int(stages) if stages is not None else rkc_stages_for(dt, float(spectral_radius))
        coeff = rkc_coefficients(count)
        mu, nu, mu_t, gamma_t = (coeff[k] for k in ("mu", "nu", "mu_t", "gamma_t"))
        prev2, prev = state, spares[0]
        _field_pass(1, state, state, state, f0, cv_a, ch_a, mask_a, scale, area,
                    multiplicative, zero, zero, zero, _scalar(dtype, mu_t[1] * dt), zero, False,
                    work, acc, acc_i, prev)
        for j in range(2, count + 1):
            out = next(a for a in spares if a is not prev and a is not prev2)
            _field_pass(2, prev, prev2, state, f0, cv_a, ch_a, mask_a, scale, area,
                        multiplicative, _scalar(dtype, 1 - mu[j] - nu[j]), _scalar(dtype, mu[j]),
                        _scalar(dtype, nu[j]), _scalar(dtype, mu_t[j] * dt),
                        _scalar(dtype, gamma_t[j] * dt), j == count, work, acc, acc_i, out)
            prev2, prev = prev, out
        nfe += count
        spares = [a for a in spares if a is not prev] + [state]
        state = prev
    return torch.from_numpy(state).unsqueeze(1), nfe


def euler_solve(
    y0: torch.Tensor,
    cv: torch.Tensor,
    ch: torch.Tensor,
    mask_lr: torch.Tensor,
    scale: int,
    projection: str,
    knots: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Forward Euler over the time grid ``knots``, one fused pass per step; no autograd.

    Each step is ``y + dt * f(y)``, the arithmetic of torchdiffeq's ``euler`` on
    ``projected_field`` (the field and the update in one pass, like the first RKC
    stage). This is the no-gradient lead-in of ODE training and the inference of
    Euler-trained models without a Python-level loop. Returns the final state and
    the number of function evaluations.
    """
    state, cv_a, ch_a, mask_a, f0, area, zero, (work, acc, acc_i) = _solve_start(
        y0, cv, ch, mask_lr, scale, rows=4)
    spare = np.empty_like(state)
    dtype = state.dtype
    multiplicative = projection == "multiplicative"
    times = knots.tolist()
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        _field_pass(1, state, state, state, f0, cv_a, ch_a, mask_a, scale, area,
                    multiplicative, zero, zero, zero, _scalar(dtype, t1 - t0), zero, False,
                    work, acc, acc_i, spare)
        state, spare = spare, state
    return torch.from_numpy(state).unsqueeze(1), len(times) - 1
