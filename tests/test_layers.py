"""rnnkit.nn.RNN/LSTM/GRU against torch.nn in float64: outputs, final states and every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import compare_modules
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn

D = torch.float64
TOL = 1e-10
KINDS = {
    "lstm": (rnn.LSTM, nn.LSTM),
    "gru": (rnn.GRU, nn.GRU),
    "rnn_tanh": (rnn.RNN, nn.RNN),
    "rnn_relu": (rnn.RNN, nn.RNN),
}


def make_pair(kind, input_size, hidden_size, backend="auto", **kw):
    ours, theirs = KINDS[kind]
    if kind == "rnn_relu":
        kw["nonlinearity"] = "relu"
    if backend == "native" and kind.startswith("rnn"):
        backend = "reference"  # the Elman RNN has no fused kernel
    mine = ours(input_size, hidden_size, backend=backend, **kw).to(D)
    return mine, theirs(input_size, hidden_size, **kw).to(D)


# every layer test runs on the reference loop and on the fused CPU path (tests/test_kernels.py adds Triton)
BACKENDS = ["reference", "native"]


def initial_state(layer, batch):
    """Random (h0[, c0]) with the leaf shapes torch expects; ``batch=None`` for unbatched."""
    lead = layer.num_layers * layer.num_directions
    shape = (lead,) if batch is None else (lead, batch)
    sizes = layer.layer_cells()[0].state_sizes()
    parts = tuple(torch.randn(*shape, s, dtype=D, requires_grad=True) for s in sizes)
    return parts[0] if len(parts) == 1 else parts


CONFIGS = list(itertools.product([1, 2, 3], [True, False], [True, False], [True, False]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("num_layers", "bias", "bidirectional", "batch_first"), CONFIGS)
def test_dense_parity(kind, num_layers, bias, bidirectional, batch_first, backend):
    ours, theirs = make_pair(
        kind,
        5,
        6,
        backend,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )
    steps, batch = 7, 3

    def inputs():
        shape = (batch, steps, 5) if batch_first else (steps, batch, 5)
        return (torch.randn(*shape, dtype=D, requires_grad=True), initial_state(ours, batch))

    compare_modules(ours, theirs, inputs, TOL)


@pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first", "bias"), CONFIGS)
def test_lstm_proj_size_parity(num_layers, bidirectional, batch_first, bias):
    ours, theirs = make_pair(
        "lstm",
        4,
        7,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        bias=bias,
        proj_size=3,
    )

    def inputs():
        shape = (2, 5, 4) if batch_first else (5, 2, 4)
        return (torch.randn(*shape, dtype=D, requires_grad=True), initial_state(ours, 2))

    out, _ = compare_modules(ours, theirs, inputs, TOL)
    assert out[0].shape[-1] == (6 if bidirectional else 3)


MODES = [
    "no_h0",
    "unbatched",
    "unbatched_h0",
    "packed_sorted",
    "packed_unsorted",
    "packed_h0",
    "dropout_eval",
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_input_modes_parity(kind, mode, bidirectional, backend):
    kw = {"num_layers": 2, "bidirectional": bidirectional}
    if mode == "dropout_eval":
        kw["dropout"] = 0.5
    if kind == "lstm" and mode == "packed_h0":
        kw["proj_size"] = 2
    ours, theirs = make_pair(kind, 4, 5, backend, **kw)
    if mode == "dropout_eval":
        ours.eval(), theirs.eval()
    lengths = torch.tensor([6, 6, 4, 1]) if mode == "packed_sorted" else torch.tensor([3, 6, 1, 4])

    def inputs():
        if mode.startswith("unbatched"):
            x = torch.randn(6, 4, dtype=D, requires_grad=True)
            return (x, initial_state(ours, None)) if mode == "unbatched_h0" else (x,)
        x = torch.randn(6, 4, 4, dtype=D)
        if mode.startswith("packed"):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=mode == "packed_sorted")
            packed.data.requires_grad_()
            return (packed, initial_state(ours, 4)) if mode == "packed_h0" else (packed,)
        return (x.requires_grad_(),)

    out, ref = compare_modules(ours, theirs, inputs, TOL)
    if mode.startswith("packed"):
        assert isinstance(out[0], torch.nn.utils.rnn.PackedSequence)
        assert torch.equal(out[0].batch_sizes, ref[0].batch_sizes)
        for a, b in (
            (out[0].sorted_indices, ref[0].sorted_indices),
            (out[0].unsorted_indices, ref[0].unsorted_indices),
        ):
            assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_lengths_argument_equals_packing(kind):
    layer, _ = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=D)
    lengths = torch.tensor([2, 5, 3])
    out, h = layer(x, lengths=lengths)
    packed_out, packed_h = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out)
    torch.testing.assert_close(out, padded, rtol=0, atol=1e-14)
    for a, b in zip(
        h if isinstance(h, tuple) else (h,),
        packed_h if isinstance(packed_h, tuple) else (packed_h,),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    assert out[2:, 0].abs().max() == 0  # padding stays zero


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_keys_and_loading_both_ways(kind):
    kw = {"num_layers": 2, "bidirectional": True}
    if kind == "lstm":
        kw["proj_size"] = 2
    ours, theirs = make_pair(kind, 3, 4, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert torch.equal(ours.weight_hh_l1_reverse, theirs.weight_hh_l1_reverse)
    assert len(ours.all_weights) == len(theirs.all_weights) == 4


def test_layer_follows_device_and_dtype_moves_and_assign_loading():
    ours, theirs = make_pair("lstm", 3, 4)
    ours = ours.float()
    theirs = theirs.float()
    ours.load_state_dict(theirs.state_dict(), assign=True)
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_dropout_in_training_mode_drops_between_layers(kind):
    ours, _ = make_pair(kind, 3, 16, num_layers=2, dropout=0.5)
    x = torch.randn(5, 4, 3, dtype=D)
    ours.eval()
    reference = ours(x)[0]
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.allclose(a, reference) and not torch.allclose(a, b)
    single, _ = make_pair(kind, 3, 16, num_layers=1)
    single.train()
    torch.testing.assert_close(single(x)[0], single(x)[0])  # no dropout after the last layer


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck_layers(kind, bidirectional, backend):
    ours, _ = make_pair(kind, 2, 3, backend, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    names = [n for n, _ in ours.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]
    h0 = initial_state(ours, 2)
    h0 = (h0,) if isinstance(h0, torch.Tensor) else h0

    def fn(x, *rest):
        n = len(h0)
        hx = rest[0] if n == 1 else tuple(rest[:n])
        out, h = torch.func.functional_call(ours, dict(zip(names, rest[n:], strict=True)), (x, hx))
        return (out, *((h,) if isinstance(h, torch.Tensor) else h))

    assert torch.autograd.gradcheck(fn, (x, *h0, *params))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_packed_lstm(backend):
    ours, _ = make_pair("lstm", 2, 3, backend, bidirectional=True)
    x = torch.randn(4, 3, 2, dtype=D, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])

    def fn(x):
        out, (h, c) = ours(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return out.data, h, c

    assert torch.autograd.gradcheck(fn, (x,))


@settings(max_examples=40, deadline=None)
@given(
    backend=st.sampled_from(BACKENDS),
    kind=st.sampled_from(["lstm", "gru", "rnn_tanh"]),
    steps=st.integers(1, 9),
    batch=st.integers(1, 5),
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 7),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    packed=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_shapes_parity(
    backend, kind, steps, batch, input_size, hidden_size, num_layers, bidirectional, packed, seed
):
    torch.manual_seed(seed)
    ours, theirs = make_pair(
        kind, input_size, hidden_size, backend, num_layers=num_layers, bidirectional=bidirectional
    )
    lengths = torch.randint(1, steps + 1, (batch,))

    def inputs():
        x = torch.randn(steps, batch, input_size, dtype=D)
        if packed:
            p = pack_padded_sequence(x, lengths, enforce_sorted=False)
            p.data.requires_grad_()
            return (p, initial_state(ours, batch))
        return (x.requires_grad_(), initial_state(ours, batch))

    compare_modules(ours, theirs, inputs, TOL)


# ------------------------------------------------------------------------------------------ errors
def test_bad_lengths_and_dropout_warning():
    """rnnkit's own ``lengths`` argument; torch's arguments are checked in test_torch_arguments.py."""
    layer = rnn.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\), got \(3,\)"):
        layer(x, lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        layer(x, lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        rnn.LSTM(3, 4, dropout=1.5)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnn.LSTM(3, 4, dropout=0.2)
    with pytest.raises(ValueError, match="lengths needs batched input"):
        layer(x[:, 0], lengths=torch.tensor([5]))


@pytest.mark.parametrize("name", ["RNN", "GRU"])
def test_proj_size_on_rnn_and_gru_is_refused_as_torch_refuses_it(name):
    message = "proj_size argument is only supported for LSTM, not RNN or GRU"
    with pytest.raises(ValueError, match=message):
        getattr(nn, name)(10, 20, proj_size=10)
    with pytest.raises(ValueError, match=message):
        getattr(rnn, name)(10, 20, proj_size=10)
    with pytest.raises(ValueError, match=message):  # torch refuses the keyword itself, 0 included
        getattr(nn, name)(10, 20, proj_size=0)
    with pytest.raises(ValueError, match=message):
        getattr(rnn, name)(10, 20, proj_size=0)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_zero_length_sequence_raises_torchs_error(name, batch_first):
    x = torch.randn(2, 0, 3) if batch_first else torch.randn(0, 2, 3)
    message = "Expected sequence length to be larger than 0 in RNN"
    with pytest.raises(RuntimeError, match=message):
        getattr(nn, name)(3, 4, batch_first=batch_first)(x)
    with pytest.raises(RuntimeError, match=message):
        getattr(rnn, name)(3, 4, batch_first=batch_first)(x)
    with pytest.raises(RuntimeError, match=message):
        getattr(rnn, name)(3, 4)(torch.randn(0, 3))  # unbatched
