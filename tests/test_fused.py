"""The fused CPU kernels against the eager torch path they replace.

Expected values come from the eager code itself (``discrete._iterate`` loop,
``field.projected_field`` and autograd), run in the same test with the fused
kernels switched off. Problems are tiny: the kernels compile once (a few
seconds, cached on disk by numba) and then run in milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from node_dada.diffusion import (
    ProjectedDiffusion,
    discrete_dada,
    discrete_dada_two_phase,
    edge_coefficients,
    fused,
    projected_field,
    solve_ode,
)
from node_dada.errors import InputValueError

needs_numba = pytest.mark.skipif(not fused.available(), reason="numba is not installed")
F64 = torch.float64


@pytest.fixture
def always():
    """Fused kernels wherever the tensors allow, whatever the problem size."""
    with fused.using("always"):
        yield


def problem(batch=2, h=5, w=4, scale=4, dtype=torch.float32, holes=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    big_h, big_w = h * scale, w * scale
    depth0 = (torch.rand(batch, 1, big_h, big_w, generator=gen) + 0.5).to(dtype)
    features = torch.rand(batch, 4, big_h, big_w, generator=gen).to(dtype)
    cv, ch = edge_coefficients(features, 0.3)
    source = (torch.rand(batch, 1, h, w, generator=gen) + 0.5).to(dtype)
    mask = torch.ones(batch, 1, h, w, dtype=torch.bool)
    if holes:
        mask[:, :, 1:3, min(2, w - 1)] = False
        mask[0, 0, -1, 0] = False
        source[~mask] = float("nan")
    return depth0, cv, ch, source, mask


def run_both(function):
    """``function()`` on the eager path, then on the fused path."""
    with fused.using("never"):
        eager = function()
    with fused.using("always"):
        fast = function()
    return eager, fast


@needs_numba
@pytest.mark.parametrize("holes", [False, True], ids=["all-valid", "masked"])
@pytest.mark.parametrize("scale", [1, 3, 4])
def test_discrete_float32_matches_eager_after_200_iterations(holes, scale):
    depth0, cv, ch, source, mask = problem(scale=scale, holes=holes)
    eager, fast = run_both(lambda: discrete_dada(depth0, cv, ch, source, mask, 200))
    assert fast.dtype == torch.float32 and fast.shape == eager.shape
    # same operations in the same order: bit-identical on x86; allow float32 round-off
    torch.testing.assert_close(fast, eager, rtol=2e-6, atol=0)


@needs_numba
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_discrete_float64_batches_match_eager(batch):
    depth0, cv, ch, source, mask = problem(batch=batch, dtype=F64)
    eager, fast = run_both(lambda: discrete_dada(depth0, cv, ch, source, mask, 200))
    torch.testing.assert_close(fast, eager, rtol=1e-13, atol=0)


@needs_numba
def test_discrete_each_image_of_a_batch_is_solved_on_its_own(always):
    depth0, cv, ch, source, mask = problem(batch=3, dtype=F64)
    batched = discrete_dada(depth0, cv, ch, source, mask, 50)
    for index in range(3):
        part = slice(index, index + 1)
        alone = discrete_dada(depth0[part], cv[part], ch[part], source[part], mask[part], 50)
        torch.testing.assert_close(batched[part], alone, rtol=1e-14, atol=0)


@needs_numba
def test_discrete_inputs_unchanged_and_non_contiguous_accepted(always):
    depth0, cv, ch, source, mask = problem(h=4, w=4)
    copies = [t.clone() for t in (depth0, cv, ch, source, mask)]
    reference = discrete_dada(depth0, cv, ch, source, mask, 30)
    for before, after in zip(copies, (depth0, cv, ch, source, mask), strict=True):
        assert torch.equal(before.nan_to_num(-1), after.nan_to_num(-1))
    depth_t = depth0.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not depth_t.is_contiguous()
    torch.testing.assert_close(discrete_dada(depth_t, cv, ch, source, mask, 30), reference)


@needs_numba
def test_discrete_callback_reports_chunks_up_to_the_total(always, monkeypatch):
    depth0, cv, ch, source, mask = problem()
    seen: list[int] = []
    out = discrete_dada(depth0, cv, ch, source, mask, 600, callback=seen.append)
    assert seen == [250, 500, 600]
    torch.testing.assert_close(out, discrete_dada(depth0, cv, ch, source, mask, 600))


@needs_numba
def test_discrete_two_phase_with_gradient_matches_the_eager_forward(always):
    depth0, cv, ch, source, mask = problem(batch=1, h=2, w=2)
    cv = cv.clone().requires_grad_(True)
    out, _ = discrete_dada_two_phase(depth0, cv, ch, source, mask, num_pre=40, num_train=3)
    out.sum().backward()
    assert cv.grad is not None and cv.grad.abs().sum() > 0
    with fused.using("never"):
        reference = discrete_dada(depth0, cv.detach(), ch, source, mask, 43)
    torch.testing.assert_close(out.detach(), reference, rtol=2e-6, atol=0)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("projection", ["multiplicative", "additive"])
def test_field_matches_eager(projection, dtype):
    depth0, cv, ch, source, mask = problem(dtype=dtype)
    eager = projected_field(depth0, cv, ch, mask, 4, projection)
    fast = fused.projected_field(depth0, cv, ch, mask, 4, projection)
    torch.testing.assert_close(fast, eager, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-15)


@needs_numba
@pytest.mark.parametrize("scale", [1, 3])
@pytest.mark.parametrize("projection", ["multiplicative", "additive"])
def test_field_vjp_matches_autograd_in_float64(projection, scale):
    depth0, cv, ch, source, mask = problem(scale=scale, dtype=F64)
    adjoint = torch.randn(depth0.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    inputs = [t.clone().requires_grad_(True) for t in (depth0, cv, ch)]
    value = projected_field(*inputs, mask, scale, projection)
    expected = torch.autograd.grad(value, inputs, adjoint)
    got = fused.field_vjp(depth0, cv, ch, mask, scale, projection, adjoint)
    for name, g, e in zip(("image", "cv", "ch"), got, expected, strict=True):
        assert g.shape == e.shape, name
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-13, msg=name)


@needs_numba
@pytest.mark.parametrize("projection", ["multiplicative", "additive"])
def test_fused_field_passes_gradcheck(projection):
    depth0, cv, ch, _, mask = problem(batch=1, h=2, w=2, scale=2, dtype=F64)
    inputs = tuple(t.clone().requires_grad_(True) for t in (depth0, cv, ch))

    def field(image, c_v, c_h):
        return fused.projected_field(image, c_v, c_h, mask, 2, projection)

    assert torch.autograd.gradcheck(field, inputs)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(("step", "growth"), [(4.0, 1.0), (1.0, 1.5)])
def test_rkc_stages_match_torchdiffeq(dtype, step, growth):
    depth0, cv, ch, source, mask = problem(batch=1, h=4, w=4, dtype=dtype)
    (eager, eager_info), (fast, fast_info) = run_both(
        lambda: solve_ode(depth0, cv, ch, source, mask, 24.0, method="rkc", step_size=step,
                          step_growth=growth))
    assert fast_info.nfe_forward == eager_info.nfe_forward > 6
    rtol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fast, eager, rtol=rtol, atol=0)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("projection", ["multiplicative", "additive"])
def test_euler_without_gradient_matches_torchdiffeq(dtype, projection):
    """The no-gradient Euler solve (ODE training's lead-in, Euler models' inference) in
    fused passes: the same steps and arithmetic as torchdiffeq's euler."""
    depth0, cv, ch, source, mask = problem(batch=2, h=4, w=3, dtype=dtype)
    with torch.no_grad():
        (eager, eager_info), (fast, fast_info) = run_both(
            lambda: solve_ode(depth0, cv, ch, source, mask, 30.0, projection=projection))
    assert fast_info.nfe_forward == eager_info.nfe_forward == 125
    rtol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fast, eager, rtol=rtol, atol=0)


