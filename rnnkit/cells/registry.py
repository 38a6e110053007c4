"""Name -> cell class registry, so configs and tasks can say ``cell=lstm`` or a user's own cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from rnnkit.cells.base import RecurrentCell

_CELLS: dict[str, type[RecurrentCell]] = {}

C = TypeVar("C", bound=type[RecurrentCell])


def register_cell(name: str, cls: C | None = None, *, overwrite: bool = False) -> C | Callable[[C], C]:
    """Register a :class:`RecurrentCell` subclass under ``name``.

    Use as a decorator (``@register_cell("mycell")``) or a call (``register_cell("mycell", MyCell)``).
    Re-registering a taken name raises unless ``overwrite=True``. A registered class is also allowed
    by ``torch.load(weights_only=True)``, so whole models built on it load back as torch's default
    asks (the cell must keep only tensors, numbers, strings and containers as attributes).
    """

    def add(cell_cls: C) -> C:
        if not (isinstance(cell_cls, type) and issubclass(cell_cls, RecurrentCell)):
            raise TypeError(f"register_cell('{name}'): expected a RecurrentCell subclass, got {cell_cls!r}")
        if name in _CELLS and _CELLS[name] is not cell_cls and not overwrite:
            raise ValueError(
                f"register_cell: the name '{name}' is already taken by {_CELLS[name].__qualname__}; "
                "pass overwrite=True to replace it"
            )
        _CELLS[name] = cell_cls
        torch.serialization.add_safe_globals([cell_cls])
        return cell_cls

    return add if cls is None else add(cls)


def get_cell(name: str) -> type[RecurrentCell]:
    """The cell class registered as ``name``."""
    try:
        return _CELLS[name]
    except KeyError:
        raise KeyError(f"Unknown cell '{name}'. Registered cells: {sorted(_CELLS)}") from None


def available_cells() -> list[str]:
    return sorted(_CELLS)
