"""The generic recurrent layer: runs any :class:`~rnnkit.cells.RecurrentCell` over time.

The time loop itself is :func:`rnnkit.kernels.reference.run_cell` (the ``reference`` backend), or a
fused backend chosen by :func:`rnnkit.kernels.select`. ``rnnkit.nn.RNN``, ``LSTM`` and ``GRU`` are
:class:`Recurrent` with a built-in cell and torch's parameter names.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit import kernels
from rnnkit.cells.base import RecurrentCell, State, check_probability, map_state
from rnnkit.cells.registry import get_cell
from rnnkit.kernels.onnx import exporting_to_onnx, run_for_onnx
from rnnkit.kernels.reference import active_probe, run_cell
from rnnkit.nn.sequence import dropout_between_layers, pack_like, reverse_padded, unpack_to_padded

CellFactory = Callable[..., RecurrentCell]


def stack_states(states: Sequence[State]) -> State:
    """Per-(layer, direction) states -> the layer's ``h_n``: leaves ``(L*D, B, S)``."""
    if isinstance(states[0], Tensor):
        return torch.stack(list(states))
    return tuple(torch.stack(list(leaves)) for leaves in zip(*states, strict=True))


REGULARIZERS = ("zoneout", "recurrent_dropout")  # options of every cell that the layer can also apply


def takes_argument(factory: CellFactory, name: str) -> bool:
    """``factory`` (a cell class or a function) has a parameter ``name``, or takes ``**kwargs``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def names_argument(factory: CellFactory, name: str) -> bool:
    """``factory``'s signature names a parameter ``name`` (``**kwargs`` does not count)."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def split_regularizers(
    factory: CellFactory, cell_kwargs: dict[str, object]
) -> tuple[dict[str, object], float]:
    """``(cell_kwargs for the factory, zoneout for the layer to set)``. A cell of one's own whose
    constructor does not take ``zoneout`` or ``recurrent_dropout`` (they are
    :class:`~rnnkit.cells.RecurrentCell`'s) still gets zoneout, which the base class applies to any
    cell; ``recurrent_dropout`` needs the cell's ``step`` to read h through ``recurrent_input``, so a
    nonzero value is refused with how to enable it, and 0 (the configs' default) is dropped."""
    own = {k: cell_kwargs[k] for k in REGULARIZERS if k in cell_kwargs and not takes_argument(factory, k)}
    if not own:
        return cell_kwargs, 0.0
    name = getattr(factory, "__name__", repr(factory))
    for key, value in own.items():
        check_probability(key, value)
    if own.get("recurrent_dropout"):
        raise ValueError(
            f"recurrent_dropout={own['recurrent_dropout']}: {name}'s constructor does not take it. To "
            f"support it, accept recurrent_dropout and pass it to RecurrentCell.__init__, and read "
            f"h_(t-1) through self.recurrent_input(h) in step (see rnnkit/cells/base.py); or set it to 0"
        )
    rest = {k: v for k, v in cell_kwargs.items() if k not in own}
    return rest, float(own.get("zoneout", 0.0))


def resolve_cell(cell: str | CellFactory) -> CellFactory:
    if isinstance(cell, str):
        return get_cell(cell)
    if callable(cell):
        return cell
    raise TypeError(f"cell must be a registered name or a RecurrentCell class/factory, got {cell!r}")


def check_layer_arguments(
    input_size: object,
    hidden_size: object,
    num_layers: object,
    dropout: object,
    batch_first: object,
    cell_kwargs: dict[str, object],
) -> None:
    """torch.nn.RNNBase's constructor checks, in its order, with its exception types and words."""
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an element "
            "being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
            f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
            stacklevel=3,
        )
    bias = cell_kwargs.get("bias", True)
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if not isinstance(num_layers, int):  # torch fails later with a TypeError of Python's
        raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")


