"""Gated recurrent unit cell."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.registry import register_cell


@register_cell("gru")
class GRUCell(RecurrentCell):
    r"""Gated recurrent unit, a drop-in for :class:`torch.nn.GRUCell`.

    Gates in torch's order r, z, n::

        r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
        z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
        n_t = tanh (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))  candidate state
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}                       hidden state

    Args: as ``torch.nn.GRUCell`` (input_size, hidden_size, bias, device, dtype);
    zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(3H, I)``, weight_hh ``(3H, H)``, bias_ih ``(3H)``, bias_hh ``(3H)``,
    all ~ U(-1/sqrt(H), 1/sqrt(H)).

    Shapes: input ``(B, I)`` or ``(I)``; hx and output ``(B, H)`` or ``(H)``.
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
        factory = {"device": device, "dtype": dtype}
        # allocated before any check, as torch does: a bad size fails with torch's own error
        weight_ih = torch.empty((3 * hidden_size, input_size), **factory)
        weight_hh = torch.empty((3 * hidden_size, hidden_size), **factory)
        super().__init__(input_size, hidden_size, zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        self.bias = bias
        self.weight_ih = nn.Parameter(weight_ih)
        self.weight_hh = nn.Parameter(weight_hh)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()

    def project_input(self, x: Tensor) -> Tensor:
        # W_i{r,z,n} x_t + b_i{r,z,n}: (*, I) -> (*, 3H). b_hn stays in the step (it is gated by r_t).
        return torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, h_prev: Tensor) -> Tensor:
        h_in = self.recurrent_input(h_prev)  # the carry below uses h_prev itself
        if self.bias_hh is None:
            gh = torch.matmul(h_in, self.weight_hh.t())  # (B, 3H)
        else:
            gh = torch.addmm(self.bias_hh, h_in, self.weight_hh.t())  # (B, 3H)
        xr, xz, xn = xp.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r_t = torch.sigmoid(xr + hr)  # reset gate
        z_t = torch.sigmoid(xz + hz)  # update gate
        n_t = torch.tanh(xn + r_t * hn)  # candidate state
        return n_t + z_t * (h_prev - n_t)  # (1 - z) * n + z * h_{t-1}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
