"""Elman RNN layer, a drop-in for torch.nn.RNN."""

from __future__ import annotations

import torch

from rnnkit.nn.torch_layout import RNNBase

MODES = {"tanh": "RNN_TANH", "relu": "RNN_RELU", "sigmoid": "RNN_SIGMOID"}  # torch.nn.RNN's ``mode``


class RNN(RNNBase):
    r"""Multi-layer Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), as :class:`torch.nn.RNN`.

    Args: as ``torch.nn.RNN`` (input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
    dropout, bidirectional, device, dtype); ``nonlinearity`` also takes ``"sigmoid"``.
    ``backend`` picks the implementation (``"auto"``, ``"reference"``, ``"native"``, ``"triton"``; see
    :mod:`rnnkit.kernels`). ``zoneout`` and ``recurrent_dropout`` (rnnkit's, off by default) regularize
    every cell in training (see :class:`~rnnkit.cells.RecurrentCell`); both run inside the fused
    kernels of LSTM and GRU as well as in the reference loop.

    Shapes: input ``(T, B, I)`` / ``(B, T, I)`` / ``(T, I)`` / PackedSequence; h_0 ``(L*D, B, H)``;
    returns output ``(T, B, D*H)`` and h_n ``(L*D, B, H)``. Parameters ``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (+ ``_reverse``).
    """

    _INPUT_DIMS_ERROR = "{name}: Expected input to be 2D or 3D, got {dim}D tensor instead"  # torch's words

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        if proj_size is not None:  # torch's RNNBase: projections are an LSTM feature
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in MODES:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'. "
                "(rnnkit also takes 'sigmoid')"
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            MODES[nonlinearity],
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            backend,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )
