"""LSTM with peephole connections (Gers & Schmidhuber 2000)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.registry import register_cell
from rnnkit.cells.rnn import linear_with_both_biases


@register_cell("peephole_lstm")
class PeepholeLSTMCell(RecurrentCell):
    r"""LSTM whose gates also look at the cell state ("peepholes", diagonal weights p_*)::

        i_t  = sigma(W_i [h_{t-1}, x_t] + p_i * C_{t-1} + b_i)      input gate sees C_{t-1}
        f_t  = sigma(W_f [h_{t-1}, x_t] + p_f * C_{t-1} + b_f)      forget gate sees C_{t-1}
        C~_t = tanh (W_C [h_{t-1}, x_t] + b_C)
        C_t  = f_t * C_{t-1} + i_t * C~_t
        o_t  = sigma(W_o [h_{t-1}, x_t] + p_o * C_t + b_o)          output gate sees the new C_t
        h_t  = o_t * tanh(C_t)

    With the peephole weights at zero it is :class:`~rnnkit.cells.LSTMCell`; ``weight_ih``,
    ``weight_hh`` and the biases keep torch's layout and gate order (i, f, g, o), so an
    ``nn.LSTMCell`` state dict loads with ``strict=False`` and leaves only the peepholes to learn.

    Args:
        input_size, hidden_size, bias, device, dtype: as :class:`~rnnkit.cells.LSTMCell`.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(4H, I)``, weight_hh ``(4H, H)``, bias_ih, bias_hh ``(4H)``, weight_ci,
    weight_cf, weight_co ``(H)`` (p_i, p_f, p_o); all ~ U(-1/sqrt(H), 1/sqrt(H)).

    Shapes: input ``(B, I)`` or ``(I)``; state ``(h, C)``, each ``(B, H)`` or ``(H)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            state_size=(hidden_size, hidden_size),
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        self.weight_ci = nn.Parameter(torch.empty(hidden_size, **factory))
        self.weight_cf = nn.Parameter(torch.empty(hidden_size, **factory))
        self.weight_co = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()

    def project_input(self, x: Tensor) -> Tensor:
        # W_{i,f,C,o} x_t + b for every step at once: (*, I) -> (*, 4H)
        return linear_with_both_biases(x, self.weight_ih, self.bias_ih, self.bias_hh)

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_prev, c_prev = state  # (B, H), (B, H)
        gates = torch.addmm(xp, self.recurrent_input(h_prev), self.weight_hh.t())  # (B, 4H)
        i_pre, f_pre, c_pre, o_pre = gates.chunk(4, dim=1)
        i_t = torch.sigmoid(i_pre + self.weight_ci * c_prev)  # input gate, peeping at C_{t-1}
        f_t = torch.sigmoid(f_pre + self.weight_cf * c_prev)  # forget gate, peeping at C_{t-1}
        c_tilde = torch.tanh(c_pre)  # candidate cell state C~_t
        c_t = f_t * c_prev + i_t * c_tilde  # cell update C_t
        o_t = torch.sigmoid(o_pre + self.weight_co * c_t)  # output gate, peeping at C_t
        return o_t * torch.tanh(c_t), c_t

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