class Recurrent(nn.Module):
    r"""Runs any recurrent cell over a sequence, stacked and optionally bidirectional.

    For each layer l and direction d a cell is built as ``cell(input_size_l, hidden_size,
    **cell_kwargs)``; the input projection of all T steps is one call of ``cell.project_input``
    (one matmul for the built-in cells) before the time loop, and only ``cell.step`` runs inside it.
    The reverse direction reads each sequence backwards from its own last valid step.

    Args:
        cell: a registered name (``"rnn"``, ``"jordan"``, ``"lstm"``, ``"gru"``, or a user's), or a
            :class:`~rnnkit.cells.RecurrentCell` subclass / factory.
        input_size: features I of the input.
        hidden_size: the cell's hidden size H.
        num_layers: stacked layers L; layer l > 0 reads the D * O outputs of layer l-1.
        bidirectional: run a second cell per layer over reversed time (D = 2).
        batch_first: input and output are ``(B, T, *)`` instead of ``(T, B, *)``.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        backend: ``"auto"`` (default), ``"reference"``, ``"native"``, ``"compiled"`` or ``"triton"``:
            which implementation runs the recurrence (see :mod:`rnnkit.kernels`); cells without a
            fused kernel run the reference loop under ``"auto"``.
        device, dtype: where and how the parameters are created.
        **cell_kwargs: forwarded to every cell (``bias``, ``nonlinearity``, ``output_size`` ...).

    Shapes (O = the cell's ``output_size``):
        input: ``(T, B, I)``, ``(B, T, I)`` with batch_first, unbatched ``(T, I)``, or a PackedSequence.
        hx: the initial state, each leaf ``(L*D, B, S)`` (``(L*D, S)`` unbatched); zeros if omitted.
        lengths: optional ``(B,)`` valid lengths of a padded batch (alternative to packing).
        output: ``(T, B, D*O)`` (batched like the input), or a PackedSequence for packed input.
        h_n: the final state of every layer and direction, each leaf ``(L*D, B, S)``.
    """

    def __init__(
        self,
        cell: str | CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = False,
        dropout: float = 0.0,
        *,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_kwargs: object,
    ) -> None:
        # nn.Module's, not super()'s: rnnkit's RNNBase also derives from torch.nn.RNNBase, whose
        # constructor (its own weights, cuDNN's cache) must not run
        nn.Module.__init__(self)
        check_layer_arguments(input_size, hidden_size, num_layers, dropout, batch_first, cell_kwargs)
        kernels.check_backend_name(backend)
        self.backend = kernels.canonical_backend(backend, stacklevel=4)  # a former name warns once
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.num_directions = 2 if bidirectional else 1

        factory = resolve_cell(cell)
        cell_kwargs, zoneout = split_regularizers(factory, cell_kwargs)
        # a cell that takes device and dtype (as torch's and rnnkit's do) draws its initial weights
        # there, as torch.nn's layers do; any other is built and then moved
        placement = {"device": device, "dtype": dtype}
        built_in_place = all(names_argument(factory, key) for key in placement)
        if built_in_place:
            cell_kwargs = {**cell_kwargs, **{k: v for k, v in placement.items() if v is not None}}
        cells: list[RecurrentCell] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else self.num_directions * cells[0].output_size
            for _ in range(self.num_directions):
                built = factory(layer_input, hidden_size, **cell_kwargs)
                if not isinstance(built, RecurrentCell):
                    raise TypeError(f"cell factory must return a RecurrentCell, got {type(built).__name__}")
                if zoneout:  # the layer's option, for a cell whose constructor does not take it
                    built.zoneout = zoneout
                if not built_in_place and (device is not None or dtype is not None):
                    built = built.to(device=device, dtype=dtype)
                cells.append(built)
        self.output_size = cells[0].output_size
        self.state_size = cells[0].state_size
        self._register_cells(cells)

    # ----------------------------------------------------------------- cell storage
    def _register_cells(self, cells: list[RecurrentCell]) -> None:
        """Own the cells; index ``layer * D + direction``. Subclasses may store them differently."""
        self.cells = nn.ModuleList(cells)

    def layer_cells(self) -> Sequence[RecurrentCell]:
        """The cells, ready to run, in ``layer * D + direction`` order."""
        return self.cells

    # ----------------------------------------------------------------- checks
    def check_backend(self, device: torch.device | str) -> None:
        """Raise now if ``backend`` cannot run this layer's cells on ``device`` (a run on that device
        would fail at its first forward)."""
        for cell in self.layer_cells():
            kernels.select(self.backend, cell, torch.device(device))

    def _name(self) -> str:
        return type(self).__name__

    _INPUT_DIMS_ERROR = "{name}: Expected input to be 2D or 3D, got {dim}D instead"

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        """torch.nn.RNNBase's input checks, in its order and words: the dtype matches the weights
        (ValueError; waived under autocast, which casts), the input is 3-D (2-D when packed), and its
        last dimension is ``input_size``."""
        # the layer's own weights first (torch's layout registers them all on the layer: no walk over
        # the submodules per call); not next(generator, default): Dynamo before 2.11 cannot trace it
        weights = [w for w in self._parameters.values() if w is not None] or list(self.parameters())
        weight = weights[0] if weights else None
        if weight is not None and input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
            )
        expected_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )

    def _state_sizes(self) -> tuple[int, ...]:
        """The widths of the state's parts, from the cells built in ``__init__`` (no cell is bound)."""
        return (self.state_size,) if isinstance(self.state_size, int) else tuple(self.state_size)

    def _expected_state_sizes(self, batch: int) -> list[tuple[int, int, int]]:
        layers = self.num_layers * self.num_directions
        return [(layers, batch, size) for size in self._state_sizes()]

    def _mini_batch(self, input: Tensor, batch_sizes: Tensor | None) -> int:
        if batch_sizes is not None:
            return int(batch_sizes[0])
        return input.size(0) if self.batch_first else input.size(1)

    def get_expected_hidden_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        """``(L*D, B, S)`` of the state (its first part, h, for multi-part states), as torch."""
        return self._expected_state_sizes(self._mini_batch(input, batch_sizes))[0]

    def check_hidden_size(
        self, hx: Tensor, expected_hidden_size: tuple[int, ...], msg: str = "Expected hidden size {}, got {}"
    ) -> None:
        if hx.size() != expected_hidden_size:
            raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: State, batch_sizes: Tensor | None) -> None:
        """``check_input`` and the size of every state part, as torch (input in the layer's layout)."""
        self.check_input(input, batch_sizes)
        parts = (hidden,) if isinstance(hidden, Tensor) else tuple(hidden)
        self._check_state_sizes(parts, self._mini_batch(input, batch_sizes))

    def permute_hidden(self, hx: State, permutation: Tensor | None) -> State:
        """Reorder the batch of a state by ``permutation`` (torch's PackedSequence sorting)."""
        if permutation is None:
            return hx
        return map_state(lambda part: part.index_select(1, permutation), hx)

    def _state_parts(self, hx: State | None) -> tuple[Tensor, ...] | None:
        """The user's ``hx`` as a tuple of its parts, with the count checked."""
        if hx is None:
            return None
        sizes = self._state_sizes()
        parts = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(parts) != len(sizes):
            raise RuntimeError(
                f"{self._name()}: Expected hx to hold {len(sizes)} tensor(s) (state sizes {sizes}), "
                f"got {len(parts)}"
            )
        return parts

    @staticmethod
    def _check_state_dims(parts: tuple[Tensor, ...], batched: bool) -> None:
        want = 3 if batched else 2
        kind = "batched 3-D" if batched else "unbatched 2-D"
        if all(part.dim() == want for part in parts):
            return
        if len(parts) == 1:
            raise RuntimeError(
                f"For {kind} input, hx should also be {want}-D but got {parts[0].dim()}-D tensor"
            )
        dims = ", ".join(f"{part.dim()}-D" for part in parts)
        names = "hx and cx" if len(parts) == 2 else "every part of hx"
        raise RuntimeError(f"For {kind} input, {names} should also be {want}-D but got ({dims}) tensors")

    def _check_state_sizes(self, parts: tuple[Tensor, ...], batch: int) -> None:
        expected = self._expected_state_sizes(batch)
        for k, (part, want) in enumerate(zip(parts, expected, strict=True)):
            label = "hidden" if len(parts) == 1 else f"hidden[{k}]"
            self.check_hidden_size(part, want, f"Expected {label} size {{}}, got {{}}")

    def _check_state_dtypes(self, parts: tuple[Tensor, ...], input: Tensor) -> None:
        if torch._C._is_any_autocast_enabled():
            return  # autocast casts the states with the weights
        for k, part in enumerate(parts):
            if part.dtype != input.dtype:
                label = "hx" if len(parts) == 1 else f"hx[{k}]"
                raise RuntimeError(
                    f"{self._name()}: {label} dtype ({part.dtype}) does not match input dtype ({input.dtype})"
                )

    @staticmethod
    def _check_lengths(
        lengths: Tensor | Sequence[int], steps: int, batch: int, device: torch.device
    ) -> Tensor:
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(
                f"lengths must lie in [1, {steps}] (the padded length), got min {int(lengths.min())} "
                f"and max {int(lengths.max())}"
            )
        return lengths

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        """Every check runs first, in torch's order, before any work."""
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence: it carries its own")
            parts = self._state_parts(hx)
            self.check_input(input.data, input.batch_sizes)
            batch = int(input.batch_sizes[0])
            batched = True
            data = input.data
        else:
            if input.dim() not in (2, 3):
                raise ValueError(self._INPUT_DIMS_ERROR.format(name=self._name(), dim=input.dim()))
            batched = input.dim() == 3
            parts = self._state_parts(hx)
            if parts is not None:
                self._check_state_dims(parts, batched)
                if not batched:
                    parts = tuple(part.unsqueeze(1) for part in parts)
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)  # (T, B, I)
            self.check_input(x, None)
            batch = x.size(1)
            data = x
        if parts is not None:
            self._check_state_sizes(parts, batch)
        if not packed and x.size(0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if parts is not None:
            self._check_state_dtypes(parts, data)
        if lengths is not None and not batched:
            raise ValueError("lengths needs batched input: got unbatched (2-D) input")
        if packed:
            x, lengths = unpack_to_padded(input)  # (T, B, I), original batch order
        steps = x.shape[0]
        states = None if parts is None else self._split_state(parts)
        mask = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, steps, batch, x.device)
            if bool((lengths == steps).all()):
                lengths = None
            else:
                mask = (torch.arange(steps, device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)

        output, finals = self._run(x, states, lengths, mask, input if packed else None)  # (T, B, D*O)

        h_n = stack_states(finals)
        if packed:
            return pack_like(output, input), h_n
        if not batched:
            return output.squeeze(1), map_state(lambda s: s.squeeze(1), h_n)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, h_n

    @staticmethod
    def _split_state(parts: tuple[Tensor, ...]) -> list[State]:
        """Checked state parts ``(L*D, B, S)`` -> one state per (layer, direction)."""
        per_cell = [part.unbind(0) for part in parts]
        if len(parts) == 1:
            return list(per_cell[0])
        return [tuple(leaves) for leaves in zip(*per_cell, strict=True)]

    def _run(
        self,
        x: Tensor,
        states: list[State] | None,
        lengths: Tensor | None,
        mask: Tensor | None,
        packed: PackedSequence | None = None,
    ) -> tuple[Tensor, list[State]]:
        """All layers and directions over a padded ``(T, B, I)`` input (``packed``: the caller's
        PackedSequence it was unpacked from, whose layout the dropout between layers follows)."""
        cells = self.layer_cells()
        batch = x.shape[1]
        finals: list[State] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = cells[index]
                state = (
                    states[index]
                    if states is not None
                    else cell.init_state(batch, device=x.device, dtype=x.dtype)
                )
                # The reverse direction reads its input backwards: reversing before the projection
                # (per step, by the cell protocol) moves I features per step instead of G (4H for
                # an LSTM).
                x_dir = layer_input if direction == 0 else reverse_padded(layer_input, lengths)
                if exporting_to_onnx():  # what ONNX can express: its LSTM/GRU operators, or a Scan
                    out, final = run_for_onnx(cell, x_dir, state, mask)  # (T, B, O)
                else:
                    out, final = self._run_direction(cell, x_dir, state, lengths, mask)
                if direction == 1:
                    out = reverse_padded(out, lengths)
                outputs.append(out)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = dropout_between_layers(layer_input, self.dropout, packed)
        return layer_input, finals

    def _run_direction(
        self, cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, State]:
        """One (layer, direction) over its direction-ordered input ``(T, B, I)``: the projection of
        all steps in one call, then the backend's time loop (a fused backend does both). Returns
        ``(outputs (T, B, O), final)``."""
        # a state-gradient probe needs the per-step states, and functorch transforms (torch.func.grad,
        # vmap, jacrev...) see through plain torch ops but not the fused ops: the reference loop runs
        reference = active_probe() is not None or torch._C._are_functorch_transforms_active()
        fused = None if reference else kernels.select(self.backend, cell, x.device)
        if fused is None:
            return run_cell(cell, cell.project_input(x), state, mask)  # xp: (T, B, G)
        return fused(cell, x, state, lengths)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
