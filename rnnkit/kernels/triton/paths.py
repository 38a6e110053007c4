"""How a Triton recurrence runs: the paths, the table that chooses one, and the co-residency check.

Paths (``backend="triton-<path>"`` forces one; ``backend="triton"`` lets the table choose):

- ``persistent``: one launch per layer, direction and pass; the time loop runs inside the kernel.
  Program (b, j) owns batch rows ``b*BLOCK_B...`` and hidden units ``j*BLOCK_H...`` for all T
  steps: its slice of W_hh stays on chip (``w_resident``; else it is streamed from L2 each step),
  the cell state (forward) and the cell-state gradient (backward) stay in registers, and the
  programs of one batch block exchange h_t (forward) or dG_t (backward) through a global buffer
  with one grid barrier per step. When one program holds all hidden units there is no barrier.
- ``graphed``: the per-step kernels of ``stepwise``, their loop recorded once per shape as a CUDA
  graph and replayed, so the host launches one graph instead of T kernels
  (:mod:`rnnkit.kernels.triton.graphs`); any shape.
- ``stepwise``: one kernel per time step launched from Python, the grid made wide enough to fill
  the GPU's SMs; any shape.

The table (:func:`plan`), first row that holds:

| where | condition | path |
| --- | --- | --- |
| any | a path was forced | that path, or an error saying why it cannot hold the shape |
| CPU interpreter | always (one program holds all hidden units: no barrier) | persistent |
| CUDA | the persistent grid (batch blocks x unit blocks) fits the device at once | persistent |
| CUDA | otherwise | graphed |

A persistent grid must be co-resident, or the first barrier waits forever for a program that never
starts. The plan allows at most one program per SM before compiling; the launch then checks the
compiled kernel's registers and shared memory against the device (:func:`max_resident_programs`)
and launches cooperatively (the driver refuses a grid that cannot be co-resident instead of
hanging). A grid that fails either check takes the graphed path (or raises, when forced).

``backend="auto"`` uses Triton only on paths listed in :data:`VERIFIED_ON_GPU`, the ones that have
passed ``scripts/gpu_report.py`` on a real GPU; the others stay opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch

from rnnkit.kernels.triton.graphs import run_loop
from rnnkit.kernels.triton.host import next_power_of_2

PATHS = ("persistent", "graphed", "stepwise")
PER_STEP_PATHS = ("graphed", "stepwise")  # the per-step kernels, replayed from a graph or launched

# Paths that passed scripts/gpu_report.py on a real GPU (the tables are in the issue notes). Only
# these are chosen by backend="auto"; add a path here in the commit that records its passing report.
# graphed, stepwise: H100, 2026-11-22 (torch 2.11 + CUDA 13.0, triton 3.6): the sweep's quick shapes
# and the standard one, LSTM and GRU, float64/float32/bfloat16/float16, with and without masks, and
# the kernel tests on CUDA. persistent: its backward hung at the grid barrier there (fixed since,
# not yet rerun on a GPU).
VERIFIED_ON_GPU: frozenset[str] = frozenset({"graphed", "stepwise"})

GATES = {"lstm": 4, "gru": 3}
# Bytes of W_hh one program may keep on chip for the whole sequence: half of what 8 warps can hold
# in registers (8 * 32 threads * 255 registers * 4 bytes), the rest left for h, the gates and C.
W_ON_CHIP_BYTES = 128 * 1024
PERSISTENT_WARPS = 8
STREAM_BLOCK_K = 64  # K chunk when W_hh is streamed from L2


class GridTooLarge(RuntimeError):
    """A persistent grid that the device cannot hold at once (its barrier would never open)."""


@dataclass(frozen=True)
class DeviceLimits:
    """What decides how many programs of a kernel one device runs at once."""

    sm_count: int
    regs_per_sm: int = 65536
    threads_per_sm: int = 2048
    smem_per_sm: int = 228 * 1024
    max_blocks_per_sm: int = 32

    @staticmethod
    def of(device: torch.device) -> DeviceLimits:
        if device.type != "cuda":  # the interpreter runs one program at a time
            return DeviceLimits(sm_count=1)
        p = torch.cuda.get_device_properties(device)
        return DeviceLimits(
            sm_count=p.multi_processor_count,
            regs_per_sm=getattr(p, "regs_per_multiprocessor", 65536),
            threads_per_sm=getattr(p, "max_threads_per_multi_processor", 2048),
            smem_per_sm=getattr(p, "shared_memory_per_multiprocessor", 228 * 1024),
        )


def max_resident_programs(limits: DeviceLimits, n_regs: int, num_warps: int, shared_bytes: int) -> int:
    """Programs of a compiled kernel the whole device runs at once (SM count x occupancy).

    Registers are allocated per warp in units of 256; a program needs all its warps' registers,
    its threads and its shared memory on one SM.
    """
    threads = num_warps * 32
    regs_per_warp = -(-max(n_regs, 1) * 32 // 256) * 256
    by_regs = limits.regs_per_sm // (regs_per_warp * num_warps)
    by_threads = limits.threads_per_sm // threads
    by_smem = limits.smem_per_sm // shared_bytes if shared_bytes else limits.max_blocks_per_sm
    return limits.sm_count * max(0, min(by_regs, by_threads, by_smem, limits.max_blocks_per_sm))


def check_coresident(programs: int, capacity: int, what: str = "persistent grid") -> None:
    """Raise :class:`GridTooLarge` unless ``programs`` can all run at once."""
    if programs > capacity:
        raise GridTooLarge(
            f"{what} of {programs} programs cannot be resident at once (the device holds {capacity}); "
            "its grid barrier would never open"
        )


@dataclass(frozen=True)
class Launch:
    """One planned run of a recurrence: the path and its kernels' tile sizes and flags."""

    path: str
    block_b: int
    block_h: int
    block_k: int
    batch_blocks: int
    unit_blocks: int
    num_warps: int = 4
    w_resident: bool = False  # persistent: W_hh held on chip for all steps
    # persistent: run the grid barrier even when one program holds all units (tests: the CPU
    # interpreter runs programs one after another, so only such a grid can run the barrier there)
    barrier: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        return (self.batch_blocks, self.unit_blocks)

    @property
    def programs(self) -> int:
        return self.batch_blocks * self.unit_blocks

    @property
    def sync(self) -> bool:
        """Persistent programs of a batch block exchange state through a grid barrier."""
        return self.path == "persistent" and (self.unit_blocks > 1 or self.barrier)

    @property
    def graphed(self) -> bool:
        """The per-step loop is recorded once as a CUDA graph and replayed."""
        return self.path == "graphed"

    def meta(self) -> dict:
        """Tile sizes as the kernels' constexpr arguments."""
        out = {"BLOCK_B": self.block_b, "BLOCK_H": self.block_h, "BLOCK_K": self.block_k}
        if self.path == "persistent":
            out.update(SYNC=self.sync, W_RESIDENT=self.w_resident)
        return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _batch_block(batch: int) -> int:
    return min(64, max(16, next_power_of_2(batch)))


