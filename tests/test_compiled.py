"""The torch.compile path (GPU by default): same results as the eager ops to float32
round-off, gradients through it, and a clean fallback when compiling fails.

On CPU the path is forced with ``set_mode("always")`` (Inductor's C++ backend); the
CUDA test runs wherever a GPU is present."""

from __future__ import annotations

import pytest
import torch

from node_dada.diffusion import (
    block_mean,
    compiled,
    discrete_dada,
    edge_coefficients,
    fused,
    solve_ode,
)


def problem(device="cpu", size=16, scale=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    depth0 = torch.rand(1, 1, size, size, generator=gen) + 0.5
    cv, ch = edge_coefficients(torch.rand(1, 3, size, size, generator=gen), 0.3)
    source = block_mean(depth0, scale) * 1.05
    mask = torch.ones_like(source, dtype=torch.bool)
    mask[0, 0, 1, 2] = False
    return [t.to(device) for t in (depth0, cv, ch, source, mask)]


@pytest.fixture
def mode():
    """Set the compile mode for a test; the fused CPU kernels stay out of the way."""
    previous = compiled.mode()
    state = dict(compiled._state)
    with fused.using("never"):
        yield compiled.set_mode
    compiled.set_mode(previous)
    compiled._state.update(failed=state["failed"])


def _discrete_and_gradient(depth0, cv, ch, source, mask):
    cv = cv.clone().requires_grad_(True)
    out = discrete_dada(depth0, cv, ch, source, mask, 12)
    (grad,) = torch.autograd.grad(out.square().mean(), cv)
    return out.detach(), grad


def _ode(depth0, cv, ch, source, mask):
    return solve_ode(depth0, cv, ch, source, mask, 2.4, method="euler", step_size=0.24)[0]


def test_compiled_iteration_field_and_gradient_match_the_eager_ops_on_cpu(mode):
    inputs = problem()
    mode("never")
    eager, eager_grad = _discrete_and_gradient(*inputs)
    eager_ode = _ode(*inputs)
    mode("always")
    assert compiled.supports(inputs[0])
    fast, fast_grad = _discrete_and_gradient(*inputs)
    fast_ode = _ode(*inputs)
    assert not compiled._state["failed"]
    assert compiled._state["compiled"]  # the compiled functions were really used
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_grad, eager_grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(fast_ode, eager_ode, rtol=1e-5, atol=1e-6)


def test_auto_mode_compiles_for_cuda_tensors_only(mode):
    mode("auto")
    assert not compiled.supports(torch.zeros(2))
    mode("never")
    assert not compiled.supports(torch.zeros(2))
    with pytest.raises(ValueError, match="expected one of"):
        compiled.set_mode("sometimes")


def test_a_failing_compile_warns_once_and_runs_the_eager_ops(mode, monkeypatch):
    def broken(function, **options):
        def run(*args):
            raise RuntimeError("no backend here")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "_state", {"mode": "always", "compiled": {}, "failed": False})
    inputs = problem()
    with pytest.warns(RuntimeWarning, match="no backend here.*eager ops run instead"):
        out = discrete_dada(*inputs, 3)
    assert not compiled.supports(inputs[0])  # for good: no second attempt
    compiled._state["mode"] = "never"
    torch.testing.assert_close(out, discrete_dada(*inputs, 3), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_matches_the_cpu_eager_result(mode):
    mode("never")
    reference, reference_grad = _discrete_and_gradient(*problem())
    reference_ode = _ode(*problem())
    mode("auto")
    out, grad = _discrete_and_gradient(*problem("cuda"))
    out_ode = _ode(*problem("cuda"))
    assert not compiled._state["failed"]
    torch.testing.assert_close(out.cpu(), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.cpu(), reference_grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(out_ode.cpu(), reference_ode, rtol=1e-5, atol=1e-6)
