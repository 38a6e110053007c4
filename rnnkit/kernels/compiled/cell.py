"""Any cell at fused speed: the ``compiled`` backend.

A cell without a hand-written kernel (a user's cell, the LayerNorm and peephole cells, any cell with
zoneout) runs in the reference loop as one autograd graph per time step: every small op of every
step is dispatched from Python in the forward and again, through the autograd engine, in the
backward. On the CPU that bookkeeping, not arithmetic, is most of the time at the sizes the
default configs train (H = 64, B = 8-64).

Design. The layer's one time loop, :func:`rnnkit.kernels.reference.run_steps` (``cell.advance`` +
lengths), is compiled with ``torch.compile`` over a chunk of :data:`CHUNK_STEPS` steps (unrolled
by Dynamo, so the cell's ``step`` is traced as written: any cell that follows the protocol works),
and the sequence runs chunk after chunk:

- **forward**: one compiled call per chunk. Inductor fuses each step's pointwise work (gates,
  normalizations, masks) into a few C++ loops around the products; the host wrapper is C++ as well
  (``cpp_wrapper``), so a chunk costs a handful of calls instead of hundreds of ops.
- **backward**: AOTAutograd partitions each chunk's joint graph: the forward saves what the
  backward needs (no recomputation) and the backward is one compiled call per chunk, so the
  autograd engine sees T / K nodes instead of ~15 per step; the parameter gradients are summed
  inside each chunk's backward.
- **inference** (no grad): a separate compiled graph that saves nothing.
- **lengths**: every chunk carries the ``(K, B, 1)`` step mask of :func:`run_steps` (True where a
  step is real); T is padded to a multiple of K with masked steps, so every call has one shape and
  one compiled graph serves the whole sequence (and every layer, direction and sequence length
  with the same cell configuration, batch and dtype).
- **regularizers**: recurrent dropout draws its per-sequence mask as the reference loop does
  (same numbers); zoneout draws its per-step masks inside the compiled graph (same distribution,
  not the reference loop's random stream).

Costs and limits:

- The first call for a new cell configuration, batch size or dtype compiles (20-80 s here on 2
  cores; inductor caches the result on disk, so later processes reuse it in a few seconds). This is
  why the backend is opted into (``backend="compiled"``) rather than picked by ``"auto"``.
- A cell Dynamo cannot trace as one graph (data-dependent Python control flow, for example), or a
  machine where torch.compile cannot build (no C++ compiler), runs the reference loop instead,
  with one warning per cell class that says why.
- Gradients of gradients (``create_graph=True``) are refused with a clear error: AOTAutograd's
  compiled backward is not itself differentiable. The reference loop and the ``native`` backend
  support them.
- Its first use sets two process-wide torch.compile settings: Dynamo's ``recompile_limit`` is raised
  to at least 64 (one compiled function serves every cell configuration), and AOTAutograd's
  ``donated_buffer`` is turned off (its backward refuses ``retain_graph=True``, which every other
  backend supports).
- ``RNNKIT_STEP_COMPILER=aot_eager`` runs the same partitioned graphs without inductor (seconds to
  compile, eager speed): the tests use it to cover every cell; ``inductor`` is the default.

Measured (``python scripts/bench_cells.py``) and tested against the reference loop
(``tests/test_compiled_cell.py``): outputs, states and every gradient in float64 on every
registered cell and on the README's MGU example.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
import torch._functorch.config as functorch_config
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.kernels.lengths import step_mask
from rnnkit.kernels.reference.loop import run_cell, run_steps

CHUNK_STEPS = 8  # steps per compiled call: 16 was 10% faster at T200 B8 H64 and compiled 2x longer
COMPILERS = ("inductor", "aot_eager")
_DOUBLE_BACKWARD = (
    "backend='compiled' has no gradient of a gradient (create_graph=True): its backward is "
    "torch.compile's, which is not differentiable. Use backend='reference' (any cell) or 'native' "
    "(LSTM, GRU) for double backward."
)


def step_compiler() -> str:
    """The torch.compile backend of the ``compiled`` path: ``$RNNKIT_STEP_COMPILER`` or inductor."""
    name = os.environ.get("RNNKIT_STEP_COMPILER", "inductor")
    if name not in COMPILERS:
        raise ValueError(f"RNNKIT_STEP_COMPILER must be one of {list(COMPILERS)}, got {name!r}")
    return name


_compiled: dict[str, Callable[..., tuple[Tensor, State]]] = {}
_refused: dict[type, str] = {}  # cell classes that could not be compiled, and why


def _chunk_runner() -> Callable[..., tuple[Tensor, State]]:
    """``run_steps`` compiled by the configured compiler (one wrapper per compiler name)."""
    name = step_compiler()
    if name not in _compiled:
        # Process-wide torch.compile settings, set at the backend's first use (documented above):
        # one code object serves every cell, so allow a recompile per configuration (cell class,
        # sizes, dtype, grad mode) beyond Dynamo's default of 8; and no donated buffers, whose
        # backward refuses ``retain_graph=True`` (torch reads that flag when the backward runs).
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        functorch_config.donated_buffer = False
        options = {"cpp_wrapper": True} if name == "inductor" else None
        _compiled[name] = torch.compile(run_steps, backend=name, fullgraph=True, options=options)
    return _compiled[name]


class _RefuseDoubleBackward(torch.autograd.Function):
    """Identity on the outputs whose backward raises when asked for a differentiable gradient."""

    @staticmethod
    def forward(ctx, *tensors: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(t.clone() for t in tensors)  # not views: callers may modify them in place

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD)
        return grads


def _padded_mask(steps: int, batch: int, lengths: Tensor | None, device: torch.device) -> Tensor:
    """``(T', B, 1)`` bool step mask, T' = T rounded up to a multiple of the chunk: False on padding
    and past each sequence's length."""
    padded = -(-steps // CHUNK_STEPS) * CHUNK_STEPS
    limit = torch.full((batch,), steps, device=device) if lengths is None else lengths.to(device)
    return (torch.arange(padded, device=device)[:, None] < limit[None, :]).unsqueeze(-1)


def run_compiled(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x (T, B, I)`` from ``state``: its input projection of all steps, then the
    steps in compiled chunks (see the module docstring).

    Same result as :func:`rnnkit.kernels.reference.run_cell` with the step mask of ``lengths``: outputs
    ``(T, B, O)`` (zero past each length) and the final state. Falls back to that loop, with one
    warning per cell class, when the cell cannot be compiled.
    """
    xp = cell.project_input(x)  # (T, B, G)
    steps, batch = xp.shape[:2]
    kind = type(cell)
    if kind not in _refused:
        mask = _padded_mask(steps, batch, lengths, xp.device)  # (T', B, 1)
        try:
            return _run_chunks(cell, xp, state, mask, steps)
        except Exception as error:  # noqa: BLE001 (the reference loop re-raises a genuine error)
            first = str(error).strip().splitlines()
            _refused[kind] = f"{type(error).__name__}: {first[0] if first else ''}"[:500]
            warnings.warn(
                f"backend='compiled' cannot compile {kind.__name__} ({_refused[kind]}); "
                "running the reference loop for this cell class",
                stacklevel=4,
            )
    return run_cell(cell, xp, state, None if lengths is None else step_mask(lengths, steps))


def _run_chunks(
    cell: RecurrentCell, xp: Tensor, state: State, mask: Tensor, steps: int
) -> tuple[Tensor, State]:
    runner = _chunk_runner()
    bound = cell.for_sequence(xp.shape[1], xp.device, xp.dtype)  # recurrent-dropout mask, if any
    padding = mask.shape[0] - steps
    if padding:
        xp = torch.cat([xp, xp.new_zeros(padding, *xp.shape[1:])])  # (T', B, G)
    outputs = []
    for xp_chunk, mask_chunk in zip(xp.split(CHUNK_STEPS), mask.split(CHUNK_STEPS), strict=True):
        out, state = runner(bound, xp_chunk, state, mask_chunk)  # (K, B, O)
        outputs.append(out)
    output = torch.cat(outputs)[:steps] if len(outputs) > 1 else outputs[0][:steps]  # (T, B, O)
    if not torch.is_grad_enabled():
        return output, state
    leaves = (state,) if isinstance(state, Tensor) else tuple(state)
    guarded = _RefuseDoubleBackward.apply(output, *leaves)
    final = guarded[1] if isinstance(state, Tensor) else tuple(guarded[1:])
    return guarded[0], final


__all__ = ["CHUNK_STEPS", "COMPILERS", "run_compiled", "step_compiler"]
