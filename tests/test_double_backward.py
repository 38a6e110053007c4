"""Higher-order gradients on every backend: gradgradcheck, and gradient penalties equal to torch's.

The fused backends' first-order backward is hand-written; under ``create_graph=True`` they
recompute it with the reference cell (:mod:`rnnkit.kernels.reference.double_backward`), so a gradient of a
gradient is available everywhere (torch's cuDNN path refuses double backward, pytorch/pytorch#5261).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit.kernels.triton.common import why_triton_cannot_run
from rnnkit.kernels.triton.paths import PATHS

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_REASON = why_triton_cannot_run(DEVICE)
needs_triton = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
# the Triton interpreter makes gradgradcheck's many runs slow (~20 s each): slow-marked on the CPU
SLOW_ON_CPU = [pytest.mark.slow] if DEVICE.type == "cpu" else []
# the graphed path runs the stepwise kernels (a CPU stand-in records them without a GPU) and its
# higher-order gradients are the reference cell's, as stepwise's: tested here on CUDA only
PATHS_HERE = PATHS if DEVICE.type == "cuda" else tuple(path for path in PATHS if path != "graphed")
BACKENDS = [
    "reference",
    "native",
    "auto",
    *(pytest.param(f"triton-{path}", marks=[needs_triton, *SLOW_ON_CPU]) for path in PATHS_HERE),
]
D = torch.float64


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradgradcheck_every_backend(kind, backend, bidirectional):
    # the Triton CPU interpreter took 35-150 s a case for the full second-order Jacobian: there
    # gradgradcheck checks random directional second derivatives (fast_mode), ~4 s a case
    interpreted = backend.startswith("triton") and DEVICE.type == "cpu"
    layer = getattr(rnn, kind)(2, 3, bidirectional=bidirectional, dtype=D, device=DEVICE, backend=backend)
    x = torch.randn(3, 2, 2, dtype=D, device=DEVICE, requires_grad=True)
    lengths = torch.tensor([3, 2])
    weights = [layer.weight_hh_l0, layer.bias_hh_l0]

    def fn(x, w_hh, b_hh):
        out, _ = torch.func.functional_call(
            layer, {"weight_hh_l0": w_hh, "bias_hh_l0": b_hh}, (x,), {"lengths": lengths}
        )
        return out

    inputs = (x, *[w.detach().requires_grad_() for w in weights])
    assert torch.autograd.gradgradcheck(fn, inputs, atol=1e-6, fast_mode=interpreted)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradient_penalty_equals_torchs(kind, backend):
    """A WGAN-GP style penalty, ``|d loss / d x|^2``, differentiated again with respect to the weights."""
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(3, 4, num_layers=2, dtype=D)
    ours = getattr(rnn, kind)(3, 4, num_layers=2, dtype=D, backend=backend)
    ours.load_state_dict(theirs.state_dict())
    ours.to(DEVICE)
    x = torch.randn(5, 2, 3, dtype=D)

    def penalty_grads(module, x):
        x = x.clone().requires_grad_()
        out, _ = module(x)
        (dx,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        penalty = dx.pow(2).sum()
        return torch.autograd.grad(penalty, list(module.parameters()))

    for a, b in zip(penalty_grads(theirs, x), penalty_grads(ours, x.to(DEVICE)), strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", ["native", pytest.param("triton-stepwise", marks=needs_triton)])
def test_first_order_backward_stays_fused(backend, monkeypatch):
    """Without create_graph the hand-written backward runs; the reference recompute is not called."""
    from rnnkit.kernels.reference import double_backward

    def refuse(*args, **kwargs):
        raise AssertionError("the first-order backward must not recompute with the reference cell")

    monkeypatch.setattr(double_backward, "_vjp", refuse)
    layer = rnn.LSTM(2, 3, backend=backend, device=DEVICE)
    out, _ = layer(torch.randn(4, 2, 2, device=DEVICE, requires_grad=True))
    out.sum().backward()
