"""Layer-normalized LSTM and GRU cells (Ba, Kiros & Hinton 2016; the variant Haste ships)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import layer_norm

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.registry import register_cell


def _normalized(x: Tensor, gain: Tensor, bias: Tensor | None = None) -> Tensor:
    """LN(x) = gain * (x - mean) / std + bias over the last dimension (eps 1e-5, as nn.LayerNorm)."""
    return layer_norm(x, (x.shape[-1],), gain, bias, eps=1e-5)


@register_cell("layernorm_lstm")
class LayerNormLSTMCell(RecurrentCell):
    r"""LSTM with layer normalization of the gate pre-activations and of the cell state.

    The lecture's LSTM with each of the two products normalized on its own, and C_t normalized
    before the output (Ba et al. 2016, section 6; Haste's ``LayerNormLSTM``)::

        a_t  = LN_x(W_x x_t) + LN_h(W_h h_{t-1}) + b       (4H: the i, f, C~, o blocks)
        f_t  = sigma(a_f)      i_t = sigma(a_i)      C~_t = tanh(a_C)      o_t = sigma(a_o)
        C_t  = f_t * C_{t-1} + i_t * C~_t                  (the carried cell state is not normalized)
        h_t  = o_t * tanh(LN_C(C_t))

    LN_x and LN_h have a gain (no shift: ``b`` is the shift); LN_C has a gain and a shift.
    LN_x(W_x x_t) + b depends on x_t only, so it is hoisted out of the time loop with the projection.

    Args:
        input_size, hidden_size, bias, device, dtype: as :class:`~rnnkit.cells.LSTMCell`.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(4H, I)``, weight_hh ``(4H, H)``, bias ``(4H)`` ~ U(-1/sqrt(H), 1/sqrt(H));
    layernorm_ih_weight, layernorm_hh_weight ``(4H)`` = 1; layernorm_cell_weight ``(H)`` = 1,
    layernorm_cell_bias ``(H)`` = 0.

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
        self.layernorm_ih_weight = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        self.layernorm_hh_weight = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        self.layernorm_cell_weight = nn.Parameter(torch.empty(hidden_size, **factory))
        self.layernorm_cell_bias = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()  # weights and bias; then the normalizations start as the identity
        for gain in (self.layernorm_ih_weight, self.layernorm_hh_weight, self.layernorm_cell_weight):
            nn.init.ones_(gain)
        nn.init.zeros_(self.layernorm_cell_bias)

    def project_input(self, x: Tensor) -> Tensor:
        # LN_x(W_x x_t) + b for every step at once: (*, I) -> (*, 4H)
        return _normalized(torch.matmul(x, self.weight_ih.t()), self.layernorm_ih_weight, self.bias_ih)

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_prev, c_prev = state  # (B, H), (B, H)
        recurrent = torch.matmul(self.recurrent_input(h_prev), self.weight_hh.t())  # (B, 4H)
        gates = xp + _normalized(recurrent, self.layernorm_hh_weight)  # a_t
        i_pre, f_pre, c_pre, o_pre = gates.chunk(4, dim=1)
        f_t = torch.sigmoid(f_pre)  # forget gate
        i_t = torch.sigmoid(i_pre)  # input gate
        c_tilde = torch.tanh(c_pre)  # candidate cell state C~_t
        c_t = f_t * c_prev + i_t * c_tilde  # cell update C_t
        o_t = torch.sigmoid(o_pre)  # output gate
        h_t = o_t * torch.tanh(_normalized(c_t, self.layernorm_cell_weight, self.layernorm_cell_bias))
        return h_t, c_t

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


@register_cell("layernorm_gru")
class LayerNormGRUCell(RecurrentCell):
    r"""GRU with layer normalization of its input and recurrent products (Ba et al. 2016)::

        a_t = LN_x(W_x x_t) + b_x       g_t = LN_h(W_h h_{t-1}) + b_h       (3H: r, z, n blocks)
        r_t = sigma(a_r + g_r)          z_t = sigma(a_z + g_z)
        n_t = tanh(a_n + r_t * g_n)     h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    The gate order and the placement of b_hn inside r_t * (.) are torch's GRU's; LN_x(W_x x_t) + b_x
    is hoisted out of the time loop.

    Args:
        input_size, hidden_size, bias, device, dtype: as :class:`~rnnkit.cells.GRUCell`.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(3H, I)``, weight_hh ``(3H, H)``, bias_ih, bias_hh ``(3H)`` ~
    U(-1/sqrt(H), 1/sqrt(H)); layernorm_ih_weight, layernorm_hh_weight ``(3H)`` = 1.

    Shapes: input ``(B, I)`` or ``(I)``; state h ``(B, H)`` or ``(H)``.
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
        super().__init__(input_size, hidden_size, zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory)) if bias else None
        self.layernorm_ih_weight = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        self.layernorm_hh_weight = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()  # weights and biases; then the normalizations start as the identity
        nn.init.ones_(self.layernorm_ih_weight)
        nn.init.ones_(self.layernorm_hh_weight)

    def project_input(self, x: Tensor) -> Tensor:
        # LN_x(W_x x_t) + b_x: (*, I) -> (*, 3H)
        return _normalized(torch.matmul(x, self.weight_ih.t()), self.layernorm_ih_weight, self.bias_ih)

    def step(self, xp: Tensor, h_prev: Tensor) -> Tensor:
        recurrent = torch.matmul(self.recurrent_input(h_prev), self.weight_hh.t())  # (B, 3H)
        gh = _normalized(recurrent, self.layernorm_hh_weight, self.bias_hh)  # g_t
        xr, xz, xn = xp.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r_t = torch.sigmoid(xr + hr)  # reset gate
        z_t = torch.sigmoid(xz + hz)  # update gate
        n_t = torch.tanh(xn + r_t * hn)  # candidate state
        return n_t + z_t * (h_prev - n_t)  # (1 - z) * n + z * h_{t-1}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
