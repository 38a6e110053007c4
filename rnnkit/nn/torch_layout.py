"""Recurrent layers whose parameters carry torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, uniform_init
from rnnkit.nn.recurrent import Recurrent


class TorchLayoutRecurrent(Recurrent):
    """A :class:`Recurrent` over built-in cells, laid out as ``torch.nn.RNNBase``.

    The parameters of cell (layer l, direction d) are registered on the layer itself as
    ``{name}_l{l}`` / ``{name}_l{l}_reverse``, in torch's order, so ``state_dict()``,
    ``named_parameters()`` and attribute access match ``torch.nn.RNN/LSTM/GRU`` and state dicts load
    both ways with ``strict=True``.

    The cells are templates kept outside the module tree. Each forward runs shallow copies of them
    bound to what ``getattr(layer, name)`` returns at that moment, so everything that swaps, wraps or
    recomputes a weight by its name works as on torch's layers: ``.to()``, ``load_state_dict(
    assign=True)``, ``torch.func.functional_call``, weight norm and spectral norm (both APIs),
    pruning, and DataParallel replicas running in threads (no shared cell is mutated).

    Also as ``torch.nn.RNNBase``: ``mode``, ``proj_size``, ``_flat_weights_names``, ``_all_weights``,
    ``_flat_weights`` and ``all_weights`` (always the current tensors, parametrized ones included),
    ``flatten_parameters()`` (a no-op: each weight is its own tensor, there is no cuDNN blob to
    compact), ``reset_parameters()``, ``check_input`` / ``check_forward_args`` / ``permute_hidden``.
    """

    mode: str = ""
    proj_size: int = 0

    def _register_cells(self, cells: list[RecurrentCell]) -> None:
        self._cells = cells  # templates: not submodules, not in state_dict
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
        self._all_weights = [[flat for _, flat in names] for names in self._param_names]
        self._flat_weights_names = [flat for names in self._all_weights for flat in names]

    def _flat_name(self, name: str, index: int) -> str:
        layer, direction = divmod(index, self.num_directions)
        return f"{name}_l{layer}{'_reverse' if direction else ''}"

    def train(self, mode: bool = True) -> TorchLayoutRecurrent:
        """As ``nn.Module.train``; the cell templates (not submodules) follow the mode too."""
        super().train(mode)
        for cell in self._cells:
            cell.train(mode)
        return self

    def layer_cells(self) -> Sequence[RecurrentCell]:
        """One cell per (layer, direction) that computes with the layer's current weights.

        A template holds the layer's own parameter objects (the layer registered them), so while
        each of its weights is still that object and its mode the layer's, it is returned itself:
        the common case, which ``torch.compile(fullgraph=True)`` traces on torch 2.11 as on 2.13.
        Otherwise (a parametrization such as weight norm, a reassigned parameter,
        ``torch.func.functional_call``, a mode set on ``.training`` directly) the cell is a shallow
        copy of the template with the layer's tensors swapped in."""
        bound = []
        for cell, names in zip(self._cells, self._param_names, strict=True):
            if cell.training == self.training and all(
                getattr(self, flat) is cell._parameters[name] for name, flat in names
            ):
                bound.append(cell)
                continue
            copy = object.__new__(type(cell))
            copy.__dict__.update(cell.__dict__)
            copy.__dict__["training"] = self.training  # the templates are not submodules
            copy.__dict__["_parameters"] = {
                **cell._parameters,
                **{name: getattr(self, flat) for name, flat in names},
            }
            bound.append(copy)
        return bound

    # ----------------------------------------------------------------- torch.nn.RNNBase's surface
    @property
    def _flat_weights(self) -> list[Tensor | None]:
        """The current weight tensors in ``_flat_weights_names`` order (parametrizations applied)."""
        return [getattr(self, name) if hasattr(self, name) else None for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Weights per (layer, direction), as ``torch.nn.RNNBase.all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _init_flat_weights(self) -> None:
        """Kept for code that calls torch's private refresh: ``_flat_weights`` is always current."""

    def flatten_parameters(self) -> None:
        """As ``torch.nn.RNNBase.flatten_parameters``; a no-op here (torch's is one off cuDNN too):
        every weight is its own tensor and the kernels read them in place."""

    def reset_parameters(self) -> None:
        """torch's init: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order."""
        uniform_init(self.parameters(), self.hidden_size)

    def extra_repr(self) -> str:
        """torch.nn.RNNBase's repr, plus ``backend`` when it is not ``"auto"``."""
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s


def register_safe_globals(*classes: type) -> None:
    """Allow ``torch.load(weights_only=True)`` (torch's default) to rebuild whole saved modules of
    these classes. rnnkit's modules keep only tensors, numbers, strings and containers as state."""
    torch.serialization.add_safe_globals(list(classes))
