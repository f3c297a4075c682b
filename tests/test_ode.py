"""The continuous formulation: vector fields, solvers, gradient modes (docs/design.md s. 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq

from node_dada.diffusion import (
    block_mean,
    coefficient_gradient,
    discrete_dada,
    edge_coefficients,
    gradient_fidelity,
    growing_knots,
    projected_field,
    solve_ode,
)
from node_dada.diffusion.rkc import rkc_coefficients, rkc_stages_for
from node_dada.errors import InputValueError, NodeDadaError, SolverError

F64 = torch.float64


def problem(h=4, w=4, scale=4, dtype=F64, holes=False, kappa=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    big_h, big_w = h * scale, w * scale
    depth0 = (torch.rand(1, 1, big_h, big_w, generator=gen) + 0.5).to(dtype)
    cv, ch = edge_coefficients(torch.rand(1, 3, big_h, big_w, generator=gen).to(dtype), kappa)
    source = (torch.rand(1, 1, h, w, generator=gen) + 0.5).to(dtype)
    mask = torch.ones(1, 1, h, w, dtype=torch.bool)
    if holes:
        mask[0, 0, 1, 2] = False
    return depth0, cv, ch, source, mask


def smooth_problem(size=12, scale=4):
    """Smooth coefficients and a smooth start: solvers show their textbook order."""
    rows = torch.linspace(0, 1, size, dtype=F64).view(-1, 1)
    cols = torch.linspace(0, 1, size, dtype=F64).view(1, -1)
    depth0 = (1.5 + 0.3 * torch.sin(3 * rows) * torch.cos(2 * cols))[None, None]
    cv = (0.6 + 0.2 * torch.cos(rows[1:] * 2 + cols))[None, None]
    ch = (0.6 + 0.2 * torch.sin(rows + cols[:, 1:]))[None, None]
    source = block_mean(depth0, scale) * 1.05
    return depth0, cv, ch, source, torch.ones_like(source, dtype=torch.bool)


@pytest.mark.parametrize("projection", ["multiplicative", "additive"])
def test_vector_field_is_tangent_to_the_constraint(projection):
    image, cv, ch, _, mask = problem(holes=True)
    field = projected_field(image, cv, ch, mask, 4, projection)
    pooled = block_mean(field, 4)
    assert pooled[mask].abs().max() < 1e-13
    assert pooled[~mask].abs().min() > 1e-6  # invalid blocks are unconstrained


def test_additive_field_is_linear_and_multiplicative_is_homogeneous():
    image, cv, ch, _, mask = problem()
    add = lambda x: projected_field(x, cv, ch, mask, 4, "additive")  # noqa: E731
    mul = lambda x: projected_field(x, cv, ch, mask, 4, "multiplicative")  # noqa: E731
    other = torch.rand_like(image)
    torch.testing.assert_close(add(image + 2 * other), add(image) + 2 * add(other))
    torch.testing.assert_close(mul(3 * image), 3 * mul(image))


def test_output_is_source_consistent_to_round_off():
    depth0, cv, ch, source, mask = problem(dtype=torch.float32, holes=True)
    for method, kwargs in [("euler", {"step_size": 0.24}), ("dopri5", {}), ("rkc", {"step_size": 5.0})]:
        out, _ = solve_ode(depth0, cv, ch, source, mask, 20.0, method=method, **kwargs)
        torch.testing.assert_close(block_mean(out, 4)[mask], source[mask], rtol=1e-6, atol=0)


def test_euler_tracks_the_discrete_iteration_at_first_order():
    depth0, cv, ch, source, mask = problem()
    differences = []
    for step in (0.24, 0.12, 0.06):
        discrete = discrete_dada(depth0, cv, ch, source, mask, round(24 / step), step)
        continuous, info = solve_ode(depth0, cv, ch, source, mask, 24.0, step_size=step)
        assert info.nfe_forward == info.steps == round(24 / step)
        differences.append(float((continuous - discrete).norm() / discrete.norm()))
    assert differences[0] < 5e-3
    orders = [math.log2(a / b) for a, b in zip(differences, differences[1:], strict=False)]
    assert all(0.8 < order < 1.3 for order in orders), orders


@pytest.mark.parametrize(
    ("method", "order", "options"),
    [("euler", 1, {}), ("midpoint", 2, {}), ("rk4", 4, {}), ("rkc", 2, {"stages": 4})],
)
def test_fixed_step_methods_converge_at_their_order(method, order, options):
    depth0, cv, ch, source, mask = smooth_problem()
    reference, _ = solve_ode(depth0, cv, ch, source, mask, 1.0, method="rk4", step_size=1 / 256)
    errors = []
    for step in (1 / 8, 1 / 16):
        out, _ = solve_ode(depth0, cv, ch, source, mask, 1.0, method=method, step_size=step,
                           options=options)
        errors.append(float((out - reference).norm()))
    measured = math.log2(errors[0] / errors[1])
    assert abs(measured - order) < 0.35, measured


def test_nfe_budget_overrun_raises():
    depth0, cv, ch, source, mask = problem()
    with pytest.raises(SolverError, match="max_nfe=50"):
        solve_ode(depth0, cv, ch, source, mask, 100.0, method="dopri5", rtol=1e-10, atol=1e-12,
                  max_nfe=50)
    with pytest.raises(SolverError, match="budget"):
        solve_ode(depth0, cv, ch, source, mask, 10.0, method="euler", max_nfe=10)


@pytest.mark.parametrize(("method", "step"), [("euler", 0.24), ("rk4", 0.24), ("rkc", 3.0)])
def test_direct_and_checkpointed_gradients_agree_to_round_off(method, step):
    depth0, cv, ch, source, mask = problem(holes=True)
    kwargs = {"method": method, "step_size": step}
    direct = coefficient_gradient(depth0, cv, ch, source, mask, 48.0, grad_mode="direct", **kwargs)
    checkpointed = coefficient_gradient(depth0, cv, ch, source, mask, 48.0,
                                        grad_mode="checkpointed", **kwargs)
    torch.testing.assert_close(checkpointed, direct, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("slots", [0, 1, 2, 3, 12])
@pytest.mark.parametrize("mode", ["checkpointed", "adjoint"])
def test_gradients_do_not_depend_on_the_number_of_checkpoint_slots(monkeypatch, slots, mode):
    """The binomial schedule only decides what is recomputed, never the result."""
    from node_dada.diffusion import segmented

    depth0, cv, ch, source, mask = problem(holes=True)
    kwargs = {"method": "euler", "step_size": 0.24, "grad_mode": mode}
    reference = coefficient_gradient(depth0, cv, ch, source, mask, 60.0, **kwargs)  # 32 leaves
    monkeypatch.setattr(segmented, "CHECKPOINT_SLOTS", slots)
    gradient = coefficient_gradient(depth0, cv, ch, source, mask, 60.0, **kwargs)
    torch.testing.assert_close(gradient, reference, rtol=1e-12, atol=1e-15)


def replay_schedule(leaves: int, slots: int) -> dict:
    """Replays the binomial schedule's decisions as ``segmented._Reversal`` takes them:
    leaf advances per leaf, the order leaves are reversed in, the most states held."""
    from node_dada.diffusion.segmented import first_sweep, split

    stored = first_sweep(leaves, slots)
    record = {"stored": stored, "advances": [1] * leaves, "order": [], "peak": 0,
              "kept": set(stored)}  # the forward sweep advances every leaf once

    def reverse(first, last, free, held):
        record["peak"] = max(record["peak"], held)
        while last - first > 1:
            if free == 0:
                for leaf in range(first, last - 1):
                    record["advances"][leaf] += 1
                record["order"].append(last - 1)
                last -= 1
                continue
            middle = first + split(last - first, free)
            assert first < middle < last
            if middle in record["kept"]:
                record["kept"].discard(middle)
            else:
                for leaf in range(first, middle):
                    record["advances"][leaf] += 1
            reverse(middle, last, free - 1, held + 1)
            last = middle
        record["order"].append(first)

    reverse(0, leaves, slots, 0)
    return record


@pytest.mark.parametrize("slots", [1, 2, 3, 12])
def test_binomial_schedule_holds_at_most_its_slots_and_recomputes_little(slots):
    """Held states never exceed the slots, every leaf is reversed once, last to first,
    and no leaf is advanced more than ``r`` times where C(slots + r, r) first reaches
    the number of leaves."""
    for leaves in [1, 2, 5, 13, 64, 250, 1000]:
        record = replay_schedule(leaves, slots)
        assert len(record["stored"]) <= slots
        assert record["stored"] == sorted(set(record["stored"]))
        assert record["order"] == list(range(leaves - 1, -1, -1)) and not record["kept"]
        assert record["peak"] <= slots
        sweeps = next(r for r in range(leaves + 1) if math.comb(slots + r, r) >= leaves)
        assert max(record["advances"]) <= max(sweeps, 1)


def test_checkpointed_gradient_reaches_depth0_and_matches_direct():
    depth0, cv, ch, source, mask = problem()
    grads = []
    for mode in ("direct", "checkpointed", "adjoint"):
        start = depth0.clone().requires_grad_(True)
        out, _ = solve_ode(start, cv, ch, source, mask, 5.0, method="rk4", grad_mode=mode)
        (out**2).sum().backward()
        grads.append(start.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)
    # the continuous adjoint sees RK4's stiff transient only through interpolated states
    cosine = float((grads[2] * grads[0]).sum() / (grads[2].norm() * grads[0].norm()))
    assert cosine > 0.999


def test_stable_adjoint_matches_direct_with_rk4():
    depth0, cv, ch, source, mask = problem(h=2, w=2)
    fidelity = gradient_fidelity(depth0, cv, ch, source, mask, 96.0, grad_mode="adjoint",
                                 method="rk4", step_size=0.24)
    assert fidelity.cosine >= 0.999999 and fidelity.relative_error < 1e-3


@pytest.mark.slow
def test_stable_adjoint_matches_direct_at_the_inference_horizon():
    """The foundation's target: rk4, h = 0.24, T = 1920 (8000 steps), small image."""
    depth0, cv, ch, source, mask = problem(h=2, w=2)
    kwargs = {"method": "rk4", "step_size": 0.24}
    reference = coefficient_gradient(depth0, cv, ch, source, mask, 1920.0, grad_mode="direct",
                                     **kwargs)
    fidelity = gradient_fidelity(depth0, cv, ch, source, mask, 1920.0, grad_mode="adjoint",
                                 reference=reference, **kwargs)
    assert fidelity.cosine >= 0.999
    with pytest.raises(SolverError, match="anti-diffusion"):
        gradient_fidelity(depth0, cv, ch, source, mask, 1920.0, grad_mode="adjoint_naive",
                          reference=reference, **kwargs)