def stepwise_launch(batch: int, hidden: int, limits: DeviceLimits, path: str = "stepwise") -> Launch:
    """Tiles of the per-step kernels, shrunk (down to 16 x 16) until the grid covers every SM;
    ``path``: ``"stepwise"`` or ``"graphed"`` (the same kernels, their loop replayed from a graph)."""
    block_b = _batch_block(batch)
    block_h = min(64, max(16, next_power_of_2(hidden)))
    block_k = min(64, max(16, next_power_of_2(hidden)))
    while _cdiv(batch, block_b) * _cdiv(hidden, block_h) < limits.sm_count and max(block_b, block_h) > 16:
        if block_h >= block_b and block_h > 16:
            block_h //= 2
        else:
            block_b //= 2
    return Launch(path, block_b, block_h, block_k, _cdiv(batch, block_b), _cdiv(hidden, block_h))


def stepwise_fallback(launch: Launch, batch: int, hidden: int, device: torch.device) -> Launch:
    """The per-step launch to run when the persistent one did not: ``launch`` itself if it already is
    one (a forced or hand-made per-step plan keeps its tiles), else the device's default: graphed."""
    if launch.path in PER_STEP_PATHS:
        return launch
    return stepwise_launch(batch, hidden, DeviceLimits.of(device), "graphed")


def persistent_launch(
    kind: str, batch: int, hidden: int, dtype: torch.dtype, limits: DeviceLimits, on_cuda: bool
) -> Launch:
    """Tiles of the persistent kernels. Raises :class:`GridTooLarge` when the grid cannot be held."""
    block_b = _batch_block(batch)
    batch_blocks = _cdiv(batch, block_b)
    full_k = max(16, next_power_of_2(hidden))
    w_bytes = GATES[kind] * full_k * torch.empty((), dtype=dtype).element_size()  # per hidden unit
    if not on_cuda:  # the interpreter: one program holds every unit, no barrier
        return Launch("persistent", block_b, full_k, full_k, batch_blocks, 1, w_resident=True)
    if full_k * w_bytes <= W_ON_CHIP_BYTES:  # all of W_hh in one program: no barrier at all
        return Launch(
            "persistent", block_b, full_k, full_k, batch_blocks, 1, PERSISTENT_WARPS, w_resident=True
        )
    # Smallest unit slice whose grid fits one program per SM: the most SMs at work, the least W each.
    block_h = 16
    while batch_blocks * _cdiv(hidden, block_h) > limits.sm_count and block_h < full_k:
        block_h *= 2
    unit_blocks = _cdiv(hidden, block_h)
    check_coresident(batch_blocks * unit_blocks, limits.sm_count, "persistent grid (one program per SM)")
    resident = block_h * w_bytes <= W_ON_CHIP_BYTES
    block_k = full_k if resident else min(STREAM_BLOCK_K, full_k)
    return Launch(
        "persistent", block_b, block_h, block_k, batch_blocks, unit_blocks, PERSISTENT_WARPS, resident
    )


