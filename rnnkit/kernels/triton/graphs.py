"""The per-step kernel loops replayed from CUDA graphs: the host's launch cost taken out of the
``graphed`` Triton path (:mod:`rnnkit.kernels.triton.paths`).

A per-step recurrence launches one kernel per time step from Python, about 10 us of host time
each; at small batch and hidden sizes the GPU finishes a step sooner than the host launches the
next. A CUDA graph records the whole loop of launches once and replays it with one call.

A graph replays the addresses it was recorded with, so each recorded loop owns *static* buffers:
the inputs are copied into them before a replay and the outputs copied out after (plain device
copies, a few microseconds each, that the graph would otherwise save many times over). One loop is
recorded per signature (kernel loop, shapes, dtypes, tile sizes and compile-time flags) and kept,
with its buffers, in a small least-recently-used cache (:data:`MAX_GRAPHS` loops, :data:`MAX_BYTES`
of buffers); a new sequence length is a new signature, recorded at its first use (a warm-up run,
then the recording).

Where recording cannot work (the loop is already being recorded by the caller's own CUDA graph, or
the tensors are not on CUDA) the loop runs as it is. The CPU interpreter has no graphs: there
:class:`RecordedLoop` replays the loop on the same static buffers, so the tests exercise all the
copying in and out that the GPU path does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

Buffers = dict[str, Tensor]
Loop = Callable[[Buffers], None]

MAX_GRAPHS = 16  # recorded loops kept (each holds its own static buffers)
MAX_BYTES = 2 * 1024**3  # and the most their static buffers may hold together (the newest is always kept)


class RecordedLoop:
    """A loop of kernel launches recorded over static buffers, replayed on demand."""

    def __init__(self, loop: Loop, static: Buffers) -> None:
        self.loop = loop
        self.static = static
        self.nbytes = sum(t.numel() * t.element_size() for t in static.values())
        self.graph: torch.cuda.CUDAGraph | None = None
        device = next(iter(static.values())).device
        if device.type == "cuda":
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up: compiles the kernels outside the recording
                loop(static)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                loop(static)

    def replay(self) -> None:
        if self.graph is None:  # the CPU interpreter: run the loop on the static buffers
            self.loop(self.static)
        else:
            self.graph.replay()


_RECORDED: OrderedDict[tuple, RecordedLoop] = OrderedDict()


def _signature(name: str, buffers: Buffers, extra: Iterable) -> tuple:
    tensors = tuple((k, tuple(v.shape), v.stride(), v.dtype, v.device) for k, v in sorted(buffers.items()))
    return (name, tensors, tuple(extra))


def can_record(buffers: Buffers) -> bool:
    """Recording is possible: CUDA tensors, no recording of the caller's under way (the CPU
    interpreter counts as possible: it replays without a graph)."""
    device = next(iter(buffers.values())).device
    if device.type != "cuda":
        return True
    return not torch.cuda.is_current_stream_capturing()


def run_loop(
    name: str,
    loop: Loop,
    buffers: Buffers,
    inputs: Iterable[str],
    outputs: Iterable[str],
    graphed: bool,
    signature: Iterable = (),
) -> Buffers:
    """Run ``loop(buffers)``, which launches kernels that read ``inputs`` and write ``outputs``.

    With ``graphed``, the loop recorded for this signature (``name``, the buffers' shapes, strides,
    dtypes and devices, and ``signature``: tile sizes and compile-time flags) is replayed on its
    static buffers, recorded first if need be. Returns the output buffers (fresh tensors, not the
    static ones, which the next replay overwrites)."""
    if not graphed or not can_record(buffers):
        loop(buffers)
        return {k: buffers[k] for k in outputs}
    key = _signature(name, buffers, signature)
    recorded = _RECORDED.get(key)
    if recorded is None:
        static = {k: v.clone() for k, v in buffers.items()}
        recorded = _RECORDED[key] = RecordedLoop(loop, static)
    _RECORDED.move_to_end(key)
    while len(_RECORDED) > 1 and (
        len(_RECORDED) > MAX_GRAPHS or sum(r.nbytes for r in _RECORDED.values()) > MAX_BYTES
    ):
        _RECORDED.popitem(last=False)  # the least recently used
    for k in inputs:
        recorded.static[k].copy_(buffers[k])
    recorded.replay()
    return {k: recorded.static[k].clone() for k in outputs}


def clear() -> None:
    """Forget every recorded loop (and free its buffers)."""
    _RECORDED.clear()


def recorded_count() -> int:
    return len(_RECORDED)