def test_naive_adjoint_works_briefly_and_its_failure_is_detected_and_reported():
    depth0, cv, ch, source, mask = problem(h=2, w=2)
    short = gradient_fidelity(depth0, cv, ch, source, mask, 2.4, grad_mode="adjoint_naive",
                              method="rk4", step_size=0.24)
    assert short.cosine > 0.99
    with pytest.raises(SolverError, match="anti-diffusion") as info:
        gradient_fidelity(depth0, cv, ch, source, mask, 48.0, grad_mode="adjoint_naive",
                          method="rk4", step_size=0.24)
    assert isinstance(info.value, NodeDadaError)


def test_euler_continuous_gradient_converges_to_the_discrete_one_as_h_shrinks():
    """With Euler the continuous adjoint and the unrolled gradient differ by O(h)."""
    depth0, cv, ch, source, mask = problem(h=2, w=2)
    errors = []
    for step in (0.24, 0.06):
        unrolled = coefficient_gradient(depth0, cv, ch, source, mask, 24.0, grad_mode="unrolled",
                                        step_size=step)
        errors.append(gradient_fidelity(depth0, cv, ch, source, mask, 24.0, grad_mode="adjoint",
                                        reference=unrolled, method="euler", step_size=step))
    assert errors[1].relative_error < errors[0].relative_error / 2
    assert errors[1].cosine > errors[0].cosine


