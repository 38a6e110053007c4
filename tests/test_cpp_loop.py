"""The native backend's C++ time loop and its Python fallback: both give torch.nn's numbers
(float64: outputs, states, every gradient; variable lengths; recurrent dropout), the fallback runs
with one warning that says why when the loop cannot be built, and the switch turns it off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit.nn as rnn
from rnnkit.kernels.native import cpp_loop as compiled_loop
from rnnkit.kernels.native import gru as cpu_gru
from rnnkit.kernels.native import lstm as cpu_lstm

LAYERS = {"lstm": (rnn.LSTM, torch.nn.LSTM), "gru": (rnn.GRU, torch.nn.GRU)}
HAVE_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(params=["compiled", "python"])
def loop(request, monkeypatch):
    """Run a test once through the compiled loop and once through the Python fallback."""
    if request.param == "compiled":
        if not HAVE_COMPILER:
            pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
        monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
        assert compiled_loop.ops() is not None, "the compiled loop failed to build (see the warning)"
    else:
        monkeypatch.setenv("RNNKIT_CPP_LOOP", "0")
        assert compiled_loop.ops() is None
    return request.param


def pair(kind: str, **kwargs):
    ours_cls, torch_cls = LAYERS[kind]
    theirs = torch_cls(5, 7, **kwargs).double()
    ours = ours_cls(5, 7, backend="native", **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("shape", [(1, 1), (9, 4), (23, 3)], ids=lambda s: f"T{s[0]}B{s[1]}")
def test_float64_parity_with_torch_through_each_loop(loop, kind, shape):
    steps, batch = shape
    torch.manual_seed(steps * 10 + batch)
    ours, theirs = pair(kind, num_layers=2, bidirectional=True)
    x = torch.randn(steps, batch, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, batch, 7, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    outs = []
    for layer in (ours, theirs):
        xi = x.detach().clone().requires_grad_()
        out, final = layer(xi, state)
        finals = final if isinstance(final, tuple) else (final,)
        (out.square().sum() + sum(f.sin().sum() for f in finals)).backward()
        outs.append((out, finals, xi.grad, grads(layer)))
    (o1, f1, g1, w1), (o2, f2, g2, w2) = outs
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-12)
    for a, b in zip(f1, f2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)
    for a, b in zip(w1, w2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_variable_lengths_through_each_loop(loop, kind):
    torch.manual_seed(3)
    ours, theirs = pair(kind)
    x = torch.randn(11, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([11, 2, 7, 5])
    results = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=False)
        out, final = layer(packed)
        padded, _ = pad_packed_sequence(out)
        finals = final if isinstance(final, tuple) else (final,)
        (padded.square().sum() + sum(f.sum() for f in finals)).backward()
        results.append((padded, finals, xi.grad, grads(layer)))
    (o1, f1, g1, w1), (o2, f2, g2, w2) = results
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)
    for a, b in zip([*f1, *w1], [*f2, *w2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("route", ["small", "blas"])
def test_inference_and_recurrent_dropout_agree_between_the_loops(kind, route, monkeypatch):
    """The compiled loop against the Python loop on the same draws: inference (nothing saved) and
    training with a recurrent-dropout mask, lengths included; through the small route (its rows in
    blocks, one per thread, for the whole sequence) and through BLAS (one product per step)."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", route)
    torch.manual_seed(5)
    hidden, steps, batch = 6, 8, 9
    gates = 4 if kind == "lstm" else 3
    xp = torch.randn(steps, batch, gates * hidden, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True)
    w = torch.randn(gates * hidden, hidden, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([8, 3, 6, 8, 1, 7, 2, 8, 5])
    drop = (torch.rand(batch, hidden, dtype=torch.float64) > 0.3).double() / 0.7
    if kind == "lstm":
        c0 = torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True)
        inputs = (xp, h0, c0, w)

        def run(d):
            out, (h, c) = cpu_lstm.lstm_forward(xp, (h0, c0), w, lengths, d)
            return out, h, c
    else:
        b = torch.randn(gates * hidden, dtype=torch.float64, requires_grad=True)
        inputs = (xp, h0, w, b)

        def run(d):
            return cpu_gru.gru_forward(xp, h0, w, b, lengths, d)

    results = {}
    for name, flag in (("compiled", "1"), ("python", "0")):
        monkeypatch.setenv("RNNKIT_CPP_LOOP", flag)
        with torch.no_grad():
            inference = run(None)
        trained = run(drop)
        loss = sum((t * torch.linspace(0.5, 1.5, t.shape[-1], dtype=torch.float64)).sum() for t in trained)
        results[name] = (inference, trained, torch.autograd.grad(loss, inputs))
    for a, b in zip(*(torch.utils._pytree.tree_leaves(r) for r in results.values()), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_failed_build_warns_once_and_the_python_loop_runs(monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'rnnkit_cpp'\nc++: command not found")

    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(compiled_loop, "_state", {})
    with pytest.warns(
        RuntimeWarning, match=r"could not be built .*c\+\+: command not found.*Python loop runs"
    ):
        layer = rnn.LSTM(3, 4, backend="native")
        out, _ = layer(torch.randn(5, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: no second warning
        layer(torch.randn(5, 2, 3))[0].sum().backward()
    assert out.shape == (5, 2, 4)


ROUTES = ("small", "blas", "onednn", "mkl")  # csrc/step_product.h


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("route", ROUTES)
def test_each_route_of_the_step_product_matches_torch(kind, dtype, route, monkeypatch):
    """csrc/step_product.h multiplies by W_hh through the route RNNKIT_STEP_PRODUCT forces (float64
    has no packed routes: they fall back to blas): each gives torch.nn's outputs and gradients
    (float64 to 1e-10, float32 to 1e-5), with variable lengths."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", route)
    ops = compiled_loop.usable(torch.zeros(1, dtype=dtype))
    assert ops is not None
    batch, hidden = 5, 24
    torch.manual_seed(ROUTES.index(route))
    ours_cls, torch_cls = LAYERS[kind]
    theirs = torch_cls(6, hidden).to(dtype)
    ours = ours_cls(6, hidden, backend="native").to(dtype)
    ours.load_state_dict(theirs.state_dict())
    taken = ops.step_product_route(ours.weight_hh_l0, batch, 7)
    packed = route in ("onednn", "mkl")
    can_pack = dtype == torch.float32 and (
        torch.backends.mkldnn.is_available() if route == "onednn" else torch.backends.mkl.is_available()
    )
    assert taken == (route if not packed or can_pack else "blas")
    x = torch.randn(7, batch, 6, dtype=dtype)
    lengths = torch.randint(1, 8, (batch,))
    lengths[0] = 7
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    results = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        packed_x = pack_padded_sequence(xi, lengths, enforce_sorted=False)
        out, _ = pad_packed_sequence(layer(packed_x)[0])
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        results.append([out, xi.grad, *grads(layer)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("route", ROUTES)
def test_inference_reuses_a_prepared_weight_only_while_its_values_are_unchanged(kind, route, monkeypatch):
    """Without gradients the loops keep what a route prepared from W_hh for the next call
    (csrc/step_product.h, PreparedCache): every way of changing the weight between calls, in place
    through .data (no version bump), under no_grad, or a new tensor, still gives torch.nn's numbers
    for the new weight, and calls with fixed weights keep giving the same ones."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", route)
    torch.manual_seed(ROUTES.index(route))
    ours_cls, torch_cls = LAYERS[kind]
    theirs = torch_cls(6, 32, 2).eval()
    ours = ours_cls(6, 32, 2, backend="native").eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 4, 6)

    def check() -> None:
        with torch.no_grad():
            for _ in range(2):  # the second call may take the kept weight
                torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)

    check()
    ours.weight_hh_l0.data.mul_(-0.5)  # in place, no version bump
    theirs.weight_hh_l0.data.mul_(-0.5)
    check()
    with torch.no_grad():
        ours.weight_hh_l1.copy_(torch.randn_like(ours.weight_hh_l1))
        theirs.weight_hh_l1.copy_(ours.weight_hh_l1)
    check()
    ours.load_state_dict({k: v * 0.9 for k, v in theirs.state_dict().items()})  # new values copied in
    theirs.load_state_dict(ours.state_dict())
    check()


def test_the_lstm_loop_names_a_bias_of_the_wrong_shape():
    """The C++ op checks the bias it adds in its loop before any work: (4H), here 4 * 3 = 12."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    ops = compiled_loop.ops()
    xp, h0 = torch.zeros(2, 1, 12), torch.zeros(1, 3)
    none, no_lengths = torch.empty(0), torch.empty(0, dtype=torch.long)
    with pytest.raises(RuntimeError, match=r"lstm_forward: bias must be \(4H\) = \(12\), got \[3\]"):
        ops.lstm_forward(xp, h0, h0, torch.zeros(12, 3), torch.zeros(3), no_lengths, none, none, False)


def test_the_step_product_times_its_routes_and_takes_the_cheapest(monkeypatch):
    """Unforced, the route is the one with the least timed cost (setup + steps x product) at that
    shape, and a bad RNNKIT_STEP_PRODUCT is refused by name."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    monkeypatch.delenv("RNNKIT_STEP_PRODUCT", raising=False)
    ops = compiled_loop.usable(torch.zeros(1))
    weight = torch.randn(4 * 32, 32)
    costs = ops.step_product_costs(weight, 8)  # (2, routes): per product, per call; seconds
    assert costs.shape == (2, len(ROUTES))
    assert torch.isfinite(costs[:, ROUTES.index("blas")]).all() and (costs[:, 1] > 0).all()
    assert torch.isfinite(costs[0, ROUTES.index("small")])  # 8 x 128 x 32 is small enough to time
    for steps in (1, 1000):
        total = costs[1] + steps * costs[0]
        assert ops.step_product_route(weight, 8, steps) == ROUTES[int(total.argmin())]
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", "fastest")
    with pytest.raises(
        RuntimeError, match="RNNKIT_STEP_PRODUCT must be small, blas, onednn, mkl or auto, got 'fastest'"
    ):
        ops.step_product_route(weight, 8, 10)


def test_other_dtypes_take_the_python_loop():
    assert compiled_loop.usable(torch.zeros(1, dtype=torch.bfloat16)) is None
    assert compiled_loop.usable(torch.zeros(1, dtype=torch.float16)) is None
    if HAVE_COMPILER:
        assert compiled_loop.usable(torch.zeros(1)) is not None
        assert compiled_loop.usable(torch.zeros(1, dtype=torch.float64)) is not None


@pytest.mark.parametrize("kind", list(LAYERS))
def test_inference_with_lengths_leaves_the_initial_state_untouched(loop, kind):
    """Regression: the Python LSTM inference loop used h0's storage as a step buffer with lengths."""
    torch.manual_seed(8)
    layer = LAYERS[kind][0](3, 4, backend="native").double()
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    h0 = torch.randn(1, 3, 4, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    saved = [s.clone() for s in (state if isinstance(state, tuple) else (state,))]
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 2]))  # sorted: h0 reaches the loop unpermuted
    with torch.no_grad():
        layer(packed, state)
    for before, after in zip(saved, state if isinstance(state, tuple) else (state,), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_the_build_name_follows_sources_flags_and_checkout(tmp_path, monkeypatch):
    """A changed header, other instruction-set flags or another checkout get their own build, so
    none of them reuses a stale extension or rebuilds another's at every start."""
    flags = compiled_loop.simd_flags()
    name = compiled_loop.build_name(flags)
    assert name == compiled_loop.build_name(flags)  # stable
    assert name != compiled_loop.build_name([*flags, "-DOTHER"])
    copy = tmp_path / "csrc"
    shutil.copytree(compiled_loop.CSRC, copy)
    monkeypatch.setattr(compiled_loop, "CSRC", copy)
    moved = compiled_loop.build_name(flags)
    assert moved != name  # another checkout
    (copy / "vec_math.h").write_text((copy / "vec_math.h").read_text() + "\n// changed\n")
    assert compiled_loop.build_name(flags) != moved  # a header's change rebuilds


AVX2_CHILD = """
import torch
import rnnkit.nn as rnn
from rnnkit.kernels.native import cpp_loop

assert cpp_loop.simd_flags() == cpp_loop.SIMD_FLAGS["AVX2"], cpp_loop.simd_flags()
assert cpp_loop.ops() is not None
torch.manual_seed(0)
for ours_cls, torch_cls in ((rnn.LSTM, torch.nn.LSTM), (rnn.GRU, torch.nn.GRU)):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        theirs = torch_cls(6, 40, num_layers=2).to(dtype)
        ours = ours_cls(6, 40, num_layers=2, backend="native").to(dtype)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(9, 5, 6, dtype=dtype)
        results = []
        for layer in (ours, theirs):
            xi = x.clone().requires_grad_()
            out, _ = layer(xi)
            (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum().backward()
            results.append([out, xi.grad, *[p.grad for p in layer.parameters()]])
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
print("avx2 ok")
"""


@pytest.mark.slow
def test_the_avx2_build_matches_torch_on_an_avx512_machine():
    """On an AVX-512 machine the loop is built for AVX-512 (16 float lanes, its own exp); the AVX2
    build that other x86 machines get (RNNKIT_CPP_SIMD=avx2, built in a child process: two builds
    cannot share one process) still gives torch.nn's numbers."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    if compiled_loop.simd_flags() != compiled_loop.SIMD_FLAGS["AVX512"]:
        pytest.skip(
            f"this machine's loop is not built for AVX-512 (flags {compiled_loop.simd_flags()}): "
            "the default build is the AVX2 one the other tests check"
        )
    env = {**os.environ, "RNNKIT_CPP_SIMD": "avx2"}
    env.pop("RNNKIT_CPP_LOOP", None)
    done = subprocess.run(
        [sys.executable, "-c", AVX2_CHILD], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "avx2 ok" in done.stdout


@pytest.mark.parametrize("hidden", [16, 48])
@pytest.mark.parametrize("fused", ["1", "0"], ids=["fused_gates", "gemm_then_gates"])
def test_the_fused_lstm_gates_give_torchs_numbers(hidden, fused, monkeypatch):
    """On the small route a float32 LSTM step with H a multiple of 16 runs the product and the gate
    activations in one register-tiled AVX-512 pass (csrc/lstm_gates.h; RNNKIT_FUSED_GATES=0 runs
    small_gemm then the activations): both give torch.nn's outputs, states and gradients, with
    lengths, recurrent dropout and zoneout, in row blocks (batch 11: blocks and a remainder row)."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler on this machine: the compiled loop cannot be built here")
    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", "small")
    monkeypatch.setenv("RNNKIT_FUSED_GATES", fused)
    torch.manual_seed(hidden)
    theirs = torch.nn.LSTM(5, hidden, num_layers=2, bidirectional=True)
    ours = rnn.LSTM(5, hidden, num_layers=2, bidirectional=True, backend="native")
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(9, 11, 5)
    lengths = torch.tensor([9, 4, 1, 6, 9, 2, 7, 3, 5, 8, 9])
    results = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        out, _ = pad_packed_sequence(layer(pack_padded_sequence(xi, lengths, enforce_sorted=False))[0])
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out, xi.grad, *grads(layer)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # with the regularizers the loops draw: the fused pass against the unfused one, same draws
    reg = rnn.LSTM(5, hidden, backend="native", recurrent_dropout=0.3, zoneout=0.2).train()
    runs = []
    for flag in ("1", "0"):
        monkeypatch.setenv("RNNKIT_FUSED_GATES", flag)
        torch.manual_seed(1)
        xi = x.clone().requires_grad_()
        out, (h, c) = reg(xi)
        (out.sum() + h.sum() + c.sum()).backward()
        runs.append([out, h, c, xi.grad.clone()])
        xi.grad = None
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _layer_grads(layer: torch.nn.Module, x: torch.Tensor, state) -> list[torch.Tensor | None]:
    out, (h_n, c_n) = layer(x, state)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + h_n.sum() + (c_n**2).sum()
    inputs = [x, *state, *layer.parameters()]
    wanted = [t for t in inputs if t.requires_grad]
    return [out, h_n, c_n, *torch.autograd.grad(loss, wanted)]


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler: the eager LSTM node runs the C++ loop")
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["dx", "no_dx"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
def test_the_eager_lstm_node_gives_torchs_gradients(bias, input_grad, batch_first, monkeypatch):
    """The eager CPU path runs each LSTM (layer, direction) as one autograd node with the input
    product inside (rnnkit.kernels.native.lstm.EagerLstmLayer): float64 outputs, states and the
    gradients of the input, the initial state and every weight as torch.nn's, with and without bias."""
    monkeypatch.delenv("RNNKIT_CPP_LOOP", raising=False)
    torch.manual_seed(3)
    theirs = torch.nn.LSTM(
        5, 7, num_layers=2, bias=bias, bidirectional=True, batch_first=batch_first
    ).double()
    ours = rnn.LSTM(
        5, 7, num_layers=2, bias=bias, bidirectional=True, batch_first=batch_first, backend="native"
    )
    ours = ours.double()
    ours.load_state_dict(theirs.state_dict())
    shape = (4, 11, 5) if batch_first else (11, 4, 5)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=input_grad)
    h0 = torch.randn(4, 4, 7, dtype=torch.float64, requires_grad=True)
    state = (h0, torch.randn_like(h0))
    calls = []
    original = cpu_lstm.EagerLstmLayer.apply
    monkeypatch.setattr(cpu_lstm.EagerLstmLayer, "apply", lambda *a: calls.append(1) or original(*a))
    got = _layer_grads(ours, x, state)
    assert len(calls) == 4, "every (layer, direction) should run as one eager node"
    want = _layer_grads(theirs, x, state)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler: the eager LSTM node runs the C++ loop")
def test_the_eager_lstm_node_under_weight_norm_and_torch_func():
    """A parametrized weight (weight norm) gets its gradient through the node, and a functorch
    transform (torch.func.grad), which the ctx-style node does not support, runs the custom op."""
    torch.manual_seed(4)
    theirs = torch.nn.LSTM(3, 6).double()
    ours = rnn.LSTM(3, 6, backend="native").double()
    ours.load_state_dict(theirs.state_dict())
    for layer in (ours, theirs):
        torch.nn.utils.parametrizations.weight_norm(layer, "weight_hh_l0")
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    for layer in (ours, theirs):
        layer(x)[0].pow(2).sum().backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10, msg=name)

    plain_ours, plain_theirs = rnn.LSTM(3, 6, backend="native").double(), torch.nn.LSTM(3, 6).double()
    plain_ours.load_state_dict(plain_theirs.state_dict())

    def loss(layer, inputs):
        return layer(inputs)[0].pow(2).sum()

    got = torch.func.grad(lambda inputs: loss(plain_ours, inputs))(x)
    want = torch.func.grad(lambda inputs: loss(plain_theirs, inputs))(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
