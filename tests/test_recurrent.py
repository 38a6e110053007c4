"""The generic Recurrent layer over any cell, and the TDNN baseline."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn
from rnnkit.cells import get_cell

D = torch.float64


def loop_by_hand(cells, x, lengths=None):
    """Independent reference: call each cell's single-step forward sequence by sequence."""
    steps, batch, _ = x.shape
    lengths = [steps] * batch if lengths is None else lengths.tolist()
    outs = []
    for b in range(batch):
        seq = x[: lengths[b], b]
        for layer in range(len(cells)):
            per_dir = []
            for d, cell in enumerate(cells[layer]):
                s = None
                ys = []
                order = range(len(seq)) if d == 0 else reversed(range(len(seq)))
                for t in order:
                    s = cell(seq[t], s)
                    ys.append(cell.output(s))
                if d == 1:
                    ys = ys[::-1]
                per_dir.append(torch.stack(ys))
            seq = torch.cat(per_dir, -1)
        outs.append(seq)
    return outs


@pytest.mark.parametrize("cell", ["jordan", "rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_equals_step_by_step_cells(cell, bidirectional):
    kw = {"output_size": 2} if cell == "jordan" else {}
    layer = rnn.Recurrent(cell, 3, 4, num_layers=2, bidirectional=bidirectional, **kw).to(D)
    x = torch.randn(6, 3, 3, dtype=D)
    lengths = torch.tensor([6, 2, 4])
    out, _ = layer(x, lengths=lengths)
    d = 2 if bidirectional else 1
    cells = [list(layer.cells[i * d : (i + 1) * d]) for i in range(2)]
    for b, ref in enumerate(loop_by_hand(cells, x, lengths)):
        torch.testing.assert_close(out[: lengths[b], b], ref, rtol=0, atol=1e-13)


def test_jordan_layer_shapes_packed_and_gradcheck():
    layer = rnn.Recurrent(
        "jordan", 3, 5, output_size=2, num_layers=2, bidirectional=True, batch_first=True
    ).to(D)
    x = torch.randn(4, 7, 3, dtype=D, requires_grad=True)
    out, y_n = layer(x)
    assert out.shape == (4, 7, 4) and y_n.shape == (4, 4, 2)
    packed = pack_padded_sequence(x, torch.tensor([7, 3, 5, 1]), batch_first=True, enforce_sorted=False)
    out_p, _ = layer(packed)
    assert out_p.data.shape == (16, 4)
    small = rnn.Recurrent("jordan", 2, 3, output_size=2).to(D)
    xs = torch.randn(3, 2, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: small(v)[0], (xs,))


def test_chunked_run_with_carried_state_equals_full_run():
    layer = rnn.Recurrent("lstm", 3, 4, num_layers=2).to(D)
    x = torch.randn(10, 2, 3, dtype=D)
    full, (h, c) = layer(x)
    first, state = layer(x[:6])
    second, (h2, c2) = layer(x[6:], state)
    torch.testing.assert_close(torch.cat([first, second]), full, rtol=0, atol=1e-14)
    torch.testing.assert_close(h2, h, rtol=0, atol=1e-14)


def test_recurrent_state_dict_names_cells_and_accepts_class():
    layer = rnn.Recurrent(get_cell("gru"), 3, 4, num_layers=2)
    assert "cells.1.weight_hh" in layer.state_dict()
    with pytest.raises(KeyError, match="Unknown cell 'elman2'"):
        rnn.Recurrent("elman2", 3, 4)
    with pytest.raises(TypeError, match="must return a RecurrentCell"):
        rnn.Recurrent(lambda i, h: torch.nn.Linear(i, h), 3, 4)


def test_lengths_with_unbatched_or_packed_input_is_an_error():
    layer = rnn.Recurrent("rnn", 3, 4)
    with pytest.raises(ValueError, match="lengths needs batched input"):
        layer(torch.randn(5, 3), lengths=torch.tensor([3]))
    packed = pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(ValueError, match="lengths must not be given with a PackedSequence"):
        layer(packed, lengths=torch.tensor([5, 3]))


def test_tdnn_window_matches_definition_and_streams():
    tdnn = rnn.TDNN(2, 4, delay=2).to(D)
    x = torch.randn(6, 3, 2, dtype=D)
    out, h_n = tdnn(x)
    assert out.shape == (6, 3, 4) and h_n.shape == (2, 3, 2)
    padded = torch.cat([torch.zeros(2, 3, 2, dtype=D), x])
    lin = tdnn.layers[0]
    for t in range(6):
        window = torch.cat([padded[t], padded[t + 1], padded[t + 2]], dim=-1)  # x_{t-2}, x_{t-1}, x_t
        torch.testing.assert_close(out[t], torch.tanh(lin(window)), rtol=0, atol=1e-14)
    # chunked processing with the returned context equals one pass
    a, ctx = tdnn(x[:4])
    b, _ = tdnn(x[4:], ctx)
    torch.testing.assert_close(torch.cat([a, b]), out, rtol=0, atol=1e-14)
    # it cannot see further back than its window: changing x_0 leaves y_3.. unchanged
    x2 = x.clone()
    x2[0] += 1
    assert torch.equal(tdnn(x2)[0][3:], out[3:])
    with pytest.raises(RuntimeError, match=r"Expected hx size \(2, 3, 2\), got \[1, 3, 2\]"):
        tdnn(x, torch.zeros(1, 3, 2, dtype=D))
    with pytest.raises(RuntimeError, match="Expected 2, got 5"):
        tdnn(torch.randn(3, 1, 5, dtype=D))


def test_tdnn_with_lengths_zeroes_padding_and_returns_each_sequences_last_frames():
    tdnn = rnn.TDNN(2, 3, delay=2).to(D)
    x = torch.randn(6, 3, 2, dtype=D)
    lengths = torch.tensor([6, 2, 4])
    out, h_n = tdnn(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_h = tdnn(x[:n, b : b + 1])
        torch.testing.assert_close(out[:n, b : b + 1], alone, rtol=0, atol=1e-14)
        if n < 6:
            assert out[n:, b].abs().max() == 0  # padding stays zero
        torch.testing.assert_close(h_n[:, b : b + 1], alone_h, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\) with values in \[1, 6\]"):
        tdnn(x, lengths=torch.tensor([7, 1, 1]))
    with pytest.raises(ValueError, match="TDNN is causal: bidirectional must be false"):
        rnn.TDNN(2, 3, bidirectional=True)