def test_info_counts_forward_and_backward_work():
    depth0, cv, ch, source, mask = problem()
    cv = cv.clone().requires_grad_(True)
    out, info = solve_ode(depth0, cv, ch, source, mask, 4.8, method="euler", grad_mode="adjoint")
    assert info.nfe_forward == 20 and info.nfe_backward == 0 and info.steps == 20
    out.sum().backward()
    assert info.nfe_backward > 20 and info.backward_time_s > 0 and info.wall_time_s > 0
    assert set(info.as_dict()) >= {"nfe_forward", "nfe_backward", "wall_time_s", "method"}


def test_a_field_bound_to_other_coefficients_shares_the_budget_and_leaves_the_original():
    """``with_coefficients`` is how the backward passes evaluate the field with detached
    or gradient-collecting coefficients: the original keeps its own, and every
    evaluation counts against the one budget (``max_nfe`` covers all of them)."""
    from node_dada.diffusion import ProjectedDiffusion
    from node_dada.diffusion.operators import hard_adjust

    depth0, cv, ch, source, mask = problem()
    func = ProjectedDiffusion(cv, ch, mask, 4, "multiplicative", 2)
    func.fused = False
    other_cv, other_ch = 0.5 * cv, 0.5 * ch
    bound = func.with_coefficients(other_cv, other_ch)
    assert func.cv is cv and func.ch is ch
    assert bound.cv is other_cv and bound.ch is other_ch
    y = hard_adjust(depth0, source, mask, 4)
    t = torch.tensor(0.0)
    torch.testing.assert_close(bound(t, y), projected_field(y, other_cv, other_ch, mask, 4))
    torch.testing.assert_close(func(t, y), projected_field(y, cv, ch, mask, 4))
    assert func.nfe == bound.nfe == 2
    with pytest.raises(SolverError, match="max_nfe=2"):
        bound(t, y)


