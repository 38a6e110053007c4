"""Sequence lengths as the fused recurrences take them."""

from __future__ import annotations

import torch
from torch import Tensor


def full_lengths(xp: Tensor, lengths: Tensor | None, dtype: torch.dtype = torch.long) -> Tensor:
    """``(B,)`` lengths on ``xp``'s device: the given ones, or T for every sequence of ``xp (T, B, G)``."""
    steps, batch = xp.shape[:2]
    if lengths is None:
        return torch.full((batch,), steps, dtype=dtype, device=xp.device)
    return lengths.to(device=xp.device, dtype=dtype)


def step_mask(lengths: Tensor, steps: int) -> Tensor | None:
    """``(T, B, 1)`` bool, True where step t of sequence b is real; None when every sequence is full."""
    if bool((lengths >= steps).all()):
        return None
    return (torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]).unsqueeze(-1)
