"""Zoneout inside the fused recurrences (Krueger et al. 2016; the cell option is documented on
:class:`~rnnkit.cells.RecurrentCell`).

Each part of the state mixes its update with its previous value, s_t = k s_{t-1} + (1 - k) s~_t,
by keep weights k that the kernels take as one tensor ``zone``:

- empty: no zoneout;
- 0-dim: one weight p for every unit and step (eval mode: the expectation p s_{t-1} + (1 - p) s~_t);
- ``(T, P, B, S)``: 0/1 masks per step and state part (training; P = 2 for the LSTM's h, C and 1
  for the GRU's h), one draw for the whole sequence by the cell's ``draw_zoneout``, as the reference
  loop draws them, so both give the same masks on every device.

Backward: dL/ds~_t = (1 - k) dL/ds_t, and k dL/ds_t flows straight into s_{t-1}.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell


def zoneout_keep(cell: RecurrentCell, xp: Tensor) -> Tensor | None:
    """The keep weights of ``cell``'s zoneout over the sequence ``xp (T, B, G)``, or None."""
    p = cell.zoneout
    if p == 0:
        return None
    if not cell.training:
        return xp.new_tensor(p)  # the expectation
    steps, batch = xp.shape[:2]
    masks = cell.draw_zoneout(steps, batch, xp.device, xp.dtype)  # P x (T, B, S), as the reference loop
    return torch.stack(masks, dim=1).to(xp.dtype)  # (T, P, B, S)


class ZoneoutKeep:
    """The ``zone`` tensor of the Python loops, read per step and state part."""

    def __init__(self, zone: Tensor) -> None:
        self.zone = zone if zone.numel() > 0 else None

    def __bool__(self) -> bool:
        return self.zone is not None

    def weight(self, t: int, part: int) -> Tensor:
        """k for step t and state part ``part``: ``(B, S)``, or 0-dim."""
        assert self.zone is not None
        return self.zone if self.zone.dim() == 0 else self.zone[t, part]

    def mix(self, t: int, new: tuple[Tensor, ...], old: tuple[Tensor, ...]) -> None:
        """In place: each part of ``new`` becomes k old + (1 - k) new (``torch.lerp``, as the cell)."""
        for part, (n, o) in enumerate(zip(new, old, strict=True)):
            n.lerp_(o, self.weight(t, part))

    def split(self, t: int, grads: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Gradients of the mixed state parts -> (into the updates s~_t, straight into s_{t-1})."""
        weights = [self.weight(t, part) for part in range(len(grads))]
        into_new = tuple(g * (1 - w) for g, w in zip(grads, weights, strict=True))
        kept = tuple(g * w for g, w in zip(grads, weights, strict=True))
        return into_new, kept
