"""rnnkit's ``RNNBase``: the common base of ``RNN/LSTM/GRU``, a subclass of ``torch.nn.RNNBase``
whose parameters carry torch.nn's names (``weight_ih_l0``, ``bias_hh_l1_reverse``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, uniform_init
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import RNNCell
from rnnkit.nn.recurrent import Recurrent

# torch.nn.RNNBase's ``mode`` -> (the cell, its keyword for the mode); RNN_SIGMOID is rnnkit's own
NONLINEARITIES = {"RNN_TANH": "tanh", "RNN_RELU": "relu", "RNN_SIGMOID": "sigmoid"}
MODES = ("LSTM", "GRU", *NONLINEARITIES)
# torch's own layer classes, taken when rnnkit is imported (``swap_into_torch`` rebinds the names)
TORCH_LAYERS: dict[str, type[nn.RNNBase]] = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}


def cell_for_mode(mode: str, proj_size: int) -> tuple[type[RecurrentCell], dict[str, Any]]:
    """The built-in cell and its keyword arguments for torch.nn.RNNBase's ``mode``."""
    if mode not in MODES:
        raise ValueError(f"Unrecognized RNN mode: {mode}")  # torch's words
    if mode != "LSTM" and proj_size:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    if mode == "LSTM":
        return LSTMCell, {"proj_size": proj_size}
    if mode == "GRU":
        return GRUCell, {}
    return RNNCell, {"nonlinearity": NONLINEARITIES[mode]}


class RNNBase(Recurrent, nn.RNNBase):
    """The base of ``rnnkit.nn.RNN/LSTM/GRU``: a :class:`Recurrent` over built-in cells, laid out as
    ``torch.nn.RNNBase`` and a subclass of it.

    The constructor takes ``torch.nn.RNNBase``'s arguments, ``mode`` first (``"LSTM"``, ``"GRU"``,
    ``"RNN_TANH"``, ``"RNN_RELU"``, and rnnkit's ``"RNN_SIGMOID"``), then rnnkit's ``backend``,
    ``zoneout`` and ``recurrent_dropout``. So ``isinstance(layer, torch.nn.RNNBase)`` holds, and a
    class written against torch's hierarchy (``class RNN(ABC, nn.RNNBase)``, ``class LSTM(RNN,
    nn.LSTM)`` with ``super().__init__(input_size=..., ...)``, a ``forward`` that calls
    ``super().forward(packed, hx)``) builds and runs on rnnkit's layers, directly or while
    :func:`rnnkit.nn.swap_into_torch` binds torch.nn's names to these classes. torch's RNNBase
    contributes its type only: every method it defines is rnnkit's here (its ``__init__`` and
    cuDNN weight cache never run).

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

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        cell, cell_kwargs = cell_for_mode(mode, proj_size)
        self.mode = mode
        self.bias = bias
        self.proj_size = proj_size
        super().__init__(
            cell,
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            batch_first,
            dropout,
            bias=bias,
            device=device,
            dtype=dtype,
            backend=backend,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            **cell_kwargs,
        )

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

    def train(self, mode: bool = True) -> RNNBase:
        """As ``nn.Module.train``; the cell templates (not submodules) follow the mode too."""
        super().train(mode)
        for cell in self._cells:
            cell.train(mode)
        return self

    def _bound_parameter(self, flat: str) -> Tensor | None:
        """What ``getattr(self, flat)`` returns, read from ``_parameters`` without Module.__getattr__
        (ten lookups a call); where the attribute may live elsewhere (a parametrization moves it to
        a class property, a plain attribute shadows it) the full lookup runs."""
        weight = self._parameters.get(flat)
        if weight is None or flat in self.__dict__:
            return getattr(self, flat)
        return weight

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
                self._bound_parameter(flat) is cell._parameters[name] for name, flat in names
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

    def _update_flat_weights(self) -> None:
        """torch's refresh before its forward: nothing to refresh here."""

    def _weights_have_changed(self) -> bool:
        return False

    # torch.nn.RNNBase keeps a list of weights in sync on these; rnnkit reads the weights by name at
    # each forward, so nn.Module's own versions are the right ones
    __setattr__ = nn.Module.__setattr__
    _apply = nn.Module._apply
    _replicate_for_data_parallel = nn.Module._replicate_for_data_parallel
    __getstate__ = nn.Module.__getstate__
    __setstate__ = nn.Module.__setstate__

    def __prepare_scriptable__(self) -> nn.RNNBase:
        """What ``torch.jit.script`` compiles in this layer's place (torch calls this hook on every
        module it scripts): torch.nn's own layer of the same arguments holding this layer's
        parameters (the same tensors, so training the scripted module trains this one). Scripting
        then works exactly where the installed torch can script its own layer: not on torch 2.13,
        which fails on ``torch.nn.LSTM`` itself ("'RecursiveScriptModule' object has no attribute
        'forward'"). Layers with what torch.nn has no counterpart for (zoneout, recurrent dropout, a
        sigmoid RNN, a weight reparametrized by name) raise an error that says so; ``torch.jit.trace``
        and ``torch.export`` take them."""
        what = [
            f"{option}={getattr(self._cells[0], option)}"
            for option in ("zoneout", "recurrent_dropout")
            if getattr(self._cells[0], option, 0.0)
        ]
        if self.mode == "RNN_SIGMOID":
            what.append("mode='RNN_SIGMOID'")
        reparametrized = [name for name in self._flat_weights_names if name not in self._parameters]
        if reparametrized:
            what.append(f"reparametrized weights ({', '.join(reparametrized)})")
        if what:
            raise RuntimeError(
                f"torch.jit.script: {type(self).__name__} with {', '.join(what)} has no torch.nn "
                "counterpart to script; use torch.jit.trace or torch.export.export"
            )
        kind = "RNN" if self.mode in NONLINEARITIES else self.mode
        kwargs: dict[str, Any] = {
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": float(self.dropout),
            "bidirectional": self.bidirectional,
            "device": "meta",  # no storage of its own: the parameters below are this layer's
        }
        if kind == "RNN":
            kwargs["nonlinearity"] = NONLINEARITIES[self.mode]
        if kind == "LSTM":
            kwargs["proj_size"] = self.proj_size
        twin = TORCH_LAYERS[kind](self.input_size, self.hidden_size, **kwargs)
        for name in self._flat_weights_names:
            setattr(twin, name, self._parameters[name])  # torch's __setattr__ refreshes its flat list
        twin.train(self.training)
        return twin

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


TorchLayoutRecurrent = RNNBase  # the former name


def register_safe_globals(*classes: type) -> None:
    """Allow ``torch.load(weights_only=True)`` (torch's default) to rebuild whole saved modules of
    these classes. rnnkit's modules keep only tensors, numbers, strings and containers as state."""
    torch.serialization.add_safe_globals(list(classes))