def test_no_grad_solve_is_the_direct_solve():
    depth0, cv, ch, source, mask = problem()
    plain, _ = solve_ode(depth0, cv, ch, source, mask, 4.8, method="rk4")
    with torch.no_grad():
        for mode in ("checkpointed", "adjoint", "adjoint_naive"):
            out, _ = solve_ode(depth0, cv, ch, source, mask, 4.8, method="rk4", grad_mode=mode)
            torch.testing.assert_close(out, plain)


def test_gradcheck_direct_float64():
    depth0, cv, ch, source, mask = problem(h=2, w=2, scale=2)
    inputs = tuple(t.clone().requires_grad_(True) for t in (depth0, cv, ch))

    def run(d0, c_v, c_h):
        return solve_ode(d0, c_v, c_h, source, mask, 0.72, method="midpoint")[0]

    assert torch.autograd.gradcheck(run, inputs)


def test_rkc_is_registered_with_torchdiffeq_and_stable_beyond_euler():
    assert rkc_coefficients(10)["beta"][0] == pytest.approx(64.7, abs=0.1)  # ~0.65 s^2
    assert rkc_stages_for(10.0, 8.0) <= 12
    y0 = torch.tensor([1.0], dtype=F64)
    out = torchdiffeq.odeint(lambda t, y: -100 * y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                             method="rkc", options={"step_size": 0.1, "spectral_radius": 100.0})
    assert abs(float(out[-1])) < 1e-3  # Euler at this step (h * 100 = 10) explodes
    depth0, cv, ch, source, mask = problem()
    # random rough coefficients: a hard case (measured 2.0e-4 at h = 4, 3.6e-3 at h = 8)
    rkc, info = solve_ode(depth0, cv, ch, source, mask, 480.0, method="rkc", step_size=4.0)
    euler, euler_info = solve_ode(depth0, cv, ch, source, mask, 480.0, step_size=0.24)
    assert info.nfe_forward < 0.6 * euler_info.nfe_forward
    assert float((rkc - euler).norm() / euler.norm()) < 1e-3


def test_growing_knots_grow_geometrically_and_end_exactly_at_the_horizon():
    knots = growing_knots(1920.0, 10.0, 1.5)
    steps = knots.diff()
    assert knots[0] == 0 and knots[-1] == 1920.0 and len(steps) == 12
    torch.testing.assert_close(steps[1:-1] / steps[:-2], torch.full((10,), 1.5, dtype=F64))
    assert 0 < steps[-1] < 10.0 * 1.5 ** 11  # the remainder, at most a full step
    # a remainder under 30 % of the step before it is merged into that step
    assert growing_knots(75.0, 10.0, 2.0).tolist() == [0.0, 10.0, 30.0, 75.0]
    assert growing_knots(5.0, 10.0, 2.0).tolist() == [0.0, 5.0]
    assert torch.equal(growing_knots(4.0, 1.0, 1.0), torch.arange(5, dtype=F64))


