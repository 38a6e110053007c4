"""Higher-order gradients of the fused recurrences: the backward recomputed by the reference cell.

The fused ops (:mod:`rnnkit.kernels.native`, :mod:`rnnkit.kernels.triton`) have a
hand-written first-order backward that is itself not differentiable. When a caller asks for a
differentiable gradient (``torch.autograd.grad(..., create_graph=True)``: ``gradgradcheck``,
gradient penalties, MAML-style inner loops), autograd runs the op's backward with grad mode on.
The ops then call :func:`lstm_vjp` (:func:`lstm_bias_vjp`) / :func:`gru_vjp`, which re-run the
forward with the reference cell (:class:`~rnnkit.cells.LSTMCell` / :class:`~rnnkit.cells.GRUCell` stepped by
:func:`rnnkit.kernels.reference.run_cell`, the code every fused path is tested against) on the op's saved
inputs and return ``torch.autograd.grad(..., create_graph=True)`` of it. The gradients are the same
numbers (to rounding) and carry a graph for the next derivative. The first-order path, the common
case, keeps the fused backward. Cost of the higher-order path: one reference forward per backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import State
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels.lengths import step_mask
from rnnkit.kernels.reference.loop import run_cell
from rnnkit.kernels.zoneout import ZoneoutKeep


class _ReplayedZoneout:
    """A cell's ``zone`` that replays the forward's zoneout weights (:mod:`.zoneout`) step by step:
    the layer's loop calls it once per step, in order."""

    def __init__(self, zone: Tensor) -> None:
        self.keep = ZoneoutKeep(zone)
        self.step = 0

    def __call__(self, new: State, old: State, keep: State | None = None) -> State:  # keep: never drawn
        single = isinstance(new, Tensor)
        pairs = zip((new,) if single else new, (old,) if single else old, strict=True)
        mixed = tuple(
            torch.lerp(n, o, self.keep.weight(self.step, part)) for part, (n, o) in enumerate(pairs)
        )
        self.step += 1
        return mixed[0] if single else mixed


def _cell_on(
    cls: type, hidden: int, drop: Tensor | None, zone: Tensor | None, **weights: Tensor
) -> LSTMCell | GRUCell:
    """A reference cell whose recurrent weights are the given tensors (its own are never allocated),
    with the forward's recurrent-dropout mask and zoneout weights if there were any."""
    cell = cls(1, hidden, device="meta")
    for name, tensor in weights.items():
        cell._parameters[name] = tensor
    if drop is not None and drop.numel() > 0:
        cell.__dict__["_recurrent_mask"] = drop
    if zone is not None and zone.numel() > 0:
        cell.__dict__["zone"] = _ReplayedZoneout(zone)
    return cell


def _vjp(
    cell: LSTMCell | GRUCell,
    xp: Tensor,
    state: Tensor | tuple[Tensor, ...],
    lengths: Tensor,
    inputs: tuple[Tensor, ...],
    grads: tuple[Tensor | None, ...],
) -> tuple[Tensor | None, ...]:
    with torch.enable_grad():
        output, final = run_cell(cell, xp, state, step_mask(lengths, xp.shape[0]))
        outputs = (output, *((final,) if isinstance(final, Tensor) else final))
        pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
        wanted = [t for t in inputs if t.requires_grad]
        if not wanted or not pairs:
            return tuple(None for _ in inputs)
        found = torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True, allow_unused=True
        )
    by_input = iter(found)
    return tuple(next(by_input) if t.requires_grad else None for t in inputs)


def lstm_vjp(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    lengths: Tensor,
    d_output: Tensor | None,
    d_hn: Tensor | None,
    d_cn: Tensor | None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Differentiable ``(d_xp, d_h0, d_c0, d_weight_hh)`` of the LSTM recurrence (``drop``, ``zone``:
    the recurrent-dropout mask and zoneout weights the forward used, empty or None for none)."""
    no_bias = xp.new_zeros(xp.shape[-1])
    grads = lstm_bias_vjp(xp, h0, c0, weight_hh, no_bias, lengths, d_output, d_hn, d_cn, drop, zone)
    return grads[:4]  # type: ignore[return-value]


def lstm_bias_vjp(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    bias: Tensor,
    lengths: Tensor,
    d_output: Tensor | None,
    d_hn: Tensor | None,
    d_cn: Tensor | None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """:func:`lstm_vjp` of the recurrence over ``xp + bias`` (the native op adds the gates' bias in
    its loop): ``(d_xp, d_h0, d_c0, d_weight_hh, d_bias)``."""
    cell = _cell_on(LSTMCell, h0.shape[-1], drop, zone, weight_hh=weight_hh)
    inputs = (xp, h0, c0, weight_hh, bias)
    with torch.enable_grad():
        gates_in = xp + bias  # (T, B, 4H)
    return _vjp(cell, gates_in, (h0, c0), lengths, inputs, (d_output, d_hn, d_cn))  # type: ignore[return-value]


def gru_vjp(
    xp: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    lengths: Tensor,
    d_output: Tensor | None,
    d_hn: Tensor | None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Differentiable ``(d_xp, d_h0, d_weight_hh, d_bias_hh)`` of the GRU recurrence."""
    cell = _cell_on(GRUCell, h0.shape[-1], drop, zone, weight_hh=weight_hh, bias_hh=bias_hh)
    inputs = (xp, h0, weight_hh, bias_hh)
    return _vjp(cell, xp, h0, lengths, inputs, (d_output, d_hn))  # type: ignore[return-value]
