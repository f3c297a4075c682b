"""A solve without a graph whose backward runs leaf by leaf, last to first, on the
binomial (revolve) checkpoint schedule: the ``checkpointed`` and ``adjoint`` gradient
modes (``ode.GRADIENT_MODES``).

At most ``CHECKPOINT_SLOTS`` states between leaves are held at any time, placed by
the binomial schedule, which needs the fewest recomputations for that many slots:
memory ``O(slots + leaf)`` whatever the horizon, each step recomputed about ``r``
times where ``C(slots + r, r)`` reaches the number of leaves (r = 4 for 1000 leaves,
T = 1920 at h = 0.24). What runs per leaf is the mode's choice: autograd through the
replayed leaf (``backward_leaf_autograd``, the exact gradient of the discretised
solve) or the stable adjoint (``adjoint.backward_leaf_adjoint``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from node_dada.diffusion.field import ProjectedDiffusion
from node_dada.diffusion.grid import Plan, SolveInfo, integrate, run_leaves

__all__ = ["CHECKPOINT_SLOTS", "LeafBackward", "backward_leaf_autograd", "first_sweep",
           "segmented", "split"]

#: The most states between leaves held at once.
CHECKPOINT_SLOTS = 12

#: ``(func, plan, leaf, start, totals, cv_req, ch_req)``: accumulate into
#: ``totals = [a, g_cv, g_ch]`` the gradient through ``leaf`` from its first state
#: ``start`` (``cv_req``/``ch_req``: leaves of the coefficients that collect it).
LeafBackward = Callable[..., None]


def _reversible(slots: int, sweeps: int) -> int:
    """Leaves that ``slots`` stored states reverse when no leaf is advanced more than
    ``sweeps`` times: ``C(slots + sweeps, slots)`` (Griewank's binomial bound)."""
    return math.comb(slots + sweeps, slots)


def split(leaves: int, slots: int) -> int:
    """Where the binomial schedule stores its next state when ``leaves`` (> 1) leaves
    are to be reversed with ``slots`` (> 0) free slots: the left part is then
    reversed with the same slots and one sweep fewer, the right one with a slot
    fewer and the same sweeps."""
    sweeps = 1
    while _reversible(slots, sweeps) < leaves:
        sweeps += 1
    return min(_reversible(slots, sweeps - 1), leaves - 1)


def first_sweep(leaves: int, slots: int) -> list[int]:
    """The leaf indices the schedule stores on its first (forward) sweep."""
    stored, position = [], 0
    while leaves - position > 1 and slots > 0:
        position += split(leaves - position, slots)
        stored.append(position)
        slots -= 1
    return stored


class _SegmentedSolve(torch.autograd.Function):
    """Forward without a graph, keeping the binomial schedule's first states; backward
    per leaf, last to first, recomputing the states the schedule dropped."""

    @staticmethod
    def forward(ctx, y0, cv, ch, func, plan, leaf_backward, info):  # noqa: D102
        ctx.func, ctx.plan, ctx.leaf_backward, ctx.info = func, plan, leaf_backward, info
        stored = first_sweep(len(plan.leaves), CHECKPOINT_SLOTS)
        with torch.no_grad():
            field = func.with_coefficients(cv, ch)
            states = []
            y, done = y0, 0
            for position in [*stored, len(plan.leaves)]:
                y = run_leaves(field, y, plan, done, position)
                states.append(y)
                done = position
        # held on ctx, not saved for backward, so each is freed once the backward used it
        ctx.kept = dict(zip(stored, states[:-1], strict=True))
        ctx.save_for_backward(cv, ch, y0)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        cv, ch, y0 = ctx.saved_tensors
        kept, ctx.kept = ctx.kept, None
        func, info = ctx.func, ctx.info
        nfe_before = func.nfe
        func.budget.phase = "backward"
        clock = time.perf_counter()
        cv_req = cv.detach().requires_grad_(True)
        ch_req = ch.detach().requires_grad_(True)
        totals = [grad_out, torch.zeros_like(cv), torch.zeros_like(ch)]
        _Reversal(ctx, cv_req, ch_req, totals).reverse(
            y0, 0, len(ctx.plan.leaves), CHECKPOINT_SLOTS, kept)
        info.nfe_backward += func.nfe - nfe_before
        info.backward_time_s += time.perf_counter() - clock
        return totals[0], totals[1], totals[2], None, None, None, None


class _Reversal:
    """One backward pass of the schedule: the gradient ``totals = [a, g_cv, g_ch]``
    carried from the last leaf to the first."""

    def __init__(self, ctx, cv_req: torch.Tensor, ch_req: torch.Tensor,
                 totals: list[torch.Tensor]) -> None:
        self.func, self.plan, self.leaf_backward = ctx.func, ctx.plan, ctx.leaf_backward
        self.frozen = ctx.func.with_coefficients(cv_req.detach(), ch_req.detach())
        self.cv_req, self.ch_req, self.totals = cv_req, ch_req, totals

    def advance(self, y: torch.Tensor, begin: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            return run_leaves(self.frozen, y, self.plan, begin, end)

    def backward_leaf(self, start: torch.Tensor, index: int) -> None:
        self.leaf_backward(self.func, self.plan, self.plan.leaves[index], start, self.totals,
                           self.cv_req, self.ch_req)

    def reverse(self, start: torch.Tensor, first: int, last: int, slots: int,
                kept: dict[int, torch.Tensor]) -> None:
        """The gradient through leaves [first, last) from the state ``start`` at leaf
        ``first``, holding at most ``slots`` more states (``kept``: those the forward
        sweep already stored). The right part recurses with a slot fewer (depth <=
        slots); the left part loops."""
        while last - first > 1:
            if slots == 0:  # no slot left (not reached by the schedule itself): replay per leaf
                self.backward_leaf(self.advance(start, first, last - 1), last - 1)
                last -= 1
                continue
            middle = first + split(last - first, slots)
            middle_state = kept.pop(middle, None)
            if middle_state is None:
                middle_state = self.advance(start, first, middle)
            self.reverse(middle_state, middle, last, slots - 1, kept)
            del middle_state
            last = middle
        self.backward_leaf(start, first)


def backward_leaf_autograd(func: ProjectedDiffusion, plan: Plan, leaf: tuple[int, int],
                           start: torch.Tensor, totals: list[torch.Tensor],
                           cv_req: torch.Tensor, ch_req: torch.Tensor) -> None:
    """``checkpointed``: replay the leaf with autograd and backpropagate through it."""
    live = func.with_coefficients(cv_req, ch_req)
    with torch.enable_grad():
        y = start.detach().requires_grad_(True)
        out = integrate(live, y, plan.leaf_times(leaf), plan)
        grads = torch.autograd.grad(out, (y, cv_req, ch_req), totals[0], allow_unused=True)
    totals[0] = grads[0]
    for index in (1, 2):
        if grads[index] is not None:
            totals[index] = totals[index] + grads[index]


def segmented(leaf_backward: LeafBackward) -> Callable[..., torch.Tensor]:
    """A gradient mode: a solve without a graph whose backward runs ``leaf_backward``
    per leaf."""

    def solve(func: ProjectedDiffusion, y0, cv, ch, plan: Plan,
              info: SolveInfo) -> torch.Tensor:
        info.segments = len(plan.leaves)
        return _SegmentedSolve.apply(y0, cv, ch, func, plan, leaf_backward, info)

    return solve