@needs_numba
@pytest.mark.parametrize(("grad_mode", "method"),
                         [("direct", "rk4"), ("checkpointed", "euler"), ("adjoint", "rkc")])
def test_solve_gradients_match_eager(grad_mode, method):
    depth0, cv, ch, source, mask = problem(batch=1, h=3, w=3, dtype=F64)

    def gradients():
        inputs = [t.clone().requires_grad_(True) for t in (depth0, cv, ch)]
        out, info = solve_ode(inputs[0], inputs[1], inputs[2], source, mask, 12.0,
                              method=method, step_size=2.0 if method == "rkc" else 0.24,
                              grad_mode=grad_mode)
        (out**2).sum().backward()
        return [t.grad for t in inputs], info

    (eager, eager_info), (fast, fast_info) = run_both(gradients)
    assert fast_info.nfe_backward == eager_info.nfe_backward
    assert fast_info.nfe_backward > 0 or grad_mode == "direct"
    for name, g, e in zip(("depth0", "cv", "ch"), fast, eager, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-13, msg=name)


@needs_numba
def test_shapes_the_kernels_do_not_take_stay_eager(always):
    depth0, cv, ch, _, mask = problem(batch=2)
    func = ProjectedDiffusion(cv[:1], ch[:1], mask, 4, "multiplicative", None)  # broadcast
    with fused.using("never"):
        expected = func(torch.tensor(0.0), depth0)
    torch.testing.assert_close(func(torch.tensor(0.0), depth0), expected)
    with pytest.raises(ValueError, match="fused kernels"):
        fused.projected_field(depth0, cv[:1], ch[:1], mask, 4)


