"""Running a one-way recurrent layer as a decoder that can feed its own outputs back."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State


def feedback_decode(
    decoder: nn.Module,
    head: nn.Module,
    state: State | None,
    steps: int,
    make_input: Callable[[Tensor | None, int], Tensor],
    to_feedback: Callable[[Tensor], Tensor],
    teacher: Tensor | None = None,
    teacher_forcing: float = 0.0,
) -> Tensor:
    """Decode ``steps`` steps, one at a time.

    At step t the decoder reads ``make_input(prev, t)`` (``(B, 1, F)``), where ``prev`` is what is fed
    back: with probability ``teacher_forcing`` (per step) the true previous output ``teacher[:, t-1]``,
    otherwise ``to_feedback(own previous prediction)``; ``None`` at t = 0.

    Returns the head's outputs ``(B, steps, O)``.
    """
    outputs = []
    prev = None
    for t in range(steps):
        out, state = decoder(make_input(prev, t), state)  # (B, 1, H)
        pred = head(out[:, -1])  # (B, O)
        outputs.append(pred)
        use_teacher = teacher is not None and teacher_forcing > 0 and bool(torch.rand(()) < teacher_forcing)
        prev = teacher[:, t] if use_teacher else to_feedback(pred)
    return torch.stack(outputs, dim=1)
