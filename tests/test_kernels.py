"""Every backend against the reference recurrence and torch.nn: float64 to ~1e-10 (outputs, final
states, every gradient), float32 by relative error, half precision by stated bounds; backend choice."""

from __future__ import annotations

import pytest
import torch
from kernel_parity import LAYERS, compare_with_torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit import kernels
from rnnkit.kernels.triton.common import triton, why_triton_cannot_run
from rnnkit.kernels.triton.paths import PATHS

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_REASON = why_triton_cannot_run(DEVICE)
needs_triton = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
# "triton" picks its path by the table; the tests force each path so all are always covered. The
# graphed path runs the stepwise kernels; without a GPU its recording is a CPU stand-in, so there the
# interpreter runs it on the packed multi-layer cases only (tests/test_step_graphs.py compares it with
# the stepwise path bit for bit); on CUDA, where it records real graphs, every test runs it.
BROAD = PATHS if DEVICE.type == "cuda" else tuple(path for path in PATHS if path != "graphed")
BACKENDS = ["native", *(pytest.param(f"triton-{path}", marks=needs_triton) for path in BROAD)]
ALL_BACKENDS = ["native", *(pytest.param(f"triton-{path}", marks=needs_triton) for path in PATHS)]

# (steps, batch, input, hidden): odd sizes, T = 1, batch 1, hidden sizes that are not powers of two.
# The Triton interpreter is slow on the CPU, so its shapes stay small there.
SHAPES = [(1, 1, 1, 1), (1, 3, 4, 5), (7, 1, 3, 6), (6, 5, 2, 7), (4, 3, 9, 17), (12, 2, 3, 33)]
LONG = (60, 3, 4, 9)


def check(kind, backend, shape, dtype, bound, relative=False, **kw):
    result = compare_with_torch(kind, backend, *shape, dtype=dtype, device=DEVICE, **kw)
    name, err = result.worst(relative=relative)
    assert err <= bound, f"{name}: {'relative' if relative else 'max abs'} error {err:.2e} > {bound:.0e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("shape", [*SHAPES, LONG], ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_float64_parity_with_torch(kind, backend, shape):
    steps, batch, input_size, hidden = shape
    if backend.startswith("triton") and DEVICE.type == "cpu" and steps * hidden > 300:
        pytest.skip("too slow for the Triton CPU interpreter; runs on CUDA")
    check(kind, backend, shape, torch.float64, 1e-10)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_float64_packed_variable_lengths_multilayer(kind, backend, bidirectional):
    lengths = torch.tensor([6, 1, 4, 6])
    check(
        kind,
        backend,
        (6, 4, 3, 5),
        torch.float64,
        1e-10,
        lengths=lengths,
        num_layers=2,
        bidirectional=bidirectional,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_float32_relative_error_against_float64(kind, backend):
    steps, batch, hidden = (30, 8, 24) if backend == "native" or DEVICE.type == "cuda" else (6, 3, 10)
    check(kind, backend, (steps, batch, 7, hidden), torch.float32, 1e-5, relative=True)


HALF = [torch.bfloat16] + ([torch.float16] if DEVICE.type == "cuda" else [])


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_half_precision_within_stated_bounds(kind, backend, dtype):
    # bf16 keeps 8 bits of mantissa (~4e-3 relative per rounding), fp16 11: stated bounds 6e-2 and 1e-2
    check(kind, backend, (5, 4, 6, 16), dtype, 6e-2 if dtype == torch.bfloat16 else 1e-2, relative=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_gradcheck_fused(kind, backend):
    ours = LAYERS[kind][0](2, 3, backend=backend).to(DEVICE, torch.float64)
    x = torch.randn(3, 2, 2, device=DEVICE, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in ours.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]

    def fn(x, *ps):
        out, _ = torch.func.functional_call(ours, dict(zip(names, ps, strict=True)), (x,))
        return out

    # Through the Triton CPU interpreter a full gradcheck (~200 kernel runs) took 45-100 s per case:
    # there it checks random directional derivatives (fast_mode); every gradient is also compared
    # with torch.nn's in float64 above. Full gradcheck on CUDA and for the other backends.
    fast = backend.startswith("triton") and DEVICE.type == "cpu"
    assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=fast)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("lengths", [None, [12, 2, 5]], ids=["full", "packed"])
def test_cpu_inference_path_matches_reference(kind, lengths, dtype):
    """Without gradients the CPU path runs a lighter op (nothing saved; oneDNN-packed products in
    float32 from 8 steps on): same numbers as the reference loop."""
    fused = LAYERS[kind][0](3, 6, num_layers=2, bidirectional=True, backend="native").to(dtype)
    reference = LAYERS[kind][0](3, 6, num_layers=2, bidirectional=True, backend="reference").to(dtype)
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(12, 3, 3, dtype=dtype)
    if lengths is not None:
        x = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    with torch.no_grad():
        out_a, h_a = fused(x)
        out_b, h_b = reference(x)
    if lengths is not None:
        out_a, out_b = out_a.data, out_b.data
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out_a, out_b, rtol=tol, atol=tol)
    for a, b in zip(
        h_a if isinstance(h_a, tuple) else (h_a,), h_b if isinstance(h_b, tuple) else (h_b,), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_fused_backends_run_under_autocast(kind, backend):
    """Mixed precision: the projection comes out in bf16 while weights and states are float32."""
    device_type = DEVICE.type
    fused = LAYERS[kind][0](4, 16, backend=backend).to(DEVICE)
    reference = LAYERS[kind][0](4, 16, backend="reference").to(DEVICE)
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(6, 3, 4, device=DEVICE, requires_grad=True)
    with torch.autocast(device_type, dtype=torch.bfloat16):
        out, _ = fused(x)
        expected, _ = reference(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=3e-2)
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fused.parameters())


