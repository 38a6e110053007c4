"""The cell protocol: what a recurrent cell must provide to run in every rnnkit layer and task.

A recurrent cell maps the input x_t and the previous state s_{t-1} to the new state s_t, and exposes
an output y_t read off the state. rnnkit splits one step in two so that layers can hoist the input
work out of the time loop (lecture notation: s_t = f(W [x_t, s_{t-1}] + b) = f(W_x x_t + b + W_s s_{t-1})):

1. ``project_input(x)`` -- the part that depends on x_t only (typically W_x x_t + b). It accepts any
   leading shape ``(*, input_size)`` so a layer calls it once on the whole ``(T, B, input_size)``
   sequence, one large matmul.
2. ``step(xp_t, state)`` -- the recurrence proper: combines the projected input of one step with the
   previous state and returns the new state. Only this runs inside the time loop.

A new cell subclasses :class:`RecurrentCell`, sets ``input_size``, ``hidden_size`` and ``state_size``
and implements ``step``; everything else has defaults. It then runs under
:class:`rnnkit.nn.Recurrent` (stacked, bidirectional, variable lengths, every backend that runs any
cell: ``reference`` and ``compiled``) and, once registered with :func:`rnnkit.cells.register_cell`,
by name in the configs and tasks. The README's example, a minimal gated unit with ``project_input``
hoisting W_x x_t + b out of the loop and a two-gate ``step``, is
:class:`rnnkit.cells.examples.MinimalGatedUnit`.

State: a tensor ``(B, state_size)`` when ``state_size`` is an int, or a tuple of such tensors when
it is a tuple of ints (the LSTM's ``(h, c)``). Layers stack states over layers and directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

State = Tensor | tuple[Tensor, ...]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def activation(name: str, argument: str = "nonlinearity") -> Callable[[Tensor], Tensor]:
    """Return the elementwise function called ``name`` (tanh, relu, sigmoid or identity).

    Modules store the name and look the function up when they run: a function object kept as a
    module attribute would stop ``torch.load(weights_only=True)`` from loading a saved model.
    """
    try:
        return _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown {argument} '{name}'. Expected one of {sorted(_ACTIVATIONS)}, got '{name}'"
        ) from None


def find_activation(name: str) -> Callable[[Tensor], Tensor] | None:
    """The elementwise function called ``name``, or None."""
    return _ACTIVATIONS.get(name) if isinstance(name, str) else None


def check_size(name: str, value: object) -> None:
    """A size argument: an int (TypeError otherwise, as torch.nn's RNNBase) that is not negative."""
    if not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def uniform_init(parameters: Iterable[Tensor], hidden_size: int) -> None:
    """torch.nn's RNN init, in the given order: each ~ U(-1/sqrt(H), 1/sqrt(H)) (0 when H = 0)."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for weight in parameters:
        nn.init.uniform_(weight, -bound, bound)


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` leafwise to one or more states of the same structure."""
    if isinstance(states[0], Tensor):
        return fn(*states)
    return tuple(fn(*leaves) for leaves in zip(*states, strict=True))


def check_probability(name: str, value: object) -> None:
    """Raise naming ``name`` unless ``value`` is a probability in [0, 1) (zoneout, recurrent dropout)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


class RecurrentCell(nn.Module):
    """Base class of every rnnkit cell (see the module docstring for the protocol).

    Args:
        input_size: features of x_t.
        hidden_size: width of the cell's hidden layer.
        state_size: width of the carried state; an int, or a tuple of ints for a multi-part state.
            Defaults to ``hidden_size``.
        output_size: width of the output y_t read off the state. Defaults to the first state part.
        zoneout: probability p that a state unit keeps its previous value at a step (Krueger et al.
            2016): in training s_t = m * s_{t-1} + (1 - m) * s~_t with m ~ Bernoulli(p) per unit and
            step, on every part of the state; in eval mode its expectation, p s_{t-1} + (1-p) s~_t.
        recurrent_dropout: variational dropout of the recurrent input (Gal & Ghahramani 2016): in
            training, one mask per sequence, m / (1 - q) with m ~ Bernoulli(1 - q), multiplies
            h_{t-1} where it enters the recurrent product (:meth:`recurrent_input`), the same mask at
            every step. A cell that calls :meth:`recurrent_input` supports it; eval mode: no mask.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int | Sequence[int] | None = None,
        output_size: int | None = None,
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_size("input_size", input_size)
        check_size("hidden_size", hidden_size)
        for name, value in (("zoneout", zoneout), ("recurrent_dropout", recurrent_dropout)):
            check_probability(name, value)
        self.zoneout = float(zoneout)
        self.recurrent_dropout = float(recurrent_dropout)
        self._recurrent_mask: Tensor | None = None  # set on a per-sequence copy (for_sequence)
        self._zoneout_masks: tuple[Tensor, ...] | None = None  # likewise
        self.input_size = input_size
        self.hidden_size = hidden_size
        if state_size is None:
            state_size = hidden_size
        self.state_size: int | tuple[int, ...] = (
            state_size if isinstance(state_size, int) else tuple(state_size)
        )
        first = self.state_size if isinstance(self.state_size, int) else self.state_size[0]
        self.output_size = first if output_size is None else output_size

    # ------------------------------------------------------------------ protocol
    def project_input(self, x: Tensor) -> Tensor:
        """Input part of the step for any leading shape: ``(*, input_size) -> (*, G)``. Default: identity."""
        return x

    def step(self, xp: Tensor, state: State) -> State:
        """One recurrence step from the projected input ``xp`` (B, G) and the previous state."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(xp, state)")

    # ------------------------------------------------------------------ regularizers
    def for_sequence(
        self, batch: int, device: torch.device, dtype: torch.dtype, steps: int | None = None
    ) -> RecurrentCell:
        """The cell that runs one batch of sequences: itself, or (training with recurrent dropout or,
        given ``steps``, zoneout) a shallow copy holding this sequence's masks: the recurrent-dropout
        mask ``(B, S_0)``, then zoneout's keep masks for all ``steps`` (:meth:`draw_zoneout`), drawn
        in that order. The layers call it once per sequence; without ``steps`` zoneout draws its
        masks step by step."""
        drop = self.training and self.recurrent_dropout > 0
        zone = self.training and self.zoneout > 0 and steps is not None
        if not (drop or zone):
            return self
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        if drop:
            bound.__dict__["_recurrent_mask"] = self.draw_recurrent_mask(batch, device, dtype)
        if zone:
            assert steps is not None
            bound.__dict__["_zoneout_masks"] = self.draw_zoneout(steps, batch, device, dtype)
        return bound

    def draw_recurrent_mask(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor | None:
        """Training recurrent dropout's mask for one batch of sequences, m / (1 - q) with
        m ~ Bernoulli(1 - q), ``(B, S_0)`` (see ``recurrent_dropout``); None in eval mode or with
        q = 0. What :meth:`for_sequence` binds; the fused ops take it without the copy, which
        torch 2.11's Dynamo cannot trace."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        keep = 1.0 - self.recurrent_dropout
        width = self.state_sizes()[0]
        return torch.empty(batch, width, device=device, dtype=dtype).bernoulli_(keep).div_(keep)

    def draw_zoneout(
        self, steps: int, batch: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """Training zoneout's keep masks for a whole sequence, one ``(T, B, S_p)`` bool tensor per
        state part (True: the unit keeps s_{t-1}), from ONE draw of uniforms in the order step, part,
        batch, unit. One draw, so the reference loop and the fused kernels (which take the same
        draw as one ``(T, P, B, S)`` tensor) see the same masks on any device: CUDA's generator
        gives different numbers to one large draw than to many small ones."""
        sizes = self.state_sizes()
        uniform = torch.rand(steps, batch * sum(sizes), device=device, dtype=dtype)  # (T, B * sum S_p)
        parts = uniform.split([batch * size for size in sizes], dim=1)
        return tuple(
            (part.view(steps, batch, size) < self.zoneout) for part, size in zip(parts, sizes, strict=True)
        )

    def zoneout_steps(self, steps: int) -> list[State | None]:
        """Per step, the keep masks a sequence-bound cell drew (:meth:`for_sequence`), as a state
        of bool tensors; None at every step when it drew none (zoneout then draws at each step)."""
        masks = self._zoneout_masks
        if masks is None:
            return [None] * steps
        per_step = list(zip(*(m.unbind(0) for m in masks), strict=True))  # T x P of (B, S_p)
        return [keep[0] if isinstance(self.state_size, int) else tuple(keep) for keep in per_step]

    def recurrent_input(self, h: Tensor) -> Tensor:
        """h_{t-1} as it enters the recurrent product: times the sequence's dropout mask, if any."""
        mask = self._recurrent_mask
        return h if mask is None else h * mask

    def zone(self, new: State, old: State, keep: State | None = None) -> State:
        """Zoneout of a step's new state against the previous one (identity when ``zoneout`` is 0).
        ``keep``: this step's keep masks drawn with the sequence (:meth:`zoneout_steps`); in
        training without them, fresh masks are drawn here."""
        p = self.zoneout
        if p == 0:
            return new
        if self.training:
            if keep is None:
                return map_state(lambda n, o: torch.where(torch.rand_like(n) < p, o, n), new, old)
            return map_state(lambda n, o, k: torch.where(k, o, n), new, old, keep)
        return map_state(lambda n, o: torch.lerp(n, o, p), new, old)  # p * old + (1 - p) * new

    def advance(self, xp: Tensor, state: State, keep: State | None = None) -> State:
        """``step`` followed by zoneout (``keep``: see :meth:`zone`): what the layers run at each step."""
        return self.zone(self.step(xp, state), state, keep)

    def output(self, state: State) -> Tensor:
        """The output y_t read off the state. Default: the state, or its first part."""
        return state if isinstance(state, Tensor) else state[0]

    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        """The initial state s_0 = 0 for a batch."""
        if isinstance(self.state_size, int):
            return torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)
        return tuple(torch.zeros(batch_size, n, device=device, dtype=dtype) for n in self.state_size)

    # ------------------------------------------------------------------ helpers
    def state_sizes(self) -> tuple[int, ...]:
        return (self.state_size,) if isinstance(self.state_size, int) else self.state_size

    def reset_uniform(self) -> None:
        """torch.nn's RNN init: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        uniform_init(self.parameters(), self.hidden_size)

    def check_forward_args(self, input: Tensor, hx: State | None) -> None:
        """torch.nn.*Cell's checks, in torch's order and words: input and state of 1 or 2 dims, then
        (as ATen's cell ops check) the feature size of the input, the batch and width of each state."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        parts = () if hx is None else (hx,) if isinstance(hx, Tensor) else tuple(hx)
        sizes = self.state_sizes()
        if hx is not None and len(parts) != len(sizes):
            raise ValueError(
                f"{name}: Expected a state of {len(sizes)} tensor(s) (state sizes {sizes}), got {len(parts)}"
            )
        for k, part in enumerate(parts):
            if part.dim() not in (1, 2):
                label = "hidden" if len(sizes) == 1 else f"hx[{k}]"
                raise ValueError(f"{name}: Expected {label} to be 1D or 2D, got {part.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.size(-1)} expected {self.input_size}"
            )
        batch = input.size(0) if input.dim() == 2 else 1
        for k, (part, size) in enumerate(zip(parts, sizes)):  # noqa: B905 (no state: no parts)
            if input.dim() == 1:
                part = part.unsqueeze(0)
            if part.size(0) != batch:
                raise RuntimeError(
                    f"Input batch size {batch} doesn't match hidden{k} batch size {part.size(0)}"
                )
            if part.dim() != 2 or part.size(1) != size:
                got = part.size(1) if part.dim() >= 2 else part.size(-1)
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {got}, expected {size}")

    def forward(self, input: Tensor, hx: State | None = None) -> State:
        """One step, as ``torch.nn.*Cell.forward``.

        Args:
            input: ``(B, input_size)`` or unbatched ``(input_size,)``.
            hx: previous state, batched like ``input``; zeros when omitted.

        Returns:
            The new state (``h'``, or ``(h', c')`` for the LSTM), batched like ``input``.
        """
        self.check_forward_args(input, hx)
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else map_state(lambda s: s.unsqueeze(0), hx)
        if hx is None:
            hx = self.init_state(input.size(0), device=input.device, dtype=input.dtype)
        elif not isinstance(hx, Tensor):
            hx = tuple(hx)
        # one step is one sequence here: to keep one recurrent-dropout mask over a hand-written loop,
        # step ``cell.for_sequence(...)`` instead
        cell = self.for_sequence(input.size(0), input.device, input.dtype)
        state = cell.advance(self.project_input(input), hx)
        return map_state(lambda s: s.squeeze(0), state) if unbatched else state
