"""Jordan cell: the context fed back is the previous output, not the hidden state."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, activation
from rnnkit.cells.registry import register_cell
from rnnkit.cells.rnn import linear_with_both_biases


@register_cell("jordan")
class JordanCell(RecurrentCell):
    r"""Jordan network cell (output feedback).

    Where Elman's context units copy the hidden layer, Jordan's copy the network's output::

        h_t = act(W_ih x_t + b_ih + W_hh y_{t-1} + b_hh)
        y_t = out_act(W_ho h_t + b_ho)

    The carried state is y (``(B, O)``); ``forward(x, y_prev)`` returns y_t. The classic one-unit
    BPTT example y(t+1) = logsig(w x(t) + g y(t)) is ``JordanCell(1, 1, 1, bias=False,
    nonlinearity="sigmoid")`` with W_ho = 1.

    Args:
        input_size: features I of x_t.
        hidden_size: features H of h_t.
        output_size: features O of y_t (and of the fed-back context).
        bias: whether to learn ``bias_ih``, ``bias_hh`` and ``bias_ho``.
        nonlinearity: act, ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.
        output_nonlinearity: out_act, ``"identity"`` (default) or one of the above.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters: weight_ih ``(H, I)``, weight_hh ``(H, O)``, weight_ho ``(O, H)``, bias_ih ``(H)``,
    bias_hh ``(H)``, bias_ho ``(O)``, all ~ U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        output_nonlinearity: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        if not isinstance(output_size, int) or output_size <= 0:
            raise ValueError(f"output_size must be a positive integer, got {output_size!r}")
        super().__init__(
            input_size,
            hidden_size,
            state_size=output_size,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )
        activation(nonlinearity)  # unknown names fail here; modules keep names, not functions
        activation(output_nonlinearity, "output_nonlinearity")
        self.nonlinearity = nonlinearity
        self.output_nonlinearity = output_nonlinearity
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, output_size, **factory))
        self.weight_ho = nn.Parameter(torch.empty(output_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_ho = nn.Parameter(torch.empty(output_size, **factory))
        else:
            for name in ("bias_ih", "bias_hh", "bias_ho"):
                self.register_parameter(name, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()

    def project_input(self, x: Tensor) -> Tensor:
        return linear_with_both_biases(x, self.weight_ih, self.bias_ih, self.bias_hh)  # (*, H)

    def step(self, xp: Tensor, y_prev: Tensor) -> Tensor:
        h_t = activation(self.nonlinearity)(
            torch.addmm(xp, self.recurrent_input(y_prev), self.weight_hh.t())
        )  # (B, H)
        y_t = torch.nn.functional.linear(h_t, self.weight_ho, self.bias_ho)  # (B, O)
        return activation(self.output_nonlinearity)(y_t)

    def forward(self, input: Tensor, y_prev: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """One step: ``input (B, I)`` or ``(I)``, ``y_prev (B, O)`` -> ``y_t (B, O)``."""
        return super().forward(input, y_prev)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, {self.output_size}, bias={self.bias}, "
            f"nonlinearity={self.nonlinearity!r}, output_nonlinearity={self.output_nonlinearity!r}"
        )
