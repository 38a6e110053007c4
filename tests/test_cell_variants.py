"""Cells torch.nn lacks (LayerNorm LSTM/GRU, peephole LSTM) and the zoneout / recurrent-dropout
options of every built-in cell: each against a straightforward implementation written here."""

from __future__ import annotations

import pytest
import torch
from kernel_parity import BOUNDS, compare_with_reference
from training_helpers import run_train

import rnnkit.nn as rnn
from rnnkit import kernels
from rnnkit.cells import get_cell
from rnnkit.kernels.triton.common import why_triton_cannot_run
from rnnkit.kernels.triton.paths import PATHS

D = torch.float64
TRITON_REASON = why_triton_cannot_run(torch.device("cpu"))
needs_triton = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
# the graphed path runs the stepwise kernels: tests/test_step_graphs.py checks it with the masks
FUSED = ["native", *(pytest.param(f"triton-{p}", marks=needs_triton) for p in PATHS if p != "graphed")]
NEW_CELLS = ["layernorm_lstm", "layernorm_gru", "peephole_lstm"]
BUILT_IN = ["rnn", "lstm", "gru", "jordan", *NEW_CELLS]


def ln(x, gain, bias=None):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + 1e-5) * gain
    return out if bias is None else out + bias


def textbook_step(name, cell, x, state):
    """One step of each new cell, written from its equations with per-gate blocks."""
    H = cell.hidden_size
    blocks = lambda w: w.split(H, dim=0)  # noqa: E731 - gate blocks in torch's order
    if name == "layernorm_lstm":
        h, c = state
        a = ln(x @ cell.weight_ih.t(), cell.layernorm_ih_weight) + ln(
            h @ cell.weight_hh.t(), cell.layernorm_hh_weight
        )
        a = a + cell.bias_ih
        i, f, g, o = a.split(H, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(ln(c_new, cell.layernorm_cell_weight, cell.layernorm_cell_bias))
        return h_new, c_new
    if name == "layernorm_gru":
        h = state
        a = ln(x @ cell.weight_ih.t(), cell.layernorm_ih_weight) + cell.bias_ih
        g = ln(h @ cell.weight_hh.t(), cell.layernorm_hh_weight) + cell.bias_hh
        (ar, az, an), (gr, gz, gn) = a.split(H, dim=1), g.split(H, dim=1)
        r, z = torch.sigmoid(ar + gr), torch.sigmoid(az + gz)
        n = torch.tanh(an + r * gn)
        return (1 - z) * n + z * h
    h, c = state  # peephole_lstm
    (wi, wf, wg, wo), (ui, uf, ug, uo) = blocks(cell.weight_ih), blocks(cell.weight_hh)
    b = cell.bias_ih + cell.bias_hh
    bi, bf, bg, bo = b.split(H)
    i = torch.sigmoid(x @ wi.t() + h @ ui.t() + cell.weight_ci * c + bi)
    f = torch.sigmoid(x @ wf.t() + h @ uf.t() + cell.weight_cf * c + bf)
    c_new = f * c + i * torch.tanh(x @ wg.t() + h @ ug.t() + bg)
    o = torch.sigmoid(x @ wo.t() + h @ uo.t() + cell.weight_co * c_new + bo)
    return o * torch.tanh(c_new), c_new


@pytest.mark.parametrize("name", NEW_CELLS)
def test_new_cells_follow_their_equations_over_a_sequence(name):
    layer = rnn.Recurrent(name, 3, 5, dtype=D)
    cell = layer.cells[0]
    with torch.no_grad():
        for p in cell.parameters():  # LN gains and peepholes away from their init
            p.uniform_(-0.8, 0.8)
    x = torch.randn(6, 4, 3, dtype=D)
    out, final = layer(x)
    state = cell.init_state(4, dtype=D)
    for t in range(6):
        state = textbook_step(name, cell, x[t], state)
        expected = state if isinstance(state, torch.Tensor) else state[0]
        torch.testing.assert_close(out[t], expected, atol=1e-12, rtol=1e-12)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(final), torch.utils._pytree.tree_leaves(state), strict=True
    ):
        torch.testing.assert_close(a[0], b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", NEW_CELLS)
def test_gradcheck_new_cells_in_a_bidirectional_layer(name):
    layer = rnn.Recurrent(name, 2, 3, bidirectional=True, num_layers=2, dtype=D)
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=torch.tensor([4, 2]))[0], (x,))
    params = dict(layer.named_parameters())
    assert torch.autograd.gradcheck(
        lambda *ws: torch.func.functional_call(layer, dict(zip(params, ws, strict=True)), (x.detach(),))[0],
        tuple(p.detach().requires_grad_() for p in params.values()),
    )


