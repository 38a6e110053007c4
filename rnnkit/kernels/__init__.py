"""Fused recurrences for the built-in cells, selected by a layer's ``backend`` argument.

Backends:

- ``"reference"``: the hand-written cell stepped by :func:`rnnkit.nn.recurrent.run_cell` (autograd
  through every step). Runs every cell; the others are tested against it.
- ``"cpu"``: one custom op per sequence with a hand-written backward (:mod:`.cpu_lstm`,
  :mod:`.cpu_gru`). Plain torch ops, so it also runs on CUDA; a single node under ``torch.compile``.
  Recurrent dropout and zoneout run inside it (their masks are inputs of the ops).
- ``"triton"``: fused Triton kernels (:mod:`.triton_lstm`, :mod:`.triton_gru`), recurrent dropout
  and zoneout included (their masks are kernel inputs, read only when present); CUDA tensors, or
  CPU tensors under ``TRITON_INTERPRET=1``. Needs ``pip install 'rnnkit[triton]'``. The table in
  :mod:`.triton_paths` chooses the path per shape: ``persistent`` (one launch for all time steps),
  ``graphed`` (one launch per step, the loop replayed from a CUDA graph) or ``stepwise`` (one launch
  per step from Python); ``"triton-persistent"``, ``"triton-graphed"`` and ``"triton-stepwise"``
  force one.
- ``"compiled"``: any cell, the layer's time loop compiled by ``torch.compile`` in chunks of a few
  steps (:mod:`.compiled_cell`): the fused path for cells without a hand-written kernel (a user's
  cell, the LayerNorm and peephole cells). Compiles at first use (tens of seconds, cached on disk), so
  it is opted into, never chosen by ``"auto"``.
- ``"auto"``: on CUDA, Triton on the paths that have passed ``scripts/gpu_report.py`` on a real GPU
  (:data:`.triton_paths.VERIFIED_ON_GPU`: today the graphed path), else ``"cpu"``; ``"cpu"`` on
  the CPU; ``"reference"`` for cells without a fused kernel.

Fused kernels exist for :class:`~rnnkit.cells.LSTMCell` and :class:`~rnnkit.cells.GRUCell`. An LSTM
with ``proj_size > 0`` has none: every backend then runs the reference loop (documented fallback,
with a warning when a fused backend was asked for explicitly).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import cpu_gru, cpu_lstm
from rnnkit.kernels.compiled_cell import run_compiled
from rnnkit.kernels.triton_common import triton, why_triton_cannot_run
from rnnkit.kernels.triton_paths import PATHS, VERIFIED_ON_GPU, plan
from rnnkit.kernels.zoneout import zoneout_keep

TRITON_BACKENDS = ("triton", *(f"triton-{path}" for path in PATHS))
BACKENDS = ("auto", "reference", "cpu", "compiled", *TRITON_BACKENDS)

Runner = Callable[[RecurrentCell, Tensor, State, Tensor | None], tuple[Tensor, State]]


def _like(xp: Tensor, *tensors: Tensor | None) -> list[Tensor | None]:
    """Cast states and weights to the dtype of the projected input. Under autocast the projection
    comes out in half precision while parameters and states stay float32; the fused ops take one
    dtype (the reference loop gets the same casts from autocast itself)."""
    return [t if t is None or t.dtype == xp.dtype else t.to(xp.dtype) for t in tensors]


def _recurrent_dropout_mask(cell: RecurrentCell, xp: Tensor) -> Tensor | None:
    """The sequence's recurrent-dropout mask, drawn as the reference loop draws it (same RNG use)."""
    return cell.draw_recurrent_mask(xp.shape[1], xp.device, xp.dtype)


