"""Taking a layer out of Python (issue 31): torch.jit.trace and torch.export of the fused layers.

A traced LSTM/GRU runs other batch sizes and lengths with the eager layer's numbers, saves and loads,
and differentiates, as torch.nn's does; torch.export holds with dynamic batch and time. (ONNX and an
export command for trained models are not done yet: see issue 31.)"""

from __future__ import annotations

import io

import pytest
import torch

import rnnkit.nn as rnn

KINDS = {"LSTM": rnn.LSTM, "GRU": rnn.GRU}


def traced(layer: torch.nn.Module, x: torch.Tensor, grad: bool) -> torch.jit.ScriptModule:
    with torch.enable_grad() if grad else torch.no_grad():
        module = torch.jit.trace(layer, (x,))  # check_trace on: traced again and compared
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_traced_layer_runs_other_shapes_with_the_layers_numbers(kind, grad):
    torch.manual_seed(0)
    layer = KINDS[kind](5, 7, num_layers=2, batch_first=True, bidirectional=True, dtype=torch.float64).eval()
    loaded = traced(layer, torch.randn(3, 4, 5, dtype=torch.float64), grad)
    for batch, steps in [(3, 4), (1, 9), (6, 2)]:
        x = torch.randn(batch, steps, 5, dtype=torch.float64, requires_grad=True)
        out, state = loaded(x)
        expected_out, expected_state = layer(x)
        torch.testing.assert_close(out, expected_out, atol=1e-12, rtol=1e-12)
        for part, expected_part in zip(
            state if isinstance(state, tuple) else (state,),
            expected_state if isinstance(expected_state, tuple) else (expected_state,),
            strict=True,
        ):
            torch.testing.assert_close(part, expected_part, atol=1e-12, rtol=1e-12)
        (got,) = torch.autograd.grad(out.pow(2).sum(), x)
        (want,) = torch.autograd.grad(expected_out.pow(2).sum(), x)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_with_dynamic_batch_and_time(kind):
    layer = KINDS[kind](5, 7, num_layers=2, batch_first=True).eval()
    batch, steps = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("steps", min=2, max=512)
    program = torch.export.export(
        layer, (torch.randn(3, 4, 5),), dynamic_shapes=({0: batch, 1: steps},), strict=False
    )
    x = torch.randn(5, 11, 5)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x)[0], layer(x)[0], atol=1e-6, rtol=1e-6)
