"""What a many-to-one model reads from a whole sequence: the recurrent output pooled over time
(``pool_over_time``) and, beside it, an optional convolutional branch (``ConvBranch``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

POOLS = ("last", "mean", "max")


def valid_mask(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor | None:
    """``(B, T, 1)`` bool, True at each sequence's valid steps (``t < lengths[b]``); None without
    lengths."""
    if lengths is None:
        return None
    steps_range = torch.arange(steps, device=device)  # (T,)
    return (steps_range[None, :] < lengths.to(device)[:, None]).unsqueeze(-1)  # (B, T, 1)


def last_valid_step(out: Tensor, lengths: Tensor | None, num_directions: int) -> Tensor:
    """The summary of each sequence from a ``(B, T, D*O)`` output: the forward direction's output at
    its last valid step (``lengths - 1``), and the reverse direction's at step 0 (where it ends)."""
    batch = out.shape[0]
    if lengths is None:
        forward = out[:, -1]
    else:
        forward = out[torch.arange(batch, device=out.device), lengths.to(out.device) - 1]  # (B, D*O)
    if num_directions == 1:
        return forward
    width = out.shape[-1] // num_directions
    return torch.cat([forward[:, :width], out[:, 0, width:]], dim=-1)


def pool_over_time(out: Tensor, lengths: Tensor | None, how: str, num_directions: int = 1) -> Tensor:
    """``(B, T, W)`` per-step outputs -> ``(B, W)``, over each sequence's valid steps only.

    ``how``: ``"last"`` the output where each direction ends (:func:`last_valid_step`), ``"mean"``
    (1/len) sum_t o_t, ``"max"`` max_t o_t per feature."""
    if how == "last":
        return last_valid_step(out, lengths, num_directions)
    mask = valid_mask(lengths, out.shape[0], out.shape[1], out.device)  # (B, T, 1)
    if how == "mean":
        if mask is None:
            return out.mean(1)
        return (out * mask).sum(1) / lengths.to(out.device, out.dtype)[:, None]
    if how == "max":
        if mask is None:
            return out.amax(1)
        return out.masked_fill(~mask, float("-inf")).amax(1)
    raise ValueError(f"pool must be one of {list(POOLS)}, got {how!r}")


class ConvBranch(nn.Module):
    """A fully convolutional view of the sequence, read beside the recurrent encoder (the FCN of
    Wang, Yan & Oates 2017, the convolutional half of LSTM-FCN, Karim et al. 2017).

    Each block is a ``Conv1d`` over time ("same" padding, so the output keeps T steps), batch
    normalization and ReLU; the last block's channels are averaged over each sequence's valid steps:
    ``(B, T, F) -> (B, channels[-1])``. Steps past a sequence's length are zeroed in the input and
    after every block, so a padded batch reads as each sequence alone with zero padding (batch
    normalization's training statistics still count them).

    Args:
        input_size: features F per step.
        channels: output channels of each block.
        kernel_sizes: kernel width (steps) of each block, one per entry of ``channels``.
    """

    def __init__(
        self,
        input_size: int,
        channels: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
    ) -> None:
        super().__init__()
        channels, kernel_sizes = list(channels), list(kernel_sizes)
        if input_size < 1:
            raise ValueError(f"ConvBranch: input_size must be >= 1, got {input_size}")
        if not channels or len(channels) != len(kernel_sizes):
            raise ValueError(
                f"ConvBranch: channels and kernel_sizes need one entry per block (at least one), "
                f"got {len(channels)} channels {channels} and {len(kernel_sizes)} kernel_sizes {kernel_sizes}"
            )
        if min(channels) < 1 or min(kernel_sizes) < 1:
            raise ValueError(
                f"ConvBranch: every channel count and kernel size must be >= 1, "
                f"got {channels} and {kernel_sizes}"
            )
        widths = [input_size, *channels]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                # "same" padding written out: (k-1)//2 zeros before, the rest after (no copy warning)
                nn.ConstantPad1d(((kernel_sizes[i] - 1) // 2, kernel_sizes[i] // 2), 0.0),
                nn.Conv1d(widths[i], widths[i + 1], kernel_sizes[i]),
                nn.BatchNorm1d(widths[i + 1]),
                nn.ReLU(),
            )
            for i in range(len(channels))
        )
        self.input_size = input_size
        self.output_size = channels[-1]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x (B, T, F)``, optional ``lengths (B,)`` -> ``(B, channels[-1])``."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"ConvBranch: x must be (batch, steps, {self.input_size}), got {tuple(x.shape)}")
        mask = valid_mask(lengths, x.shape[0], x.shape[1], x.device)  # (B, T, 1)
        mask = None if mask is None else mask.transpose(1, 2)  # (B, 1, T)
        h = x.transpose(1, 2)  # (B, F, T)
        if mask is not None:
            h = h * mask  # whatever the padding holds, the convolutions read zeros there
        for block in self.blocks:
            h = block(h)  # (B, C, T)
            if mask is not None:
                h = h * mask
        return pool_over_time(h.transpose(1, 2), lengths, "mean")  # (B, C)
