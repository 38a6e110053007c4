"""Every backend against the reference recurrence and torch.nn: float64 to ~1e-10 (outputs, final
states, every gradient), float32 by relative error, half precision by stated bounds; backend choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit import kernels
from rnnkit.kernels.triton_common import triton, why_triton_cannot_run

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_REASON = why_triton_cannot_run(DEVICE)
needs_triton = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
LAYERS = {"lstm": (rnn.LSTM, nn.LSTM), "gru": (rnn.GRU, nn.GRU)}
BACKENDS = ["cpu", pytest.param("triton", marks=needs_triton)]

# (steps, batch, input, hidden): odd sizes, T = 1, batch 1, hidden sizes that are not powers of two.
# The Triton interpreter is slow on the CPU, so its shapes stay small there.
SHAPES = [(1, 1, 1, 1), (1, 3, 4, 5), (7, 1, 3, 6), (6, 5, 2, 7), (4, 3, 9, 17), (12, 2, 3, 33)]
LONG = (60, 3, 4, 9)


def build(kind, backend, dtype, *, input_size, hidden_size, **kw):
    ours_cls, torch_cls = LAYERS[kind]
    reference = torch_cls(input_size, hidden_size, **kw).to(DEVICE, dtype)
    ours = ours_cls(input_size, hidden_size, backend=backend, **kw).to(DEVICE, dtype)
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def run_both(ours, reference, steps, batch, dtype, lengths=None, h0=True):
    """Outputs and gradients of ours (in ``dtype``) and of torch.nn in float64 on the same inputs."""
    lead = ours.num_layers * ours.num_directions
    x = torch.randn(steps, batch, ours.input_size, device=DEVICE, dtype=torch.float64)
    sizes = ours.layer_cells()[0].state_sizes()
    state = [torch.randn(lead, batch, s, device=DEVICE, dtype=torch.float64) for s in sizes] if h0 else []
    results = []
    for module, dt in ((ours, dtype), (reference.double(), torch.float64)):
        xi = x.to(dt).requires_grad_()
        si = [s.to(dt).requires_grad_() for s in state]
        hx = None if not si else (si[0] if len(si) == 1 else tuple(si))
        inp = xi
        if lengths is not None:
            inp = nn.utils.rnn.pack_padded_sequence(xi, lengths, enforce_sorted=False)
        out, hn = module(inp, hx)
        out = out.data if lengths is not None else out
        leaves = [out, *(hn if isinstance(hn, tuple) else (hn,))]
        torch.manual_seed(0)
        loss = sum(
            (t.double() * torch.randn(t.shape, device=DEVICE, dtype=torch.float64)).sum() for t in leaves
        )
        grads = torch.autograd.grad(loss, [xi, *si, *module.parameters()])
        results.append(([t.double() for t in leaves], [g.double() for g in grads]))
    reference.to(dtype)
    return results


def relative(a, b):
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("shape", [*SHAPES, LONG], ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_float64_parity_with_torch(kind, backend, shape):
    steps, batch, input_size, hidden = shape
    if backend == "triton" and DEVICE.type == "cpu" and steps * hidden > 300:
        pytest.skip("too slow for the Triton CPU interpreter; runs on CUDA")
    ours, reference = build(kind, backend, torch.float64, input_size=input_size, hidden_size=hidden)
    (out_a, grad_a), (out_b, grad_b) = run_both(ours, reference, steps, batch, torch.float64)
    for k, (a, b) in enumerate(zip(out_a + grad_a, out_b + grad_b, strict=True)):
        assert (a - b).abs().max().item() <= 1e-10, f"tensor {k}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_float64_packed_variable_lengths_multilayer(kind, backend, bidirectional):
    ours, reference = build(
        kind, backend, torch.float64, input_size=3, hidden_size=5, num_layers=2, bidirectional=bidirectional
    )
    lengths = torch.tensor([6, 1, 4, 6])
    (out_a, grad_a), (out_b, grad_b) = run_both(ours, reference, 6, 4, torch.float64, lengths=lengths)
    for k, (a, b) in enumerate(zip(out_a + grad_a, out_b + grad_b, strict=True)):
        assert (a - b).abs().max().item() <= 1e-10, f"tensor {k}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_float32_relative_error_against_float64(kind, backend):
    steps, batch, hidden = (30, 8, 24) if backend == "cpu" or DEVICE.type == "cuda" else (6, 3, 10)
    ours, reference = build(kind, backend, torch.float32, input_size=7, hidden_size=hidden)
    (out_a, grad_a), (out_b, grad_b) = run_both(ours, reference, steps, batch, torch.float32)
    for k, (a, b) in enumerate(zip(out_a + grad_a, out_b + grad_b, strict=True)):
        assert relative(a, b) <= 1e-5, f"tensor {k}: relative error {relative(a, b):.2e}"


HALF = [torch.bfloat16] + ([torch.float16] if DEVICE.type == "cuda" else [])


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_half_precision_within_stated_bounds(kind, backend, dtype):
    # bf16 keeps 8 bits of mantissa (~4e-3 relative per rounding): outputs within 3e-2, gradients 6e-2
    ours, reference = build(kind, backend, dtype, input_size=6, hidden_size=16)
    (out_a, grad_a), (out_b, grad_b) = run_both(ours, reference, 5, 4, dtype)
    for k, (a, b) in enumerate(zip(out_a, out_b, strict=True)):
        assert relative(a, b) <= 3e-2, f"output {k}: {relative(a, b):.2e}"
    for k, (a, b) in enumerate(zip(grad_a, grad_b, strict=True)):
        assert relative(a, b) <= 6e-2, f"gradient {k}: {relative(a, b):.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_gradcheck_fused(kind, backend):
    ours, _ = build(kind, backend, torch.float64, input_size=2, hidden_size=3)
    x = torch.randn(3, 2, 2, device=DEVICE, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in ours.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]

    def fn(x, *ps):
        out, _ = torch.func.functional_call(ours, dict(zip(names, ps, strict=True)), (x,))
        return out

    assert torch.autograd.gradcheck(fn, (x, *params))


# ---------------------------------------------------------------------------------------- choice
def test_auto_picks_the_fused_cpu_path_on_cpu_and_reference_for_other_cells():
    lstm = rnn.LSTM(3, 4)
    cpu = torch.device("cpu")
    assert kernels.select("auto", lstm.layer_cells()[0], cpu) is kernels.KERNELS["cpu"][rnn.LSTMCell]
    assert kernels.select("auto", rnn.RNNCell(3, 4), cpu) is None
    assert kernels.select("reference", lstm.layer_cells()[0], cpu) is None


@pytest.mark.skipif(triton is None, reason="triton is not installed")
def test_triton_on_cpu_without_the_interpreter_says_why_and_what_can(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    layer = rnn.GRU(3, 4, backend="triton")
    with pytest.raises(
        RuntimeError,
        match=r"backend='triton' cannot run here: Triton kernels run on CUDA tensors.*"
        r"Backends that can: \['reference', 'cpu'\]",
    ):
        layer(torch.randn(5, 2, 3))


def test_bad_backend_names_and_cells_without_kernels():
    with pytest.raises(
        ValueError, match=r"backend must be one of \['auto', 'reference', 'cpu', 'triton'\], got 'cuda'"
    ):
        rnn.LSTM(3, 4, backend="cuda")
    with pytest.raises(
        ValueError,
        match=r"backend='cpu' has no kernel for RNNCell; backends that can run it: "
        r"\['reference'\]",
    ):
        rnn.RNN(3, 4, backend="cpu")(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="no kernel for JordanCell"):
        rnn.Recurrent("jordan", 3, 4, output_size=2, backend="cpu")(torch.randn(5, 2, 3))


def test_proj_size_takes_the_documented_reference_fallback():
    ours, reference = build("lstm", "cpu", torch.float64, input_size=3, hidden_size=6, proj_size=2)
    with pytest.warns(
        UserWarning, match="proj_size > 0 has no fused kernel: backend='cpu' falls back to 'reference'"
    ):
        (out_a, grad_a), (out_b, grad_b) = run_both(ours, reference, 4, 2, torch.float64)
    for a, b in zip(out_a + grad_a, out_b + grad_b, strict=True):
        assert (a - b).abs().max().item() <= 1e-10


@pytest.mark.parametrize("kind", list(LAYERS))
def test_cpu_path_is_one_graph_under_torch_compile(kind):
    torch._dynamo.reset()
    layer = LAYERS[kind][0](4, 8, num_layers=2, backend="cpu")
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)  # fullgraph: any break raises
    x = torch.randn(20, 3, 4, requires_grad=True)
    out, _ = compiled(x)
    expected, _ = layer(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    explanation = torch._dynamo.explain(layer)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