def _lstm_cpu(cell: LSTMCell, xp: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    h0, c0, w = _like(xp, *state, cell.weight_hh)
    drop = _recurrent_dropout_mask(cell, xp)  # drawn first, as in the reference loop
    return cpu_lstm.lstm_forward(xp, (h0, c0), w, lengths, drop, zoneout_keep(cell, xp))


def _gru_cpu(cell: GRUCell, xp: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    h0, w, b = _like(xp, state, cell.weight_hh, cell.bias_hh)
    drop = _recurrent_dropout_mask(cell, xp)  # drawn first, as in the reference loop
    return cpu_gru.gru_forward(xp, h0, w, b, lengths, drop, zoneout_keep(cell, xp))


def _lstm_triton(
    cell: LSTMCell, xp: Tensor, state: State, lengths: Tensor | None, path: str | None = None
) -> tuple[Tensor, State]:
    from rnnkit.kernels import triton_lstm

    h0, c0, w = _like(xp, *state, cell.weight_hh)
    drop = _recurrent_dropout_mask(cell, xp)  # drawn first, as in the reference loop
    return triton_lstm.lstm_forward(xp, (h0, c0), w, lengths, path, drop, zoneout_keep(cell, xp))


def _gru_triton(
    cell: GRUCell, xp: Tensor, state: State, lengths: Tensor | None, path: str | None = None
) -> tuple[Tensor, State]:
    from rnnkit.kernels import triton_gru

    h0, w, b = _like(xp, state, cell.weight_hh, cell.bias_hh)
    drop = _recurrent_dropout_mask(cell, xp)  # drawn first, as in the reference loop
    return triton_gru.gru_forward(xp, h0, w, b, lengths, path, drop, zoneout_keep(cell, xp))


KERNELS: dict[str, dict[type, Runner]] = {
    "cpu": {LSTMCell: _lstm_cpu, GRUCell: _gru_cpu},
    "triton": {LSTMCell: _lstm_triton, GRUCell: _gru_triton},
    **{
        f"triton-{path}": {
            LSTMCell: partial(_lstm_triton, path=path),
            GRUCell: partial(_gru_triton, path=path),
        }
        for path in PATHS
    },
}
_KIND = {LSTMCell: "lstm", GRUCell: "gru"}


def _auto_on_cuda(
    cell: RecurrentCell, xp: Tensor, state: State, lengths: Tensor | None
) -> tuple[Tensor, State]:
    """``backend="auto"`` on CUDA: the table's Triton path if it has passed the GPU report, else a
    verified per-step path (graphed first), else the ``cpu`` backend's torch ops. Under
    ``torch.compile`` the ``cpu`` backend's custom ops, which Dynamo keeps as one node each (it
    would break the graph at the Triton paths' launches and CUDA-graph recordings)."""
    kind = type(cell)
    if torch.compiler.is_compiling():
        return KERNELS["cpu"][kind](cell, xp, state, lengths)
    chosen = plan(_KIND[kind], xp.shape[1], cell.hidden_size, xp.dtype, xp.device).path
    for path in (chosen, "graphed", "stepwise"):
        if path in VERIFIED_ON_GPU:
            return KERNELS[f"triton-{path}"][kind](cell, xp, state, lengths)
    return KERNELS["cpu"][kind](cell, xp, state, lengths)


def check_backend_name(backend: str) -> None:
    """Raise at construction for a misspelt backend or a missing triton package."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend in TRITON_BACKENDS and triton is None:
        raise RuntimeError(f"backend={backend!r} needs the triton package: pip install 'rnnkit[triton]'")


def _unsupported(cell: RecurrentCell) -> str | None:
    """Why the fused backends have no kernel for this configured cell, or None."""
    if isinstance(cell, LSTMCell) and cell.proj_size:
        return "LSTM with proj_size > 0 has no fused kernel"
    return None


def runnable_backends(cell: RecurrentCell, device: torch.device) -> list[str]:
    """The backends that can run ``cell`` on ``device`` here."""
    names = ["reference", "compiled"]
    if type(cell) in KERNELS["cpu"] and _unsupported(cell) is None:
        names.append("cpu")
        if why_triton_cannot_run(device) is None:
            names.extend(TRITON_BACKENDS)
    return names


def select(backend: str, cell: RecurrentCell, device: torch.device) -> Runner | None:
    """The fused runner for ``cell`` on ``device``, or None for the reference loop.

    Raises when an explicitly requested backend cannot run, naming the ones that can.
    """
    if backend == "reference":
        return None
    if backend == "compiled":
        return run_compiled
    kind = type(cell)
    if kind not in KERNELS["cpu"]:
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
        return KERNELS["cpu"][kind]
    if backend in TRITON_BACKENDS:
        why = why_triton_cannot_run(device)
        if why is not None:
            raise RuntimeError(
                f"backend={backend!r} cannot run here: {why}. "
                f"Backends that can: {runnable_backends(cell, device)}"
            )
    return KERNELS[backend][kind]


__all__ = ["BACKENDS", "KERNELS", "TRITON_BACKENDS", "check_backend_name", "runnable_backends", "select"]