def test_growing_rkc_steps_are_more_accurate_for_fewer_evaluations():
    """Measured on this problem: uniform h = 8, 720 NFE, 3.6e-3 from Euler's solve;
    steps growing from 0.5 by 1.3x, 346 NFE, 1.0e-5."""
    depth0, cv, ch, source, mask = problem()
    reference, _ = solve_ode(depth0, cv, ch, source, mask, 480.0, step_size=0.24)
    uniform, uniform_info = solve_ode(depth0, cv, ch, source, mask, 480.0, method="rkc",
                                      step_size=8.0)
    growing, info = solve_ode(depth0, cv, ch, source, mask, 480.0, method="rkc", step_size=0.5,
                              step_growth=1.3)
    assert info.steps == len(growing_knots(480.0, 0.5, 1.3)) - 1 < uniform_info.steps
    assert info.nfe_forward < 0.6 * uniform_info.nfe_forward
    error = float((growing - reference).norm() / reference.norm())
    uniform_error = float((uniform - reference).norm() / reference.norm())
    assert error < 1e-4 < uniform_error


def test_gradients_on_a_growing_grid():
    """Checkpointing replays the same growing grid (round-off); the stable adjoint's
    error is largest in its long last steps, where the adjoint state changes fastest
    (measured: 15 % relative error here, against 0.6 % with uniform steps of 0.25)."""
    depth0, cv, ch, source, mask = problem(h=2, w=2)
    kwargs = {"method": "rkc", "step_size": 0.1, "step_growth": 1.3}
    direct = coefficient_gradient(depth0, cv, ch, source, mask, 2.4, grad_mode="direct",
                                  **kwargs)
    checkpointed = coefficient_gradient(depth0, cv, ch, source, mask, 2.4,
                                        grad_mode="checkpointed", **kwargs)
    torch.testing.assert_close(checkpointed, direct, rtol=1e-10, atol=1e-14)
    adjoint = gradient_fidelity(depth0, cv, ch, source, mask, 2.4, grad_mode="adjoint",
                                reference=direct, **kwargs)
    assert adjoint.cosine > 0.98 and adjoint.relative_error < 0.3


@pytest.mark.parametrize(("method", "growth", "match"), [
    ("euler", 1.5, "growing steps need the stabilised method 'rkc'"),
    ("dopri5", 1.2, "adaptive ones choose their own steps"),
    ("rkc", 0.5, "expected a finite number >= 1, got 0.5"),
    ("rkc", float("nan"), "expected a finite number >= 1"),
    ("rkc", True, "expected a finite number >= 1, got True"),
])
def test_bad_step_growth_is_refused_with_the_fix(method, growth, match):
    depth0, cv, ch, source, mask = problem()
    with pytest.raises(InputValueError, match=match):
        solve_ode(depth0, cv, ch, source, mask, 8.0, method=method, step_size=1.0,
                  step_growth=growth)


def test_euler_beyond_its_stability_limit_blows_up():
    """The documented limit: explicit Euler needs h * 8 max(c) <= 2."""
    depth0, _, _, source, mask = problem()
    cv = torch.ones(1, 1, 15, 16, dtype=F64)
    ch = torch.ones(1, 1, 16, 15, dtype=F64)
    stable, _ = solve_ode(depth0, cv, ch, source, mask, 24.0, step_size=0.24)
    unstable, _ = solve_ode(depth0, cv, ch, source, mask, 24.0, step_size=0.3)
    assert stable.abs().max() < 3
    assert not torch.isfinite(unstable).all() or unstable.abs().max() > 1e3


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"method": "nope"}, "method"),
        ({"projection": "sideways"}, "projection"),
        ({"grad_mode": "magic"}, "grad_mode"),
        ({"step_size": None}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
    ],
)
def test_bad_options_raise(kwargs, phrase):
    depth0, cv, ch, source, mask = problem()
    with pytest.raises(InputValueError, match=phrase):
        solve_ode(depth0, cv, ch, source, mask, 1.0, **kwargs)
    with pytest.raises(InputValueError, match="t_end"):
        solve_ode(depth0, cv, ch, source, mask, -1.0)
