"""GRU layer, a drop-in for torch.nn.GRU."""

from __future__ import annotations

import torch

from rnnkit.nn.torch_layout import RNNBase


class GRU(RNNBase):
    r"""Multi-layer GRU (:class:`~rnnkit.cells.GRUCell`), as :class:`torch.nn.GRU`.

    Args: as ``torch.nn.GRU`` (input_size, hidden_size, num_layers, bias, batch_first, dropout,
    bidirectional, device, dtype).
    ``backend`` picks the implementation (``"auto"``, ``"reference"``, ``"native"``, ``"triton"``; see
    :mod:`rnnkit.kernels`). ``zoneout`` and ``recurrent_dropout`` (rnnkit's, off by default) regularize
    every cell in training (see :class:`~rnnkit.cells.RecurrentCell`); both run inside the fused
    kernels of LSTM and GRU as well as in the reference loop.

    Shapes: input ``(T, B, I)`` / ``(B, T, I)`` / ``(T, I)`` / PackedSequence; h_0 ``(L*D, B, H)``;
    returns output ``(T, B, D*H)`` and h_n ``(L*D, B, H)``. Parameters ``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (+ ``_reverse``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
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
        super().__init__(
            "GRU",
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
