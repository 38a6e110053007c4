"""The recurrence engines behind a layer's ``backend`` argument, and the dispatcher that picks one.

One folder per backend (``docs/architecture.md`` draws the whole path):

- ``"reference"`` (:mod:`.reference`): the cell's own ``step`` run by the one time loop,
  :func:`~rnnkit.kernels.reference.run_cell` (autograd through every step). Runs every cell; the
  others are tested against it.
- ``"native"`` (:mod:`.native`): one custom op per sequence with a hand-written backward, its time
  loop in C++ on the CPU (plain torch ops elsewhere, so it also runs on CUDA); a single node under
  ``torch.compile``. ``"cpu"`` is its former name, kept as an alias that warns once.
- ``"triton"`` (:mod:`.triton`): fused Triton kernels; CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1``. Needs ``pip install 'rnnkit[triton]'``. The table in
  :mod:`.triton.paths` chooses the path per shape: ``persistent`` (one launch for all time steps),
  ``graphed`` (one launch per step, the loop replayed from a CUDA graph) or ``stepwise`` (one launch
  per step from Python); ``"triton-persistent"``, ``"triton-graphed"`` and ``"triton-stepwise"``
  force one.
- ``"compiled"`` (:mod:`.compiled`): any cell, the reference loop compiled by ``torch.compile`` in
  chunks of a few steps: the fused path for cells without a hand-written kernel. Compiles at first
  use (tens of seconds, cached on disk), so it is opted into, never chosen by ``"auto"``.
- ``"auto"``: on CUDA, Triton on the paths that have passed ``scripts/gpu_report.py`` on a real GPU
  (:data:`.triton.paths.VERIFIED_ON_GPU`), else ``"native"``; ``"native"`` on the CPU;
  ``"reference"`` for cells without a fused kernel.

Recurrent dropout and zoneout run inside every fused backend (their masks are kernel inputs).
Fused kernels exist for :class:`~rnnkit.cells.LSTMCell` and :class:`~rnnkit.cells.GRUCell`. An LSTM
with ``proj_size > 0`` has none: every backend then runs the reference loop (documented fallback,
with a warning when a fused backend was asked for explicitly).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.rnn import both_biases
from rnnkit.kernels.compiled import run_compiled
from rnnkit.kernels.native import cpp_loop
from rnnkit.kernels.native import gru_forward as native_gru
from rnnkit.kernels.native import lstm_forward as native_lstm
from rnnkit.kernels.native.common import eager_outside_transforms
from rnnkit.kernels.native.lstm import eager_lstm_layer
from rnnkit.kernels.triton.host import triton_installed, why_triton_cannot_run
from rnnkit.kernels.triton.paths import PATHS, VERIFIED_ON_GPU
from rnnkit.kernels.zoneout import zoneout_keep

TRITON_BACKENDS = ("triton", *(f"triton-{path}" for path in PATHS))
ALIASES = {"cpu": "native"}  # former names, accepted with a warning
BACKENDS = ("auto", "reference", "native", "compiled", *TRITON_BACKENDS)

# A fused runner: (cell, x (T, B, I) unprojected, initial state, lengths or None) -> (output, final state);
# it runs the cell's input projection itself (where it may leave a bias to its time loop).
Runner = Callable[[RecurrentCell, Tensor, State, Tensor | None], tuple[Tensor, State]]
_warned_aliases: set[str] = set()


def canonical_backend(backend: str, stacklevel: int = 3) -> str:
    """The backend's current name; a former name warns once per process (``stacklevel``: the
    warning's frame, as for :func:`warnings.warn`, counted from the caller of this function)."""
    if backend in ALIASES:
        new = ALIASES[backend]
        if backend not in _warned_aliases:
            _warned_aliases.add(backend)
            warnings.warn(
                f"backend={backend!r} is now called {new!r} (it also runs on CUDA); "
                f"{backend!r} still works as an alias",
                FutureWarning,
                stacklevel=stacklevel,
            )
        return new
    return backend


@dataclass(frozen=True)
class Fused:
    """A fused runner: the cell's recurrent tensors cast to the projected input's dtype, its
    recurrent-dropout mask drawn (first, as the reference loop draws it) and its zoneout weights,
    handed to one engine. ``triton``: a Triton path to force (``path``) or the paths the table may
    choose (``allowed``); None for the native ops."""

    triton: bool = False
    path: str | None = None
    allowed: frozenset[str] | None = None

    def __call__(self, cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None):
        if not self.triton and isinstance(cell, LSTMCell):
            ops = _eager_cpp_loop(cell, x, state)
            if ops is not None:  # the projection, bias and loop in one autograd node
                drop = cell.draw_recurrent_mask(x.shape[1], x.device, x.dtype)
                zone = zoneout_keep(cell, x)
                weights = (cell.weight_ih, cell.bias_ih, cell.bias_hh, cell.weight_hh)
                return eager_lstm_layer(ops, x, state, *weights, lengths, drop, zone)
        # The native LSTM adds the gates' bias b_ih + b_hh in its time loop: the projection is then
        # a plain GEMM, which skips a pass over the (T, B, 4H) result (issue 32).
        in_loop = isinstance(cell, LSTMCell) and not self.triton
        xp = torch.matmul(x, cell.weight_ih.t()) if in_loop else cell.project_input(x)  # (T, B, G)
        # Under autocast the projection comes out in half precision while parameters and states
        # stay float32; the fused ops take one dtype (the reference loop gets the casts from autocast).
        like = [
            t if t is None or t.dtype == xp.dtype else t.to(xp.dtype)
            for t in _recurrent_tensors(cell, state, in_loop)
        ]
        drop = cell.draw_recurrent_mask(xp.shape[1], xp.device, xp.dtype)
        zone = zoneout_keep(cell, xp)
        if isinstance(cell, LSTMCell):
            if self.triton:
                from rnnkit.kernels.triton.lstm import lstm_forward as triton_lstm  # imports Triton

                h0, c0, w = like
                return triton_lstm(xp, (h0, c0), w, lengths, self.path, drop, zone, self.allowed)
            h0, c0, w, b = like
            return native_lstm(xp, (h0, c0), w, lengths, drop, zone, bias=b)
        h0, w, b = like
        if self.triton:
            from rnnkit.kernels.triton.gru import gru_forward as triton_gru  # imports Triton

            return triton_gru(xp, h0, w, b, lengths, self.path, drop, zone, self.allowed)
        return native_gru(xp, h0, w, b, lengths, drop, zone)