# ---------------------------------------------------------------------------------------- choice
def test_auto_picks_the_fused_cpu_path_on_cpu_and_reference_for_other_cells():
    lstm = rnn.LSTM(3, 4)
    cpu = torch.device("cpu")
    assert kernels.select("auto", lstm.layer_cells()[0], cpu) is kernels.KERNELS["native"]
    assert kernels.select("auto", rnn.RNNCell(3, 4), cpu) is None
    assert kernels.select("reference", lstm.layer_cells()[0], cpu) is None


@pytest.mark.skipif(triton is None, reason="triton is not installed")
def test_triton_on_cpu_without_the_interpreter_says_why_and_what_can(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    layer = rnn.GRU(3, 4, backend="triton")
    with pytest.raises(
        RuntimeError,
        match=r"backend='triton' cannot run here: Triton kernels run on CUDA tensors.*"
        r"Backends that can: \['reference', 'compiled', 'native'\]",
    ):
        layer(torch.randn(5, 2, 3))


def test_bad_backend_names_and_cells_without_kernels():
    with pytest.raises(
        ValueError,
        match=r"backend must be one of \['auto', 'reference', 'native', 'compiled', 'triton', "
        r"'triton-persistent', 'triton-graphed', 'triton-stepwise'\], got 'cuda'",
    ):
        rnn.LSTM(3, 4, backend="cuda")
    with pytest.raises(
        ValueError,
        match=r"backend='native' has no kernel for RNNCell; backends that can run it: "
        r"\['reference', 'compiled'\]",
    ):
        rnn.RNN(3, 4, backend="native")(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="no kernel for JordanCell"):
        rnn.Recurrent("jordan", 3, 4, output_size=2, backend="native")(torch.randn(5, 2, 3))


def test_proj_size_takes_the_documented_reference_fallback():
    with pytest.warns(
        UserWarning, match="proj_size > 0 has no fused kernel: backend='native' falls back to 'reference'"
    ):
        check("lstm", "native", (4, 2, 3, 6), torch.float64, 1e-10, proj_size=2)


@pytest.mark.parametrize("regularizer", [{}, {"recurrent_dropout": 0.3}, {"zoneout": 0.2}])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_cpu_path_is_one_graph_under_torch_compile(kind, regularizer):
    torch._dynamo.reset()
    if regularizer:  # training mode: the masks are drawn inside the graph
        layer = rnn.Recurrent(kind, 4, 8, num_layers=2, backend="native", **regularizer)
    else:  # torch's layout: the layer binds its flat weights to its cells
        layer = LAYERS[kind][0](4, 8, num_layers=2, backend="native")
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)  # fullgraph: any break raises
    x = torch.randn(20, 3, 4, requires_grad=True)
    torch.manual_seed(7)
    out, _ = compiled(x)
    torch.manual_seed(7)  # the same masks in eager mode
    expected, _ = layer(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    explanation = torch._dynamo.explain(layer)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
