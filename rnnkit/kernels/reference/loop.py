"""The code base's one time loop: any :class:`~rnnkit.cells.RecurrentCell` stepped over time.

This is the ``reference`` backend (autograd through every step) and the definition every fused
backend is tested against: the ``compiled`` backend compiles :func:`run_steps` in chunks, and the
fused ops' higher-order gradients re-run :func:`run_cell` (:mod:`.double_backward`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State, map_state
from rnnkit.kernels.reference.probe import StateGradientProbe, active_probe


def run_cell(
    cell: RecurrentCell, xp: Tensor, state: State, mask: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell.advance`` (``step`` + zoneout) over the time axis of a projected input.

    Args:
        cell: the cell; its ``project_input`` has already been applied.
        xp: projected input ``(T, B, G)``.
        state: initial state, leaves ``(B, S)``.
        mask: optional ``(T, B, 1)`` bool, True where step t of sequence b is real. Past a sequence's
            end its state is frozen and its output is zero, as for a ``PackedSequence`` in torch.

    Returns:
        ``(outputs (T, B, O), final state)``.
    """
    # this sequence's recurrent-dropout and zoneout masks, if any (drawn as the fused kernels draw them)
    cell = cell.for_sequence(xp.shape[1], xp.device, xp.dtype, steps=xp.shape[0])
    probe = active_probe()  # measuring dL/dh_t (rnnkit.nn.probe): a zero tap per step
    if probe is not None:
        probe.start_sequence()
    return run_steps(cell, xp, state, mask, probe)


def run_steps(
    cell: RecurrentCell,
    xp: Tensor,
    state: State,
    mask: Tensor | None = None,
    probe: StateGradientProbe | None = None,
) -> tuple[Tensor, State]:
    """The time loop proper, for a cell already bound to its sequence (:meth:`~RecurrentCell.for_sequence`).

    :func:`run_cell` runs it over a whole sequence; the ``compiled`` backend
    (:mod:`rnnkit.kernels.compiled.cell`) compiles it over chunks of a few steps. Arguments and
    result as :func:`run_cell`; ``probe`` taps every step's state.
    """
    outputs = []
    # unbind (not xp[t]): indexing would make backward build a full-size zero tensor per step.
    steps = xp.unbind(0)
    keeps = cell.zoneout_steps(len(steps))  # zoneout masks drawn with the sequence, or None per step
    if mask is None:
        for xp_t, keep in zip(steps, keeps, strict=True):  # (B, G)
            state = cell.advance(xp_t, state, keep)
            if probe is not None:
                state = probe.tap(state)
            outputs.append(cell.output(state))
        return torch.stack(outputs), state
    for xp_t, m_t, keep in zip(steps, mask.unbind(0), keeps, strict=True):  # (B, G), (B, 1)
        new = cell.advance(xp_t, state, keep)
        state = map_state(lambda n, o, m=m_t: torch.where(m, n, o), new, state)
        if probe is not None:
            state = probe.tap(state)
        outputs.append(cell.output(state))
    return torch.stack(outputs).masked_fill(~mask, 0.0), state