def test_never_mode_and_missing_numba_fall_back_to_eager(monkeypatch):
    depth0, cv, ch, source, mask = problem()

    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran")

    monkeypatch.setattr(fused, "discrete_iterate", refuse)
    monkeypatch.setattr(fused, "rkc_solve", refuse)
    monkeypatch.setattr(fused, "euler_solve", refuse)
    monkeypatch.setattr(fused, "_field", refuse)
    with fused.using("never"):
        discrete_dada(depth0, cv, ch, source, mask, 5)
        solve_ode(depth0, cv, ch, source, mask, 8.0, method="rkc", step_size=4.0)
        with torch.no_grad():
            solve_ode(depth0, cv, ch, source, mask, 2.4)
    monkeypatch.setattr(fused, "njit", None)  # as when numba does not import
    assert not fused.available()
    with fused.using("always"):
        assert not fused.supports(depth0, cv, ch)
        discrete_dada(depth0, cv, ch, source, mask, 5)
        solve_ode(depth0, cv, ch, source, mask, 8.0, method="rkc", step_size=4.0)


@needs_numba
def test_auto_mode_skips_small_work_and_takes_large(monkeypatch):
    depth0, cv, ch, source, mask = problem()
    calls: list[int] = []
    original = fused.discrete_iterate

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fused, "discrete_iterate", spy)
    with fused.using("auto"):
        discrete_dada(depth0, cv, ch, source, mask, 5)
        assert calls == []
        monkeypatch.setattr(fused, "AUTO_MIN_WORK", depth0.numel() * 5)
        discrete_dada(depth0, cv, ch, source, mask, 5)
        assert calls == [1]
    assert not fused.supports(depth0.to(F64), cv, ch)  # mixed dtypes stay eager


def test_switch_reads_the_environment_and_rejects_nonsense():
    code = ("import node_dada.diffusion.fused as f; "
            "print(f.mode(), f.available())")
    env = dict(os.environ, NODE_DADA_FUSED="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split()[0] == "never"
    with pytest.raises(ValueError, match="NODE_DADA_FUSED"):
        fused.set_mode("sometimes")
    with pytest.raises(InputValueError, match="NODE_DADA_FUSED"):
        fused.set_mode("sometimes")
    with pytest.deprecated_call():
        previous = fused.set_enabled(False)
    try:
        assert fused.mode() == "never"
        with pytest.deprecated_call():
            fused.set_enabled(True)
        assert fused.mode() == "auto"
    finally:
        fused.set_mode(previous)


@needs_numba
def test_starting_the_kernels_keeps_torchs_thread_count():
    # numba's OpenMP pool shares torch's runtime; starting it must not undo set_num_threads
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from node_dada.diffusion import discrete_dada, fused\n"
        "d = torch.rand(1, 1, 8, 8) + 1; s = torch.rand(1, 1, 2, 2) + 1\n"
        "with fused.using('always'):\n"
        "    discrete_dada(d, torch.ones(1, 1, 7, 8), torch.ones(1, 1, 8, 7), s,\n"
        "                  torch.ones_like(s, dtype=torch.bool), 3)\n"
        "print(torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["1"]


def test_import_without_numba_falls_back_cleanly():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from node_dada.diffusion import discrete_dada, fused\n"
        "assert not fused.available()\n"
        "fused.set_mode('always')\n"
        "d = torch.rand(1, 1, 8, 8) + 1; s = torch.rand(1, 1, 2, 2) + 1\n"
        "out = discrete_dada(d, torch.ones(1, 1, 7, 8), torch.ones(1, 1, 8, 7), s,\n"
        "                    torch.ones_like(s, dtype=torch.bool), 10)\n"
        "print(float(torch.nn.functional.avg_pool2d(out, 4).sub(s).abs().max()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert float(done.stdout) < 1e-5