def plan(
    kind: str,
    batch: int,
    hidden: int,
    dtype: torch.dtype,
    device: torch.device,
    path: str | Launch | None = None,
    limits: DeviceLimits | None = None,
) -> Launch:
    """Choose how to run a ``kind`` ("lstm" or "gru") recurrence over a (batch, hidden) state.

    ``path`` forces one of :data:`PATHS` (an error says why it cannot run); None follows the
    module's table. ``limits`` stands in for the device's (tests).
    """
    if isinstance(path, Launch):  # a hand-made launch (tests: the streamed-W variant, odd tiles)
        return path
    if path is not None and path not in PATHS:
        raise ValueError(f"Triton path must be one of {list(PATHS)}, got {path!r}")
    limits = limits or DeviceLimits.of(device)
    on_cuda = device.type == "cuda"
    if path in PER_STEP_PATHS:
        return stepwise_launch(batch, hidden, limits, path)
    try:
        return persistent_launch(kind, batch, hidden, dtype, limits, on_cuda)
    except GridTooLarge:
        if path == "persistent":
            raise
        return stepwise_launch(batch, hidden, limits, "graphed")


def run_persistent(
    kernel, launch: Launch, args: tuple, meta: dict, device: torch.device, forced: bool = False
) -> bool:
    """Launch a persistent kernel over ``launch.grid``; False (nothing ran) when the compiled kernel
    needs more than one SM holds or the device cannot hold the grid at once, and the path was not
    ``forced`` (which streams W_hh if that fits, else raises :class:`GridTooLarge`).

    On CUDA the compiled kernel is loaded before the launch, a grid with barriers is checked against
    its occupancy and launched cooperatively, so the driver refuses what the check missed instead of
    hanging."""
    if device.type != "cuda":
        kernel[launch.grid](*args, **meta, **launch.meta())
        return True
    from rnnkit.kernels.triton.common import OutOfResources  # Triton's, imported only where it runs

    candidates = [launch]
    # W_hh held on chip may need more shared memory than an SM has. Forced, the persistent path then
    # streams W_hh from L2 each step; else the graphed path runs, which was faster than the streamed
    # kernel on an H100 (fp32 T100 B64 H512 forward: 5.4 against 15.8 ms; cuDNN 2.8).
    if launch.w_resident and forced:
        candidates.append(replace(launch, w_resident=False, block_k=min(STREAM_BLOCK_K, launch.block_k)))
    why = ""
    for candidate in candidates:
        constexprs = {**meta, **candidate.meta()}
        options = {"num_warps": candidate.num_warps, "launch_cooperative_grid": candidate.sync}
        compiled = kernel.warmup(*args, grid=candidate.grid, **constexprs, **options)
        try:
            compiled._init_handles()  # loads the kernel: raises when it needs more than an SM holds
        except OutOfResources as err:
            why = f"the compiled kernel does not fit one SM ({err})"
            continue
        if candidate.sync:
            capacity = max_resident_programs(
                DeviceLimits.of(device), compiled.n_regs, candidate.num_warps, compiled.metadata.shared
            )
            try:
                check_coresident(candidate.programs, capacity)
            except GridTooLarge as err:
                why = str(err)
                continue
        kernel[candidate.grid](*args, **constexprs, **options)
        return True
    if forced:
        raise GridTooLarge(f"the persistent path cannot run this shape: {why}")
    return False


def run_per_step(
    name: str,
    loop: Callable[..., None],
    launch: Launch,
    meta: dict,
    inputs: dict[str, torch.Tensor],
    written: dict[str, torch.Tensor],
    outputs: tuple[str, ...],
) -> tuple[torch.Tensor, ...]:
    """Run a per-step kernel ``loop(buffers, launch=, meta=)`` that reads ``inputs`` and fills
    ``written`` (scratch included): launched step by step, or replayed from its recorded CUDA
    graph on the ``graphed`` path (:func:`rnnkit.kernels.triton.graphs.run_loop`). Returns the
    ``outputs`` in order."""
    result = run_loop(
        name,
        partial(loop, launch=launch, meta=meta),
        {**inputs, **written},
        inputs=inputs,
        outputs=outputs,
        graphed=launch.graphed,
        signature=(launch, *sorted(meta.items())),
    )
    return tuple(result[k] for k in outputs)


def barrier_counters(launch: Launch, device: torch.device) -> torch.Tensor:
    """Zeroed grid-barrier counters, one per batch block (a fresh set per launch)."""
    return torch.zeros(launch.batch_blocks, dtype=torch.int32, device=device)