def test_peephole_lstm_with_zero_peepholes_is_torchs_lstm_cell():
    theirs = torch.nn.LSTMCell(3, 4, dtype=D)
    ours = get_cell("peephole_lstm")(3, 4, dtype=D)
    missing = ours.load_state_dict(theirs.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["weight_cf", "weight_ci", "weight_co"]
    with torch.no_grad():
        for name in missing:
            getattr(ours, name).zero_()
    x, h, c = (torch.randn(2, n, dtype=D) for n in (3, 4, 4))
    for a, b in zip(ours(x, (h, c)), theirs(x, (h, c)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------------- zoneout
@pytest.mark.parametrize("name", BUILT_IN)
def test_zoneout_keeps_a_fraction_p_of_units_in_training_and_is_its_expectation_in_eval(name):
    kwargs = {"output_size": 64} if name == "jordan" else {}
    p = 0.3
    cell = get_cell(name)(4, 64, zoneout=p, **kwargs)
    plain = get_cell(name)(4, 64, **kwargs)
    plain.load_state_dict(cell.state_dict())
    x = torch.randn(512, 4)
    old = tuple(torch.randn(512, n) for n in cell.state_sizes())
    old = old[0] if len(old) == 1 else old
    new = torch.utils._pytree.tree_leaves(plain(x, old))
    zoned = torch.utils._pytree.tree_leaves(cell(x, old))
    for n, z, o in zip(new, zoned, torch.utils._pytree.tree_leaves(old), strict=True):
        kept = z == o
        assert torch.equal(z[~kept], n[~kept])  # every unit is either kept or updated
        assert abs(kept.double().mean().item() - p) < 0.02
    cell.eval()
    first, second = cell(x, old), cell(x, old)
    for n, z1, z2, o in zip(new, *map(torch.utils._pytree.tree_leaves, (first, second, old)), strict=True):
        assert torch.equal(z1, z2)  # eval mode is deterministic
        torch.testing.assert_close(z1, p * o + (1 - p) * n)


@pytest.mark.parametrize("name", ["lstm", "gru", "jordan"])
def test_a_layer_draws_zoneout_masks_once_per_sequence_as_the_fused_kernels_do(name, monkeypatch):
    """One uniform draw per sequence (layer and direction), not one per step and state part: CUDA's
    generator gives a large draw other numbers than many small ones, so only one draw gives the
    reference loop and the fused kernels the same masks there (per-step draws failed on an H100)."""
    kwargs = {"output_size": 6} if name == "jordan" else {}
    layer = rnn.Recurrent(name, 3, 6, num_layers=2, bidirectional=True, zoneout=0.3, **kwargs)
    calls = []
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: calls.append(a) or real_rand(*a, **k))
    layer(torch.randn(7, 2, 3))
    assert len(calls) == 4  # 2 layers x 2 directions
    cell = layer.layer_cells()[0]
    masks = cell.for_sequence(2, torch.device("cpu"), torch.float64, steps=7)._zoneout_masks
    assert [tuple(m.shape) for m in masks] == [(7, 2, n) for n in cell.state_sizes()]
    assert all(m.dtype == torch.bool for m in masks)
    layer.eval()
    calls.clear()
    layer(torch.randn(7, 2, 3))
    assert not calls  # eval: zoneout's expectation, nothing drawn


# -------------------------------------------------------------------------- recurrent dropout
def test_recurrent_dropout_is_one_mask_per_sequence_on_the_recurrent_input():
    q, hidden = 0.4, 6
    layer = rnn.Recurrent("rnn", 3, hidden, recurrent_dropout=q, dtype=D)
    cell = layer.cells[0]
    x = torch.randn(5, 2, 3, dtype=D)
    torch.manual_seed(7)
    out, _ = layer(x)
    torch.manual_seed(7)  # the same draw, written out: a (B, H) mask scaled by 1/(1-q), fixed over time
    mask = torch.empty(2, hidden, dtype=D).bernoulli_(1 - q) / (1 - q)
    h = torch.zeros(2, hidden, dtype=D)
    xp = x @ cell.weight_ih.t() + cell.bias_ih + cell.bias_hh
    for t in range(5):
        h = torch.tanh(xp[t] + (h * mask) @ cell.weight_hh.t())
        torch.testing.assert_close(out[t], h, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", BUILT_IN)
def test_recurrent_dropout_mask_statistics_and_eval_mode(name):
    kwargs = {"output_size": 8} if name == "jordan" else {}
    q = 0.25
    cell = get_cell(name)(3, 8, recurrent_dropout=q, **kwargs)
    bound = cell.for_sequence(4000, torch.device("cpu"), torch.float32)
    mask = bound._recurrent_mask
    values = mask.unique()
    assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(1 / (1 - q))
    assert abs((mask == 0).float().mean().item() - q) < 0.01
    assert cell._recurrent_mask is None  # the cell itself is untouched
    cell.eval()
    assert cell.for_sequence(4, torch.device("cpu"), torch.float32) is cell  # no mask in eval
    layer = rnn.Recurrent(name, 3, 8, recurrent_dropout=q, zoneout=0.1, **kwargs).eval()
    x = torch.randn(5, 2, 3)
    assert torch.equal(layer(x)[0], layer(x)[0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_torch_twins_take_the_options_and_pick_the_loop_that_runs_them(kind):
    layer = getattr(rnn, kind)(3, 4, 2, recurrent_dropout=0.3)
    cell = layer.layer_cells()[0]
    assert cell.recurrent_dropout == 0.3 and cell.training
    cpu = torch.device("cpu")
    fused = kernels.select("auto", cell, cpu)
    assert (fused is None) == (kind == "RNN")  # the CPU kernels take the dropout mask
    layer.eval()
    cell = layer.layer_cells()[0]
    assert not cell.training  # the layer's mode reaches its cells
    assert (kernels.select("auto", cell, cpu) is None) == (kind == "RNN")
    zoned = getattr(rnn, kind)(3, 4, zoneout=0.1).layer_cells()[0]
    assert (kernels.select("auto", zoned, cpu) is None) == (kind == "RNN")  # the CPU kernels take zoneout
    with pytest.raises(ValueError, match=r"zoneout must be a probability in \[0, 1\), got 1.5"):
        getattr(rnn, kind)(3, 4, zoneout=1.5)


def outputs_and_second_order_grads(layer, x, lengths):
    """Outputs, final states and every gradient of a loss that holds a gradient of a gradient; the
    seed is set first, so that two layers draw the same masks."""
    torch.manual_seed(1)
    out, state = layer(x, lengths=lengths)
    leaves = torch.utils._pytree.tree_leaves(state)
    loss = out.pow(2).sum() + sum(s.pow(2).sum() for s in leaves)
    (dx,) = torch.autograd.grad(loss, x, create_graph=True)
    return [out, *leaves, *torch.autograd.grad(loss + dx.pow(2).sum(), [x, *layer.parameters()])]


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_dropout_in_the_fused_kernels_equals_the_reference_loop(kind, bidirectional, fused):
    """Same seed, same masks (drawn at the same point), same numbers: outputs, states, every gradient,
    and a gradient of a gradient."""
    results = []
    for backend in ("reference", fused):
        torch.manual_seed(0)
        layer = getattr(rnn, kind)(
            3, 5, 2, bidirectional=bidirectional, recurrent_dropout=0.4, dtype=D, backend=backend
        )
        x = torch.randn(7, 4, 3, dtype=D, requires_grad=True)
        results.append(outputs_and_second_order_grads(layer, x, torch.tensor([7, 3, 5, 7])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)
    layer.eval()  # eval: no mask, the plain recurrence
    plain = getattr(rnn, kind)(3, 5, 2, bidirectional=bidirectional, dtype=D)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x)[0], plain(x)[0], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradcheck_of_the_fused_kernels_with_zoneout_and_recurrent_dropout(kind, backend):
    """The masks held fixed (the generator is reseeded before every call): the kernels' hand-written
    backward against finite differences, for the input, the initial state and every parameter
    (gradcheck's fast mode: random projections of the Jacobian, to keep the interpreter quick)."""
    layer = getattr(rnn, kind)(2, 3, zoneout=0.4, recurrent_dropout=0.3, dtype=D, backend=backend)
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=D, requires_grad=True)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def fn(x, h0, *ps):
        torch.manual_seed(3)
        hx = (h0, torch.ones_like(h0)) if kind == "LSTM" else h0
        out, state = torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x, hx))
        return out, *torch.utils._pytree.tree_leaves(state)

    assert torch.autograd.gradcheck(fn, (x, h0, *params), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masks_in_the_fused_kernels_in_every_dtype(kind, fused, dtype):
    """Zoneout and recurrent dropout in training, two layers both ways, variable lengths: against the
    reference loop at the same dtype and seed (the same masks), within the sweep's bounds."""
    lengths = torch.tensor([6, 2, 5, 6])
    result = compare_with_reference(
        kind, fused, 6, 4, 3, 7, dtype=dtype, lengths=lengths, num_layers=2, bidirectional=True,
        zoneout=0.3, recurrent_dropout=0.2,
    )  # fmt: skip
    name, err = result.worst(relative=True)
    assert err <= BOUNDS[dtype], f"{name}: relative error {err:.2e} > {BOUNDS[dtype]:.0e}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [["cell=layernorm_lstm"], ["cell=peephole_lstm", "model.encoder.zoneout=0.1"], ["cell=layernorm_gru"]],
    ids=lambda o: " ".join(o),
)
def test_new_cells_and_options_train_from_the_configs(overrides, tmp_path):
    metrics = run_train([*overrides, "trainer.max_epochs=3", "model.encoder.recurrent_dropout=0.1"], tmp_path)
    assert metrics["test/mae"] < metrics["baseline/mae"] * 2  # it trained and predicts in range


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    ("fused", "loop", "route"),
    [
        ("native", "1", "small"),
        ("native", "1", "blas"),
        ("native", "0", "auto"),
        *(pytest.param(b.values[0], "1", "auto", marks=needs_triton) for b in FUSED[1:]),
    ],
    ids=["cpu-cpp-loop-small", "cpu-cpp-loop-blas", "cpu-python-loop", *(b.values[0] for b in FUSED[1:])],
)
def test_zoneout_in_the_fused_kernels_equals_the_reference_loop(
    kind, training, fused, loop, route, monkeypatch
):
    """Training: the kernel's masks are the reference loop's (same seed, drawn at the same point, after
    the recurrent-dropout mask); eval: the expectation. Outputs, states, every gradient and a gradient
    of a gradient, with variable lengths, two layers and both directions, through both of the cpu
    backend's time loops and both Triton paths."""
    monkeypatch.setenv("RNNKIT_CPP_LOOP", loop)
    monkeypatch.setenv("RNNKIT_STEP_PRODUCT", route)  # the C++ loop's product: row blocks per thread, or BLAS
    lengths = torch.tensor([9, 4, 1, 6, 9, 2, 7, 3, 5])
    results = []
    for backend in ("reference", fused):
        torch.manual_seed(0)
        layer = getattr(rnn, kind)(
            3, 5, 2, bidirectional=True, zoneout=0.3, recurrent_dropout=0.2, dtype=D, backend=backend
        )
        layer.train(training)
        fused = kernels.select(backend, layer.layer_cells()[0], torch.device("cpu"))
        assert (fused is None) == (backend == "reference")  # cpu: the kernel runs, no fallback
        x = torch.randn(9, 9, 3, dtype=D, requires_grad=True)
        found = outputs_and_second_order_grads(layer, x, lengths)
        with torch.no_grad():  # the inference op
            torch.manual_seed(1)
            found.append(layer(x, lengths=lengths)[0])
        results.append(found)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)
    if training:  # the masks really bit: some units kept their previous value
        assert not torch.allclose(results[0][0], layer.eval()(x, lengths=lengths)[0])
