"""LSTM layer, a drop-in for torch.nn.LSTM."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.nn.torch_layout import RNNBase


class LSTM(RNNBase):
    r"""Multi-layer LSTM (the gate-by-gate :class:`~rnnkit.cells.LSTMCell`), as :class:`torch.nn.LSTM`.

    Args: as ``torch.nn.LSTM`` (input_size, hidden_size, num_layers, bias, batch_first, dropout,
    bidirectional, proj_size, device, dtype).
    ``backend`` picks the implementation (``"auto"``, ``"reference"``, ``"native"``, ``"triton"``; see
    :mod:`rnnkit.kernels`). ``zoneout`` and ``recurrent_dropout`` (rnnkit's, off by default) regularize
    every cell in training (see :class:`~rnnkit.cells.RecurrentCell`); both run inside the fused
    kernels of LSTM and GRU as well as in the reference loop.

    Shapes: input ``(T, B, I)`` / ``(B, T, I)`` / ``(T, I)`` / PackedSequence; (h_0, c_0) with h_0
    ``(L*D, B, P or H)`` and c_0 ``(L*D, B, H)``; returns output ``(T, B, D*(P or H))`` and
    ``(h_n, c_n)`` shaped like (h_0, c_0). Parameters ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``weight_hr_l{k}`` (+ ``_reverse``).
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
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            backend,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
        )

    def get_expected_cell_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        """``(L*D, B, H)`` of c_0, as ``torch.nn.LSTM``."""
        return self._expected_state_sizes(self._mini_batch(input, batch_sizes))[1]
