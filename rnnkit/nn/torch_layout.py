"""Recurrent layers whose parameters carry torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.nn.recurrent import Recurrent


class TorchLayoutRecurrent(Recurrent):
    """A :class:`Recurrent` over built-in cells, laid out as ``torch.nn.RNNBase``.

    The parameters of cell (layer l, direction d) are registered on the layer itself as
    ``{name}_l{l}`` / ``{name}_l{l}_reverse``, in torch's order, so ``state_dict()``,
    ``named_parameters()`` and attribute access match ``torch.nn.RNN/LSTM/GRU`` and state dicts load
    both ways with ``strict=True``. The cells are kept unregistered and re-bound to the layer's
    current parameters before each run, so ``.to()``, ``load_state_dict(assign=True)`` and copies
    need no care.
    """

    def _register_cells(self, cells: list[RecurrentCell]) -> None:
        self._cells = cells  # a plain list: not a submodule, not in state_dict
        self._param_names: list[list[tuple[str, str]]] = []
        for index, cell in enumerate(cells):
            names = []
            for name, param in cell._parameters.items():
                if param is None:
                    continue
                flat = self._flat_name(name, index)
                self.register_parameter(flat, param)
                names.append((name, flat))
            self._param_names.append(names)

    def _flat_name(self, name: str, index: int) -> str:
        layer, direction = divmod(index, self.num_directions)
        return f"{name}_l{layer}{'_reverse' if direction else ''}"

    def layer_cells(self) -> Sequence[RecurrentCell]:
        params = self._parameters
        for cell, names in zip(self._cells, self._param_names, strict=True):
            for name, flat in names:
                cell._parameters[name] = params[flat]
        return self._cells

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters per (layer, direction), as ``torch.nn.RNNBase.all_weights``."""
        return [[self._parameters[flat] for _, flat in names] for names in self._param_names]

    def reset_parameters(self) -> None:
        for cell in self.layer_cells():
            cell.reset_parameters()
