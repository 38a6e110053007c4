"""LSTM cell, written gate by gate as in the lecture notes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.registry import register_cell
from rnnkit.cells.rnn import linear_with_both_biases

GATES = ("i", "f", "g", "o")  # torch's row order in the fused weights


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    r"""Long short-term memory cell, a drop-in for :class:`torch.nn.LSTMCell`.

    The six equations of the lecture notes, over the concatenation [h_{t-1}, x_t]::

        f_t  = sigma(W_f [h_{t-1}, x_t] + b_f)      forget gate
        i_t  = sigma(W_i [h_{t-1}, x_t] + b_i)      input gate
        C~_t = tanh (W_C [h_{t-1}, x_t] + b_C)      candidate cell state
        C_t  = f_t * C_{t-1} + i_t * C~_t           cell update
        o_t  = sigma(W_o [h_{t-1}, x_t] + b_o)      output gate
        h_t  = o_t * tanh(C_t)                      hidden state

    Storage follows torch so state dicts interchange: each W_* is split into an input block (a
    row block of ``weight_ih``) and a recurrent block (of ``weight_hh``), each b_* into
    ``bias_ih + bias_hh``, and the four gates are stacked in torch's order i, f, g (= C~), o.
    :meth:`gate_weights` returns the per-gate blocks by their textbook names.

    With ``proj_size = P > 0`` (as in ``torch.nn.LSTM``) the hidden state is projected,
    h_t = W_hr (o_t * tanh(C_t)), and ``weight_hh`` is ``(4H, P)``.

    Args:
        input_size: features I of x_t.
        hidden_size: features H of C_t (and of h_t unless projected).
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        proj_size: P, 0 for none.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(4H, I)``, weight_hh ``(4H, H or P)``, bias_ih ``(4H)``, bias_hh ``(4H)``,
    weight_hr ``(P, H)`` when projected; all ~ U(-1/sqrt(H), 1/sqrt(H)).

    Shapes: input ``(B, I)`` or ``(I)``; state ``(h, c)`` with h ``(B, H or P)``, c ``(B, H)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        if proj_size < 0:  # torch.nn.LSTM's checks and words
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size and proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        h_size = proj_size or hidden_size
        factory = {"device": device, "dtype": dtype}
        # allocated before any check, as torch does: a bad size fails with torch's own error
        weight_ih = torch.empty((4 * hidden_size, input_size), **factory)
        weight_hh = torch.empty((4 * hidden_size, h_size), **factory)
        super().__init__(
            input_size,
            hidden_size,
            state_size=(h_size, hidden_size),
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )
        self.bias = bias
        self.proj_size = proj_size
        self.weight_ih = nn.Parameter(weight_ih)
        self.weight_hh = nn.Parameter(weight_hh)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **factory))
        else:
            self.register_parameter("weight_hr", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()

    def project_input(self, x: Tensor) -> Tensor:
        # the x_t half of every gate at once: W_{i,f,C,o} x_t + b: (*, I) -> (*, 4H)
        return linear_with_both_biases(x, self.weight_ih, self.bias_ih, self.bias_hh)

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_prev, c_prev = state  # (B, H or P), (B, H)
        gates = torch.addmm(
            xp, self.recurrent_input(h_prev), self.weight_hh.t()
        )  # (B, 4H): W [h_{t-1}, x_t] + b
        i_pre, f_pre, c_pre, o_pre = gates.chunk(4, dim=1)
        f_t = torch.sigmoid(f_pre)  # forget gate
        i_t = torch.sigmoid(i_pre)  # input gate
        c_tilde = torch.tanh(c_pre)  # candidate cell state C~_t
        c_t = f_t * c_prev + i_t * c_tilde  # cell update C_t
        o_t = torch.sigmoid(o_pre)  # output gate
        h_t = o_t * torch.tanh(c_t)  # hidden state
        if self.weight_hr is not None:
            h_t = torch.matmul(h_t, self.weight_hr.t())  # projection (B, P)
        return h_t, c_t

    def gate_weights(self, gate: str) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(W_x, W_h, b)`` of one gate by its textbook name: ``"f"``, ``"i"``, ``"C"`` or ``"o"``.

        ``W_gate [h_{t-1}, x_t] = W_h h_{t-1} + W_x x_t``; the blocks are views of the fused weights.
        """
        names = {"i": 0, "f": 1, "C": 2, "g": 2, "o": 3}
        if gate not in names:
            raise ValueError(f"gate must be one of 'f', 'i', 'C', 'o', got {gate!r}")
        rows = slice(names[gate] * self.hidden_size, (names[gate] + 1) * self.hidden_size)
        b = None if self.bias_ih is None else self.bias_ih[rows] + self.bias_hh[rows]
        return self.weight_ih[rows], self.weight_hh[rows], b

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s
