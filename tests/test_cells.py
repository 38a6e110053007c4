"""Cells against torch.nn.*Cell: values, gradients, state dicts, init, gradcheck, errors, protocol."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compare_modules
from torch import nn

import rnnkit.nn as rnn
from rnnkit.cells import RecurrentCell, available_cells, get_cell, register_cell

D = torch.float64
CASES = [
    (rnn.RNNCell, nn.RNNCell, {}),
    (rnn.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    (rnn.LSTMCell, nn.LSTMCell, {}),
    (rnn.GRUCell, nn.GRUCell, {}),
]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def random_state(cell: RecurrentCell, batch: int | None):
    shape = () if batch is None else (batch,)
    states = tuple(torch.randn(*shape, n, dtype=D, requires_grad=True) for n in cell.state_sizes())
    return states[0] if len(states) == 1 else states


@pytest.mark.parametrize(("ours", "theirs", "kw"), CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [None, 1, 5])
@pytest.mark.parametrize("with_state", [True, False])
def test_cell_matches_torch(ours, theirs, kw, bias, batch, with_state):
    a = ours(7, 6, bias=bias, **kw).to(D)
    b = theirs(7, 6, bias=bias, **kw).to(D)
    shape = (7,) if batch is None else (batch, 7)

    def inputs():
        x = torch.randn(*shape, dtype=D, requires_grad=True)
        return (x, random_state(a, batch)) if with_state else (x,)

    compare_modules(a, b, inputs)


@pytest.mark.parametrize(("ours", "theirs", "kw"), CASES, ids=IDS)
def test_state_dict_loads_both_ways(ours, theirs, kw):
    a, b = ours(3, 4, **kw), theirs(3, 4, **kw)
    assert list(a.state_dict()) == list(b.state_dict())
    a.load_state_dict(b.state_dict(), strict=True)
    b.load_state_dict(a.state_dict(), strict=True)
    for name, p in a.named_parameters():
        assert p.shape == getattr(b, name).shape


@pytest.mark.parametrize(("ours", "theirs", "kw"), CASES, ids=IDS)
def test_init_is_uniform_in_torch_bound(ours, theirs, kw):
    cell = ours(50, 64, **kw)
    bound = 1 / math.sqrt(64)
    for name, p in cell.named_parameters():
        assert p.abs().max() <= bound, name
        # U(-b, b) has std b/sqrt(3): a wrong init (zeros, normal, xavier) misses this band
        assert abs(p.std().item() - bound / math.sqrt(3)) < 0.1 * bound, name


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "jordan"])
def test_gradcheck_cells(name):
    cls = get_cell(name)
    cell = cls(3, 4, 2).to(D) if name == "jordan" else cls(3, 4).to(D)
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    state = random_state(cell, 2)
    params = tuple(cell.parameters())

    def fn(x, *rest):
        n = len(cell.state_sizes())
        st = rest[0] if n == 1 else tuple(rest[:n])
        out = torch.func.functional_call(
            cell, dict(zip(dict(cell.named_parameters()), rest[n:], strict=True)), (x, st)
        )
        return out

    state_t = (state,) if isinstance(state, torch.Tensor) else state
    assert torch.autograd.gradcheck(fn, (x, *state_t, *[p.detach().requires_grad_() for p in params]))


def test_lstm_proj_cell_shapes_and_grad():
    cell = rnn.LSTMCell(5, 8, proj_size=3).to(D)
    h, c = cell(torch.randn(4, 5, dtype=D))
    assert h.shape == (4, 3) and c.shape == (4, 8)
    assert cell.weight_hh.shape == (32, 3) and cell.weight_hr.shape == (3, 8)


def test_lstm_gate_weights_are_views_of_fused_storage():
    cell = rnn.LSTMCell(2, 3)
    w_x, w_h, b = cell.gate_weights("f")  # torch order i, f, g, o: forget is the second block
    assert torch.equal(w_x, cell.weight_ih[3:6]) and torch.equal(w_h, cell.weight_hh[3:6])
    assert torch.allclose(b, cell.bias_ih[3:6] + cell.bias_hh[3:6])
    with pytest.raises(ValueError, match="gate must be one of"):
        cell.gate_weights("x")


def test_jordan_cell_equations_and_feedback():
    cell = rnn.JordanCell(3, 5, 2, nonlinearity="tanh", output_nonlinearity="sigmoid").to(D)
    x = torch.randn(4, 3, dtype=D)
    y_prev = torch.randn(4, 2, dtype=D)
    h = torch.tanh(x @ cell.weight_ih.T + cell.bias_ih + y_prev @ cell.weight_hh.T + cell.bias_hh)
    expected = torch.sigmoid(h @ cell.weight_ho.T + cell.bias_ho)
    torch.testing.assert_close(cell(x, y_prev), expected, rtol=0, atol=1e-14)
    assert cell(x).shape == (4, 2)
    assert cell(x[0]).shape == (2,)
    assert {n for n, _ in cell.named_parameters()} == {
        "weight_ih",
        "weight_hh",
        "weight_ho",
        "bias_ih",
        "bias_hh",
        "bias_ho",
    }
    assert cell.weight_hh.shape == (5, 2) and cell.weight_ho.shape == (2, 5)


@pytest.mark.parametrize("name", ["rnn", "jordan", "lstm", "gru"])
def test_registry_names_builtin_cells(name):
    assert name in available_cells()
    assert issubclass(get_cell(name), RecurrentCell)


def test_register_user_cell_and_run_it_in_a_layer():
    @register_cell("test_mgu", overwrite=True)
    class MinimalGatedUnit(RecurrentCell):
        def __init__(self, input_size, hidden_size, bias=True):
            super().__init__(input_size, hidden_size)
            self.x2h = nn.Linear(input_size, 2 * hidden_size, bias=bias)
            self.h2f = nn.Linear(hidden_size, hidden_size, bias=False)
            self.h2n = nn.Linear(hidden_size, hidden_size, bias=False)

        def project_input(self, x):
            return self.x2h(x)

        def step(self, xp, h):
            xf, xn = xp.chunk(2, dim=-1)
            f = torch.sigmoid(xf + self.h2f(h))
            n = torch.tanh(xn + self.h2n(f * h))
            return (1 - f) * h + f * n

    assert get_cell("test_mgu") is MinimalGatedUnit
    layer = rnn.Recurrent("test_mgu", 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(6, 2, 3, requires_grad=True)
    out, h_n = layer(x)
    assert out.shape == (6, 2, 8) and h_n.shape == (4, 2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    # the single-step forward comes with the protocol
    cell = MinimalGatedUnit(3, 4)
    assert cell(torch.randn(2, 3)).shape == (2, 4)


def test_register_rejects_taken_names_and_non_cells():
    with pytest.raises(ValueError, match="already taken"):
        register_cell("lstm", rnn.GRUCell)
    with pytest.raises(TypeError, match="RecurrentCell subclass"):
        register_cell("bad", nn.Linear)
    with pytest.raises(KeyError, match="Unknown cell 'nope'"):
        get_cell("nope")


def test_cell_without_step_says_so():
    class Empty(RecurrentCell):
        pass

    with pytest.raises(NotImplementedError, match="must implement step"):
        Empty(2, 3)(torch.randn(1, 2))


def test_bad_constructor_arguments():
    """rnnkit's own arguments; torch's are checked side by side in test_torch_arguments.py."""
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        rnn.LSTMCell(2, 4, proj_size=4)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        rnn.JordanCell(2, 4, 1, nonlinearity="gelu")
    with pytest.raises(TypeError, match="hidden_size should be of type int, got: float"):
        RecurrentCell(2, 4.0)  # a user's cell gets torch-style size checks from the base class
    with pytest.raises(ValueError, match="input_size must not be negative, got -1"):
        RecurrentCell(-1, 4)
    with pytest.raises(ValueError, match="output_size must be a positive integer"):
        rnn.JordanCell(2, 4, 0)
