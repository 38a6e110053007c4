"""Time-delay neural network: the non-recurrent baseline of the "why recurrence" comparison."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import activation


class TDNN(nn.Module):
    r"""Time-delay network: the output at t sees only the inputs x_{t-k}, ..., x_t, through an MLP.

    y_t = MLP([x_{t-k}, ..., x_{t-1}, x_t]); inputs before the start are zeros, or the ``k`` frames
    passed as ``hx`` (so a long sequence can be processed in chunks). It has the recurrent layers'
    interface: ``forward(input, hx=None) -> (output, h_n)``, where h_n holds the last k input frames.

    Args:
        input_size: features I of x_t.
        hidden_size: width H of each MLP layer (and of the output).
        delay: k, how many past steps the window holds (window = k + 1 frames).
        num_layers: MLP layers, each ``Linear`` + nonlinearity.
        nonlinearity: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"``.
        batch_first: input and output are ``(B, T, *)``.
        dropout: dropout between MLP layers in training mode.
        bidirectional: must be False; accepted so one config can describe every encoder.

    Shapes: input ``(T, B, I)`` (or batch_first, or unbatched ``(T, I)``); hx ``(k, B, I)``;
    output ``(T, B, H)``; h_n ``(k, B, I)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        delay: int = 2,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if bidirectional:
            raise ValueError(
                "TDNN is causal: bidirectional must be false (the argument exists for config parity)"
            )
        if not isinstance(delay, int) or delay < 0:
            raise ValueError(f"delay must be a non-negative integer, got {delay!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.num_directions = 1
        self.delay = delay
        self.num_layers = num_layers
        self.batch_first = batch_first
        activation(nonlinearity)  # unknown names fail here; the module keeps the name
        self.nonlinearity = nonlinearity
        self.dropout = dropout
        widths = [(delay + 1) * input_size] + [hidden_size] * num_layers
        self.layers = nn.ModuleList(
            nn.Linear(a, b, device=device, dtype=dtype) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(
        self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """As the recurrent layers: ``lengths (B,)`` marks padding; padded outputs are zero and h_n
        holds each sequence's last k valid frames."""
        if input.dim() not in (2, 3):
            raise ValueError(f"TDNN: Expected input to be 2D or 3D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"TDNN: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.size(-1)}"
            )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[:2]
        if hx is None:
            hx = x.new_zeros(self.delay, batch, self.input_size)
        else:
            hx = hx if batched else hx.unsqueeze(1)
            if tuple(hx.shape) != (self.delay, batch, self.input_size):
                raise RuntimeError(
                    f"TDNN: Expected hx size {(self.delay, batch, self.input_size)}, got {list(hx.shape)}"
                )
        padded = torch.cat([hx, x], dim=0)  # (k + T, B, I)
        # window t holds frames t .. t+k of padded = x_{t-k} .. x_t: (T, B, I, k+1) -> (T, B, (k+1) I)
        windows = padded.unfold(0, self.delay + 1, 1).transpose(-1, -2).reshape(steps, batch, -1)
        out = windows
        act = activation(self.nonlinearity)
        for i, layer in enumerate(self.layers):
            out = act(layer(out))  # (T, B, H)
            if self.dropout and self.training and i < self.num_layers - 1:
                out = nn.functional.dropout(out, self.dropout, training=True)
        if lengths is None:
            h_n = padded[padded.shape[0] - self.delay :]  # last k frames (k, B, I)
        else:
            if not batched:
                raise ValueError("lengths needs batched input: got unbatched (2-D) input")
            lengths = torch.as_tensor(lengths, device=x.device)
            if lengths.shape != (batch,) or int(lengths.min()) < 1 or int(lengths.max()) > steps:
                raise ValueError(f"lengths must have shape ({batch},) with values in [1, {steps}]")
            valid = torch.arange(steps, device=x.device)[:, None] < lengths[None, :]  # (T, B)
            out = out * valid.unsqueeze(-1)
            # frames len .. len+k-1 of padded are x_{len-k} .. x_{len-1}
            index = lengths[None, :] + torch.arange(self.delay, device=x.device)[:, None]  # (k, B)
            h_n = padded.gather(0, index.unsqueeze(-1).expand(-1, -1, self.input_size))
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n
