"""The unrolled gradient of the discrete iteration, fused (CPU, numba).

Training a discrete model backpropagates through every iteration with gradient
(the ``unrolled`` mode, docs/design.md section 3). Recorded by autograd, each
iteration is about ten tensor operations forward and as many backward, each a
pass over memory with its own allocation and bookkeeping. Here the iterations run
as one ``torch.autograd.Function``:

- forward: the fused discrete kernel of ``fused.py`` (bit-identical to the eager
  iteration), keeping the state every ``k = ceil(sqrt(n))`` iterations;
- backward: segment by segment from the last, the ``k`` states of the segment are
  recomputed from its checkpoint with the same kernel, then the vector-Jacobian
  product of each iteration runs in four fused passes (the two diffusion halves
  recomputed, the adjustment's block sums, then the adjoints of the adjustment,
  of the horizontal half and of the vertical half).

Memory is ``O(sqrt(n))`` states instead of the eager graph's ``O(n)`` (about ten
tensors per iteration). The gradient is the one autograd computes for the eager
loop, the same expressions grouped differently: equal up to round-off
(``tests/test_unrolled.py`` checks float32 and float64 against it and
``gradcheck`` in float64). Gradients reach ``image`` (the start of the
iterations) and the coefficients; a ``source`` that requires grad keeps the eager
path (``discrete.py`` dispatches).

One iteration ``O = A(H(V(I)))`` (``c`` below is ``lam * c``):

- ``V``: ``M[i] = (I[i] - c_v[i-1](I[i] - I[i-1])) + c_v[i](I[i+1] - I[i])``;
- ``H``: the same along each row of ``M``, giving ``K``;
- ``A``: ``O = K * r`` on each valid block, ``r = S / (sum(K) / s^2 + eps)``.

Its transpose: ``gK = g r - (sum(g K) S / (sum(K) / s^2 + eps)^2) / s^2`` on valid
blocks (``g`` elsewhere); then, with ``a[j] = gK[j] - gK[j+1]``,
``d c_h[j] += a[j] (M[j+1] - M[j])`` and ``gM[j] = gK[j] - c_h[j] a[j] + c_h[j-1] a[j-1]``;
likewise down the columns for ``c_v`` and ``gI``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from node_dada.diffusion import fused as _fused
from node_dada.diffusion.fused import _discrete_block_row, _jit, prange
from node_dada.diffusion.operators import ADJUST_EPS
from node_dada.errors import InputValueError

__all__ = ["unrolled_iterate"]


@_jit
def _states_kernel(states, count, cv, ch, source, mask, scale, eps, area, work, acc):
    """``states[k + 1]`` = one discrete iteration of ``states[k]``, ``k < count``."""
    batch = states.shape[1]
    rows = source.shape[1]
    for k in range(count):
        for task in prange(batch * rows):
            b = task // rows
            bi = task - b * rows
            _discrete_block_row(states[k, b], states[k + 1, b], cv[b], ch[b], source[b],
                                mask[b], bi, scale, eps, area, work[task], acc[task])


@_jit
def _vjp_kernel(states, count, cv, ch, source, mask, scale, eps, area, zero, grad, spare,
                grad_cv, grad_ch, mid, pre):
    """Backpropagate ``grad`` (dL/d ``states[count]``) through iterations ``count - 1``
    down to 0: on return ``grad`` holds dL/d ``states[0]``; ``grad_cv`` and ``grad_ch``
    (gradients w.r.t. ``lam * c``) are accumulated. ``spare``, ``mid`` and ``pre`` are
    scratch of the states' shape (B, H, W)."""
    batch, height, width = grad.shape
    rows = source.shape[1]
    blocks = source.shape[2]
    for k in range(count - 1, -1, -1):
        image = states[k]
        # 1. the two diffusion halves again: mid = V(I), pre = H(mid)
        for task in prange(batch * height):
            b = task // height
            i = task - b * height
            for j in range(width):
                up = cv[b, i - 1, j] * (image[b, i, j] - image[b, i - 1, j]) if i > 0 else zero
                down = (cv[b, i, j] * (image[b, i + 1, j] - image[b, i, j])
                        if i < height - 1 else zero)
                mid[b, i, j] = (image[b, i, j] - up) + down
            if width == 1:
                pre[b, i, 0] = mid[b, i, 0]
                continue
            previous = zero
            for j in range(width - 1):
                t = ch[b, i, j] * (mid[b, i, j + 1] - mid[b, i, j])
                pre[b, i, j] = (mid[b, i, j] - previous) + t
                previous = t
            pre[b, i, width - 1] = mid[b, i, width - 1] - previous
        # 2. the adjustment's adjoint, one block row per task: gK into spare
        for task in prange(batch * rows):
            b = task // rows
            bi = task - b * rows
            first = bi * scale
            for kb in range(blocks):
                left = kb * scale
                if not mask[b, bi, kb]:
                    for r in range(scale):
                        for o in range(scale):
                            spare[b, first + r, left + o] = grad[b, first + r, left + o]
                    continue
                total = zero
                inner = zero
                for r in range(scale):
                    for o in range(scale):
                        total += pre[b, first + r, left + o]
                        inner += grad[b, first + r, left + o] * pre[b, first + r, left + o]
                denominator = total / area + eps
                ratio = source[b, bi, kb] / denominator
                shared = inner * (source[b, bi, kb] / (denominator * denominator)) / area
                for r in range(scale):
                    for o in range(scale):
                        spare[b, first + r, left + o] = (
                            grad[b, first + r, left + o] * ratio - shared)
        # 3. the horizontal half's adjoint: gM into pre (pre is no longer needed)
        for task in prange(batch * height):
            b = task // height
            i = task - b * height
            carry = zero  # c_h[j-1] * a[j-1]
            for j in range(width):
                g = spare[b, i, j] + carry
                if j < width - 1:
                    a = spare[b, i, j] - spare[b, i, j + 1]
                    grad_ch[b, i, j] += a * (mid[b, i, j + 1] - mid[b, i, j])
                    carry = ch[b, i, j] * a
                    g -= carry
                pre[b, i, j] = g
        # 4. the vertical half's adjoint: gI into grad
        for task in prange(batch * height):
            b = task // height
            i = task - b * height
            for j in range(width):
                g = pre[b, i, j]
                if i > 0:
                    g += cv[b, i - 1, j] * (pre[b, i - 1, j] - pre[b, i, j])
                if i < height - 1:
                    a = pre[b, i, j] - pre[b, i + 1, j]
                    grad_cv[b, i, j] += a * (image[b, i + 1, j] - image[b, i, j])
                    g -= cv[b, i, j] * a
                grad[b, i, j] = g


