"""Elman (basic) RNN cell."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, find_activation
from rnnkit.cells.registry import register_cell


@register_cell("rnn")
class RNNCell(RecurrentCell):
    r"""Elman RNN cell, a drop-in for :class:`torch.nn.RNNCell`.

    The lecture's basic RNN, s_t = tanh(W . [x_t, s_{t-1}] + b), with W split into its input and
    recurrent blocks and torch's two biases::

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

    Args:
        input_size: features I of x_t.
        hidden_size: features H of h_t.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` (default), ``"relu"``, or ``"sigmoid"`` (the logistic "logsig" of
            the classic BPTT derivation). As in torch, an unknown name raises at the first step.
        zoneout, recurrent_dropout: training regularizers, see :class:`~rnnkit.cells.RecurrentCell`.

    Parameters (names, shapes and init as torch: U(-1/sqrt(H), 1/sqrt(H))):
        weight_ih ``(H, I)``, weight_hh ``(H, H)``, bias_ih ``(H)``, bias_hh ``(H)``.

    Shapes: input ``(B, I)`` or ``(I)``; hx and output ``(B, H)`` or ``(H)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        factory = {"device": device, "dtype": dtype}
        # allocated before any check, as torch does: a bad size fails with torch's own error
        weight_ih = torch.empty((1 * hidden_size, input_size), **factory)  # 1 gate, as torch's shapes
        weight_hh = torch.empty((1 * hidden_size, hidden_size), **factory)
        super().__init__(input_size, hidden_size, zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        self.nonlinearity = nonlinearity  # a name, looked up per step (torch raises on unknown at forward)
        self.bias = bias
        self.weight_ih = nn.Parameter(weight_ih)
        self.weight_hh = nn.Parameter(weight_hh)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(1 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(1 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_uniform()

    def project_input(self, x: Tensor) -> Tensor:
        # W_ih x_t + b_ih + b_hh for every step at once: (*, I) -> (*, H)
        return linear_with_both_biases(x, self.weight_ih, self.bias_ih, self.bias_hh)

    def step(self, xp: Tensor, h: Tensor) -> Tensor:
        act = find_activation(self.nonlinearity)
        if act is None:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return act(torch.addmm(xp, self.recurrent_input(h), self.weight_hh.t()))  # (B, H)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"  # torch's repr: no quotes
        return s


def linear_with_both_biases(
    x: Tensor, weight: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None
) -> Tensor:
    """``x W^T + b_ih + b_hh``: torch cells add both biases before the nonlinearity, so when the
    recurrent product needs no separate bias they fold into the hoisted input projection."""
    bias = both_biases(bias_ih, bias_hh)
    if bias is None:
        return torch.matmul(x, weight.t())
    return torch.nn.functional.linear(x, weight, bias)


def both_biases(bias_ih: Tensor | None, bias_hh: Tensor | None) -> Tensor | None:
    """``b_ih + b_hh``, the one bias a step adds before its nonlinearity (None for ``bias=False``)."""
    return None if bias_ih is None else bias_ih + bias_hh
