"""The recorded per-step loops of the ``graphed`` Triton path (:mod:`rnnkit.kernels.triton.graphs`).

On a GPU these record real CUDA graphs; without one the recording is the CPU stand-in (the loop
replayed on the same static buffers), so CI checks what both share: one recording per signature,
inputs copied in at every call, outputs copied out into fresh tensors, the cache's bound. The
kernels' numbers through this path are checked with every other backend in tests/test_kernels.py
(``triton-graphed``)."""

from __future__ import annotations

import pytest
import torch

from rnnkit.kernels.triton import graphs as step_graphs
from rnnkit.kernels.triton.common import why_triton_cannot_run

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_REASON = why_triton_cannot_run(DEVICE)


@pytest.fixture(autouse=True)
def _fresh_cache():
    step_graphs.clear()
    yield
    step_graphs.clear()


def cumulative_loop(b):
    """A stand-in for a per-step kernel loop: out[t] = out[t - 1] + x[t] * w, written in place."""
    out = b["out"]
    out[0].copy_(b["x"][0] * b["w"])
    for t in range(1, out.shape[0]):
        torch.add(out[t - 1], b["x"][t] * b["w"], out=out[t])


def run(x, w, graphed=True):
    out = torch.empty_like(x)
    buffers = {"x": x, "w": w}
    written = step_graphs.run_loop(
        "cumsum", cumulative_loop, {**buffers, "out": out}, buffers, ("out",), graphed, ("tiles", 16)
    )
    return written["out"]


def test_each_call_reads_its_own_inputs_through_one_recording():
    first_x, second_x = torch.randn(5, 3, device=DEVICE), torch.randn(5, 3, device=DEVICE)
    w = torch.tensor(2.0, device=DEVICE)
    a = run(first_x, w)
    b = run(second_x, w)
    assert step_graphs.recorded_count() == 1  # same signature: recorded once, replayed twice
    torch.testing.assert_close(a, (first_x * 2).cumsum(0))
    torch.testing.assert_close(b, (second_x * 2).cumsum(0))
    torch.testing.assert_close(a, (first_x * 2).cumsum(0))  # a fresh tensor: the replay did not touch it


def test_a_new_length_is_a_new_recording_and_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(step_graphs, "MAX_GRAPHS", 3)
    for steps in range(1, 6):
        x = torch.randn(steps, 2, device=DEVICE)
        torch.testing.assert_close(run(x, torch.tensor(1.0, device=DEVICE)), x.cumsum(0))
    assert step_graphs.recorded_count() == 3


def test_the_cache_is_bounded_in_bytes_and_keeps_the_newest(monkeypatch):
    monkeypatch.setattr(step_graphs, "MAX_BYTES", 3 * 10 * 4 * 4)  # three (10, 4) float32 buffers
    for steps in (10, 11, 12):
        x = torch.randn(steps, 4, device=DEVICE)
        torch.testing.assert_close(run(x, torch.tensor(1.0, device=DEVICE)), x.cumsum(0))
        assert step_graphs.recorded_count() == 1  # x and out (and w) exceed a third of the budget
    monkeypatch.setattr(step_graphs, "MAX_BYTES", 0)
    x = torch.randn(3, 4, device=DEVICE)
    torch.testing.assert_close(run(x, torch.tensor(1.0, device=DEVICE)), x.cumsum(0))  # too big: kept
    assert step_graphs.recorded_count() == 1


def test_ungraphed_runs_on_the_callers_buffers():
    x = torch.randn(4, 2, device=DEVICE)
    torch.testing.assert_close(run(x, torch.tensor(3.0, device=DEVICE), graphed=False), (x * 3).cumsum(0))
    assert step_graphs.recorded_count() == 0


@pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("masks", [{}, {"zoneout": 0.3, "recurrent_dropout": 0.2}], ids=["plain", "masks"])
def test_graphed_layers_record_once_per_shape_and_match_the_stepwise_path(kind, masks):
    """Two layers of the same shape share their recordings (forward and backward); a new length
    records anew; every number equals the per-step launches', with the masks of zoneout and
    recurrent dropout too (the same seed draws the same masks)."""
    import rnnkit.nn as rnn

    results = {}
    for path in ("stepwise", "graphed"):
        torch.manual_seed(0)
        layer = getattr(rnn, kind)(
            3, 5, 2, dtype=torch.float64, device=DEVICE, backend=f"triton-{path}", **masks
        )
        found = []
        for steps in (4, 4, 6):
            x = torch.randn(steps, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
            out, _ = layer(x)
            out.pow(2).sum().backward()
            found += [out.detach(), x.grad, *(p.grad.clone() for p in layer.parameters())]
        results[path] = found
    # the recurrence sees xp (T, B, 4H): both layers share; 2 lengths x (forward, backward)
    assert step_graphs.recorded_count() == 2 * 2
    for a, b in zip(results["graphed"], results["stepwise"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