def _problem_arrays(cv, ch, source, mask_lr, step):
    # lam * c by torch, as the forward kernel takes it (the same bits as the eager step)
    return (_fused._array(step * cv.detach()), _fused._array(step * ch.detach()),
            _fused._array(source), _fused._array(mask_lr.to(torch.bool)))


class _UnrolledDiscrete(torch.autograd.Function):
    """``num_iter`` discrete iterations with the fused forward and backward."""

    @staticmethod
    def forward(ctx, image, cv, ch, source, mask_lr, scale, num_iter, step, eps, callback):  # noqa: D102
        _fused._threads()
        cv_a, ch_a, source_a, mask_a = _problem_arrays(cv, ch, source, mask_lr, step)
        state = image.detach().contiguous().numpy()[:, 0]
        segment = max(1, math.ceil(math.sqrt(num_iter)))
        buffer = np.empty((segment + 1, *state.shape), state.dtype)
        work, acc, _ = _fused._workspace(state, mask_a, 5)
        dtype = state.dtype
        checkpoints = []
        done = 0
        while done < num_iter:
            count = min(segment, num_iter - done)
            checkpoints.append(state.copy())
            buffer[0] = state
            _states_kernel(buffer, count, cv_a, ch_a, source_a, mask_a, scale,
                           dtype.type(eps), dtype.type(scale * scale), work, acc)
            state = buffer[count].copy()
            done += count
            if callback is not None:
                callback(done)
        ctx.save_for_backward(cv, ch, source, mask_lr)
        ctx.checkpoints, ctx.segment = checkpoints, segment
        ctx.scale, ctx.num_iter, ctx.step, ctx.eps = scale, num_iter, step, eps
        return torch.from_numpy(state).unsqueeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        cv, ch, source, mask_lr = ctx.saved_tensors
        _fused._threads()
        cv_a, ch_a, source_a, mask_a = _problem_arrays(cv, ch, source, mask_lr, ctx.step)
        grad_a = grad.detach().to(cv.dtype).contiguous().clone().numpy()[:, 0]
        dtype = grad_a.dtype
        eps, area = dtype.type(ctx.eps), dtype.type(ctx.scale * ctx.scale)
        buffer = np.empty((ctx.segment + 1, *grad_a.shape), dtype)
        work, acc, _ = _fused._workspace(grad_a, mask_a, 5)
        spare, mid, pre = (np.empty_like(grad_a) for _ in range(3))
        grad_cv = np.zeros_like(cv_a)
        grad_ch = np.zeros_like(ch_a)
        for index in range(len(ctx.checkpoints) - 1, -1, -1):
            count = min(ctx.segment, ctx.num_iter - index * ctx.segment)
            buffer[0] = ctx.checkpoints[index]
            _states_kernel(buffer, count, cv_a, ch_a, source_a, mask_a, ctx.scale, eps, area,
                           work, acc)
            _vjp_kernel(buffer, count, cv_a, ch_a, source_a, mask_a, ctx.scale, eps, area,
                        dtype.type(0), grad_a, spare, grad_cv, grad_ch, mid, pre)
        grads = (torch.from_numpy(grad_a).unsqueeze(1),
                 ctx.step * torch.from_numpy(grad_cv).unsqueeze(1),
                 ctx.step * torch.from_numpy(grad_ch).unsqueeze(1))
        kept = tuple(g if need else None
                     for g, need in zip(grads, ctx.needs_input_grad[:3], strict=True))
        return (*kept, None, None, None, None, None, None, None)


def unrolled_iterate(
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
) -> torch.Tensor:
    """``num_iter`` discrete iterations (``discrete.discrete_step``) that autograd
    differentiates w.r.t. ``image``, ``cv`` and ``ch`` with the fused backward.

    Inputs are validated (``discrete.prepare_problem``) and fit the kernels
    (``fused.fits``); ``source`` takes no gradient. The forward result is
    bit-identical to the eager loop. ``callback`` is called with the number of
    finished iterations after each segment of ``ceil(sqrt(num_iter))``.
    """
    _fused._require_fit(image, cv, ch, mask_lr, scale)
    if source.requires_grad:
        raise InputValueError("unrolled_iterate: expected a source without gradient, got one "
                              "that requires grad; run the eager loop (discrete.py) for it")
    return _UnrolledDiscrete.apply(image, cv, ch, source, mask_lr, scale, num_iter, step,
                                   eps, callback)
