"""The lecture notes' worked examples, through the public API."""

from __future__ import annotations

import torch

import rnnkit.nn as rnn

D = torch.float64


def test_basic_rnn_two_steps():
    # s_t = tanh(W . [x_t, s_{t-1}] + b), W = [0.7, 0.3 | 0.4], b = 0.4
    layer = rnn.RNN(2, 1).to(D)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.tensor([[0.7, 0.3]]))
        layer.weight_hh_l0.fill_(0.4)
        layer.bias_ih_l0.fill_(0.4)
        layer.bias_hh_l0.zero_()
    x = torch.tensor([[[0.1, 0.4]], [[0.7, 0.9]]], dtype=D)  # (T=2, B=1, I=2)
    s, s_n = layer(x)
    torch.testing.assert_close(s.flatten(), torch.tensor([0.5299, 0.8791], dtype=D), atol=5e-5, rtol=0)
    assert s_n.item() == s[-1].item()


def test_rnn_two_hidden_units_with_readout():
    cell = rnn.RNNCell(1, 2, bias=False).to(D)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.5], [0.1]]))
        cell.weight_hh.copy_(torch.tensor([[0.4, 0.2], [0.3, 0.7]]))
    h1 = cell(torch.tensor([1.0], dtype=D), torch.zeros(2, dtype=D))
    torch.testing.assert_close(h1, torch.tensor([0.4621, 0.0997], dtype=D), atol=5e-5, rtol=0)
    y1 = torch.tensor([1.0, -1.0], dtype=D) @ h1
    assert abs(y1.item() - 0.3624) < 5e-5


def _bptt_step(cell_factory, set_weights, get_weights):
    """y(t+1) = logsig(w x(t) + g y(t)); loss 1/2 sum (y_d - y)^2; one SGD step, lr 0.5."""
    cell = cell_factory().to(D)
    set_weights(cell, 0.3, 0.4)
    x = [torch.tensor([[0.05]], dtype=D), torch.tensor([[0.1]], dtype=D)]
    targets = [0.6, 0.75]
    y = torch.zeros(1, 1, dtype=D)
    outputs = []
    for x_t in x:
        y = cell(x_t, y)
        outputs.append(y)
    forward = [o.item() for o in outputs]
    loss = 0.5 * sum((t - o) ** 2 for t, o in zip(targets, outputs, strict=True))
    optimizer = torch.optim.SGD(cell.parameters(), lr=0.5)
    optimizer.zero_grad()
    loss.sum().backward()
    optimizer.step()
    return forward, get_weights(cell)


def test_bptt_by_hand_through_rnn_cell():
    def set_w(cell, w, g):
        with torch.no_grad():
            cell.weight_ih.fill_(w)
            cell.weight_hh.fill_(g)

    forward, (w, g) = _bptt_step(
        lambda: rnn.RNNCell(1, 1, bias=False, nonlinearity="sigmoid"),
        set_w,
        lambda c: (c.weight_ih.item(), c.weight_hh.item()),
    )
    assert abs(forward[0] - 0.5037) < 5e-5 and abs(forward[1] - 0.5576) < 5e-5
    assert abs(w - 0.30309) < 5e-6 and abs(g - 0.41195) < 5e-6


def test_bptt_by_hand_through_jordan_cell():
    def set_w(cell, w, g):
        with torch.no_grad():
            cell.weight_ih.fill_(w)
            cell.weight_hh.fill_(g)
            cell.weight_ho.fill_(1.0)
        cell.weight_ho.requires_grad_(False)  # the fixed unit readout of the one-neuron example

    forward, (w, g) = _bptt_step(
        lambda: rnn.JordanCell(1, 1, 1, bias=False, nonlinearity="sigmoid"),
        set_w,
        lambda c: (c.weight_ih.item(), c.weight_hh.item()),
    )
    assert abs(forward[0] - 0.5037) < 5e-5 and abs(forward[1] - 0.5576) < 5e-5
    assert abs(w - 0.30309) < 5e-6 and abs(g - 0.41195) < 5e-6


def test_lstm_gates_by_hand():
    import math

    def sig(v):
        return 1 / (1 + math.exp(-v))

    # textbook weights over [x_t (2 inputs) | h_{t-1} (1 unit)]
    W = {"f": (0.7, 0.3, 0.4), "i": (0.2, 0.3, 0.4), "C": (0.4, 0.2, 0.1), "o": (0.5, -0.6, 0.3)}
    b = {"f": 0.4, "i": 0.2, "C": 0.5, "o": -0.1}
    cell = rnn.LSTMCell(2, 1).to(D)
    order = ["i", "f", "C", "o"]  # torch's row order
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([W[k][:2] for k in order], dtype=D))
        cell.weight_hh.copy_(torch.tensor([[W[k][2]] for k in order], dtype=D))
        cell.bias_ih.copy_(torch.tensor([b[k] for k in order], dtype=D))
        cell.bias_hh.zero_()

    h, c = 0.0, 0.0
    state = (torch.zeros(1, 1, dtype=D), torch.zeros(1, 1, dtype=D))
    for x1, x2 in [(0.1, 0.4), (0.7, 0.9)]:

        def net(k, x1=x1, x2=x2, h_prev=h):
            return W[k][0] * x1 + W[k][1] * x2 + W[k][2] * h_prev + b[k]

        f_t = sig(net("f"))  # forget
        i_t = sig(net("i"))  # input
        c_tilde = math.tanh(net("C"))  # candidate
        c = f_t * c + i_t * c_tilde  # cell update
        o_t = sig(net("o"))  # output
        h = o_t * math.tanh(c)  # hidden
        state = cell(torch.tensor([[x1, x2]], dtype=D), state)
        assert abs(state[0].item() - h) < 1e-14 and abs(state[1].item() - c) < 1e-14
    # first-step forget gate of the slides: sigma(0.7*0.1 + 0.3*0.4 + 0.4*0 + 0.4) = sigma(0.59)
    assert abs(sig(0.59) - 0.6434) < 1e-4