def _eager_cpp_loop(cell: RecurrentCell, x: Tensor, state: State):
    """The C++ loop's ops where an LSTM layer can run as one eager node
    (:func:`~rnnkit.kernels.native.lstm.eager_lstm_layer`): on the CPU in a supported dtype, every
    weight and state in ``x``'s dtype, outside autocast, ``torch.compile``, ``torch.jit.trace`` and
    functorch transforms (:func:`~rnnkit.kernels.native.common.eager_outside_transforms`); else None."""
    if not eager_outside_transforms() or torch.is_autocast_enabled(x.device.type):
        return None
    ops = cpp_loop.usable(x)
    if ops is None:
        return None
    tensors = (*state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if any(t is not None and (t.dtype != x.dtype or t.device != x.device) for t in tensors):
        return None
    return ops


def _recurrent_tensors(cell: RecurrentCell, state: State, bias_in_loop: bool = False) -> list[Tensor | None]:
    """The tensors a fused LSTM (h0, c0, W_hh, and with ``bias_in_loop`` b_ih + b_hh or None) or GRU
    (h0, W_hh, b_hh or None) recurrence reads."""
    if isinstance(cell, LSTMCell):
        bias = [both_biases(cell.bias_ih, cell.bias_hh)] if bias_in_loop else []
        return [*state, cell.weight_hh, *bias]
    return [state, cell.weight_hh, cell.bias_hh]


FUSED_CELLS = (LSTMCell, GRUCell)  # the cells with hand-written kernels
NATIVE = Fused()
KERNELS: dict[str, Runner] = {
    "native": NATIVE,
    "triton": Fused(triton=True),
    **{f"triton-{path}": Fused(triton=True, path=path) for path in PATHS},
}


def _auto_on_cuda(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None
) -> tuple[Tensor, State]:
    """``backend="auto"`` on CUDA: Triton, the table choosing among the paths that have passed the
    GPU report; the native ops if none has. Under ``torch.compile`` the native ops, which Dynamo
    keeps as one node each (it would break the graph at the Triton launches and graph recordings)."""
    if torch.compiler.is_compiling() or not VERIFIED_ON_GPU:
        return NATIVE(cell, x, state, lengths)
    return Fused(triton=True, allowed=VERIFIED_ON_GPU)(cell, x, state, lengths)


def check_backend_name(backend: str) -> None:
    """Raise at construction for a misspelt backend or a missing triton package."""
    if backend not in BACKENDS and backend not in ALIASES:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend in TRITON_BACKENDS and not triton_installed():
        raise RuntimeError(f"backend={backend!r} needs the triton package: pip install 'rnnkit[triton]'")


def _unsupported(cell: RecurrentCell) -> str | None:
    """Why the fused backends have no kernel for this configured cell, or None."""
    if isinstance(cell, LSTMCell) and cell.proj_size:
        return "LSTM with proj_size > 0 has no fused kernel"
    return None


def runnable_backends(cell: RecurrentCell, device: torch.device) -> list[str]:
    """The backends that can run ``cell`` on ``device`` here."""
    names = ["reference", "compiled"]
    if type(cell) in FUSED_CELLS and _unsupported(cell) is None:
        names.append("native")
        if why_triton_cannot_run(device) is None:
            names.extend(TRITON_BACKENDS)
    return names


def select(backend: str, cell: RecurrentCell, device: torch.device) -> Runner | None:
    """The fused runner for ``cell`` on ``device``, or None for the reference loop.

    Raises when an explicitly requested backend cannot run, naming the ones that can.
    """
    backend = canonical_backend(backend)
    if backend == "reference":
        return None
    if backend == "compiled":
        return run_compiled
    kind = type(cell)
    if kind not in FUSED_CELLS:
        if backend == "auto":
            return None
        raise ValueError(
            f"backend={backend!r} has no kernel for {kind.__name__}; backends that can run it: "
            f"{runnable_backends(cell, device)} (or 'auto')"
        )
    reason = _unsupported(cell)
    if reason is not None:
        if backend != "auto":
            warnings.warn(f"{reason}: backend={backend!r} falls back to 'reference'", stacklevel=3)
        return None
    if backend == "auto":
        if device.type == "cuda" and why_triton_cannot_run(device) is None:
            return _auto_on_cuda
        return NATIVE
    if backend in TRITON_BACKENDS:
        why = why_triton_cannot_run(device)
        if why is not None:
            raise RuntimeError(
                f"backend={backend!r} cannot run here: {why}. "
                f"Backends that can: {runnable_backends(cell, device)}"
            )
    return KERNELS[backend]


__all__ = [
    "ALIASES",
    "BACKENDS",
    "KERNELS",
    "TRITON_BACKENDS",
    "canonical_backend",
    "check_backend_name",
    "runnable_backends",
    "select",
]
