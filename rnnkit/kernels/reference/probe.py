"""Measure dL/dh_t at every time step: the gradient that flows back through time into each state.

Within ``with StateGradientProbe() as probe:``, every recurrent layer runs the reference loop and adds
a zero tensor d_t (requiring grad) to the first part of its state after each step: h_t' = h_t + d_t.
The forward numbers are unchanged, and dL/dd_t is exactly the total dL/dh_t, the part that reaches
h_t directly from the loss plus the part that comes back from every later step (the quantity whose
vanishing or explosion seeds 000, 003 and 004 discuss). ``probe.taps[k]`` holds the d_t of the k-th
(layer, direction) run, in the order the layers ran; take their gradients with
``torch.autograd.grad(loss, probe.taps[k])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import State

# the probes entered and not yet left (a plain list: torch.compile traces reads of it, not of ContextVars)
_ACTIVE: list[StateGradientProbe] = []


class StateGradientProbe:
    """Context manager recording one zero "tap" per time step of every recurrent layer it sees."""

    def __init__(self) -> None:
        self.taps: list[list[Tensor]] = []

    def __enter__(self) -> StateGradientProbe:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)

    def start_sequence(self) -> None:
        self.taps.append([])

    def tap(self, state: State) -> State:
        """The state with a zero, gradient-requiring tensor added to its first part (h_t)."""
        h = state if isinstance(state, Tensor) else state[0]
        delta = torch.zeros_like(h, requires_grad=True)
        self.taps[-1].append(delta)
        return h + delta if isinstance(state, Tensor) else (h + delta, *state[1:])


def active_probe() -> StateGradientProbe | None:
    """The innermost probe entered, or None (the common case: no measurement)."""
    return _ACTIVE[-1] if _ACTIVE else None
