"""The time loop as an ONNX exporter sees it.

The fused backends are custom ops (``rnnkit::lstm_recurrence`` and friends) that ONNX has no
operator for. While ``torch.onnx.export`` traces a layer (:func:`exporting_to_onnx`), each
(layer, direction) runs instead as what ONNX can express, with the same numbers:

- a plain :class:`~rnnkit.cells.RNNCell` (tanh or relu), :class:`~rnnkit.cells.LSTMCell` or
  :class:`~rnnkit.cells.GRUCell` (no projection, no zoneout, no recurrent dropout, every sequence
  full length) as ``aten::rnn_tanh/rnn_relu/lstm/gru`` over its own weights: the exporter's
  translation of torch.nn's layers, so the ONNX model holds ONNX's own ``RNN`` / ``LSTM`` /
  ``GRU`` operators, as for ``torch.nn.RNN/LSTM/GRU``. The TorchScript-based exporter
  (``dynamo=False``) writes those with a dynamic length; the dynamo exporter (torch 2.13) keeps
  the traced length in them (torch.nn.LSTM's own export is no better), so there they are used
  only when the time dimension is static;
- any other cell (the Jordan cell, a user's cell, variable lengths) and every cell under the
  dynamo exporter with a dynamic time dimension as ``torch._higher_order_ops.scan`` over the
  cell's ``step``: the dynamo exporter writes an ONNX ``Scan`` whose body is the step, so batch
  size and sequence length stay dynamic;
- under the TorchScript-based exporter, which cannot trace ``scan``, those other cells run the
  reference loop unrolled over the traced length (that model takes that length only).

Both routes compute s_t = step(W_x x_t + b, s_{t-1}) for t = 1..T, as the reference loop
(:func:`~rnnkit.kernels.reference.run_cell`) does, which the export tests compare them with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch._higher_order_ops.scan import scan

from rnnkit.cells.base import RecurrentCell, State, map_state
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import RNNCell
from rnnkit.kernels.reference.loop import run_cell

_torch_ops_only = False


@contextmanager
def torch_ops_only() -> Iterator[None]:
    """Within it, layers run as the ONNX exporters see them (torch's own RNN/LSTM/GRU operators, a
    ``scan``, or under ``torch.jit.trace`` the unrolled loop), never an ``rnnkit::`` custom op: a
    module traced inside loads with ``torch.jit.load`` where rnnkit is not installed (libtorch, C++)."""
    global _torch_ops_only
    before, _torch_ops_only = _torch_ops_only, True
    try:
        yield
    finally:
        _torch_ops_only = before


def exporting_to_onnx() -> bool:
    """True while ``torch.onnx.export`` (either exporter) traces the model, or within
    :func:`torch_ops_only`."""
    return _torch_ops_only or torch.onnx.is_in_onnx_export()


def _standard_operator(cell: RecurrentCell) -> bool:
    """The cell is exactly ONNX's RNN, LSTM or GRU: torch.nn's cell math and nothing added to it."""
    if type(cell) not in (RNNCell, LSTMCell, GRUCell):
        return False
    if isinstance(cell, RNNCell) and cell.nonlinearity not in ("tanh", "relu"):
        return False
    if cell.zoneout > 0 or (cell.training and cell.recurrent_dropout > 0):
        return False
    return not getattr(cell, "proj_size", 0)


def _run_standard(cell: RecurrentCell, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One direction of one layer as ``aten::rnn_tanh/rnn_relu`` / ``aten::lstm`` / ``aten::gru``:
    x ``(T, B, I)``."""
    weights = [cell.weight_ih, cell.weight_hh]
    has_biases = cell.bias_ih is not None
    if has_biases:
        weights += [cell.bias_ih, cell.bias_hh]
    if isinstance(cell, LSTMCell):
        h0, c0 = state  # (B, H) each
        out, h_n, c_n = torch.lstm(
            x, (h0.unsqueeze(0), c0.unsqueeze(0)), weights, has_biases, 1, 0.0, False, False, False
        )
        return out, (h_n.squeeze(0), c_n.squeeze(0))  # (T, B, H), ((B, H), (B, H))
    if isinstance(cell, GRUCell):
        run = torch.gru
    else:
        run = torch.rnn_tanh if cell.nonlinearity == "tanh" else torch.rnn_relu
    out, h_n = run(x, state.unsqueeze(0), weights, has_biases, 1, 0.0, False, False, False)
    return out, h_n.squeeze(0)  # (T, B, H), (B, H)


def _run_scan(cell: RecurrentCell, xp: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
    """The reference loop's recurrence as one ``scan``: xp ``(T, B, G)``, mask ``(T, B, 1)`` or None.
    As :func:`~rnnkit.kernels.reference.loop.run_steps`: past a sequence's end its state is frozen
    and its output is zero."""
    cell = cell.for_sequence(xp.shape[1], xp.device, xp.dtype)

    if mask is None:

        def step(carry: State, xp_t: Tensor) -> tuple[State, Tensor]:  # (B, G)
            new = cell.advance(xp_t, carry)
            return new, cell.output(new).clone()  # the output must not alias the carry

        final, outputs = scan(step, state, xp)
        return outputs, final

    def masked_step(carry: State, inputs: tuple[Tensor, Tensor]) -> tuple[State, Tensor]:
        xp_t, m_t = inputs  # (B, G), (B, 1)
        new = map_state(lambda n, o: torch.where(m_t, n, o), cell.advance(xp_t, carry), carry)
        return new, cell.output(new).masked_fill(~m_t, 0.0)

    final, outputs = scan(masked_step, state, (xp, mask))
    return outputs, final


def run_for_onnx(cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
    """One direction of one layer over its (already direction-ordered) input x ``(T, B, I)``, as
    the ONNX exporter can translate it: ``(outputs (T, B, O), final state)``."""
    # ONNX's LSTM/GRU nodes as the dynamo exporter writes them keep the traced length (so does
    # torch.nn.LSTM's export in torch 2.13): with a dynamic time dimension the cell runs as a Scan
    static_length = isinstance(x.shape[0], int) or torch.jit.is_tracing()
    if mask is None and static_length and _standard_operator(cell):
        return _run_standard(cell, x, state)
    xp = cell.project_input(x)  # (T, B, G)
    if torch.jit.is_tracing():  # the TorchScript-based exporter: no scan, the loop is unrolled
        return run_cell(cell, xp, state, mask)
    return _run_scan(cell, xp, state, mask)
