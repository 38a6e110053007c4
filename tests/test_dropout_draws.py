"""Dropout between layers draws torch.nn's random numbers, in every backend and for every input kind.

A seeded program that swaps rnnkit's layers for torch's must give torch's numbers with dropout on:
the same masks (so the same outputs and gradients) and the generator left where torch leaves it
(so everything drawn afterwards is the same too). torch drops the tensor the next layer reads:
``(T, B, D*H)`` for padded input, the packed data ``(sum of lengths, D*H)`` for a PackedSequence.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn
from rnnkit.kernels.triton.common import why_triton_cannot_run
from rnnkit.nn.sequence import dropout_between_layers, pack_like, unpack_to_padded

D = torch.float64
TRITON_REASON = why_triton_cannot_run(torch.device("cpu"))
needs_triton = pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton cannot run: {TRITON_REASON}")
# every backend that runs a built-in cell on the CPU; "compiled" compiles once per shape (slow: one
# case), Triton runs through its interpreter
BACKENDS = {
    "LSTM": ["reference", "native", "triton"],
    "GRU": ["reference", "native", "triton"],
    "RNN": ["reference"],
}
CASES = [
    pytest.param(kind, backend, marks=[needs_triton] if backend == "triton" else [])
    for kind, backends in BACKENDS.items()
    for backend in backends
]
INPUTS = ["padded", "batch_first", "packed_sorted", "packed_unsorted"]


def make_input(kind: str, steps: int = 6, batch: int = 4, features: int = 3):
    x = torch.randn(steps, batch, features, dtype=D, requires_grad=True)
    if kind == "padded":
        return x, x
    if kind == "batch_first":
        return x, x.transpose(0, 1)
    lengths = torch.tensor([6, 5, 3, 2]) if kind == "packed_sorted" else torch.tensor([3, 6, 2, 5])
    return x, pack_padded_sequence(x, lengths, enforce_sorted=kind == "packed_sorted")


def run_seeded(layer: nn.Module, inputs: str):
    """Forward and backward from seed 1; returns outputs, every gradient and the generator's state."""
    torch.manual_seed(1)
    leaf, x = make_input(inputs)
    out, state = layer(x)
    h = state[0] if isinstance(state, tuple) else state
    data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    (data.square().sum() + h.sum()).backward()
    grads = {name: p.grad for name, p in layer.named_parameters()}
    return data.detach(), h.detach(), leaf.grad, grads, torch.get_rng_state()


def build_pair(kind: str, backend: str, batch_first: bool):
    torch.manual_seed(0)
    kwargs = dict(num_layers=3, dropout=0.5, bidirectional=True, batch_first=batch_first, dtype=D)
    theirs = getattr(nn, kind)(3, 5, **kwargs)
    ours = getattr(rnn, kind)(3, 5, backend=backend, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize(("kind", "backend"), CASES)
def test_dropout_between_layers_draws_torchs_masks_and_leaves_the_generator_where_torch_does(
    kind, backend, inputs
):
    theirs, ours = build_pair(kind, backend, batch_first=inputs == "batch_first")
    out_t, h_t, dx_t, grads_t, rng_t = run_seeded(theirs, inputs)
    out_o, h_o, dx_o, grads_o, rng_o = run_seeded(ours, inputs)
    assert torch.equal(rng_o, rng_t), "the generator ends elsewhere than torch's: other draws were taken"
    torch.testing.assert_close(out_o, out_t, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(h_o, h_t, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(dx_o, dx_t, atol=1e-10, rtol=1e-10)
    for name, grad in grads_t.items():
        torch.testing.assert_close(grads_o[name], grad, atol=1e-10, rtol=1e-10, msg=name)


def test_the_compiled_backend_draws_torchs_masks_on_packed_input():
    """One case for ``compiled`` (it compiles per shape): packed, unsorted, as the others."""
    theirs, ours = build_pair("LSTM", "compiled", batch_first=False)
    out_t, h_t, _, grads_t, rng_t = run_seeded(theirs, "packed_unsorted")
    out_o, h_o, _, grads_o, rng_o = run_seeded(ours, "packed_unsorted")
    assert torch.equal(rng_o, rng_t)
    torch.testing.assert_close(out_o, out_t, atol=1e-10, rtol=1e-10)
    for name, grad in grads_t.items():
        torch.testing.assert_close(grads_o[name], grad, atol=1e-10, rtol=1e-10, msg=name)


def test_a_dropped_packed_output_keeps_its_padding_steps_zero():
    """What rnnkit's next layer reads on packed input: dropped where a sequence runs, zero past its
    end, and the draws those of the packed data (sum of lengths, F)."""
    torch.manual_seed(0)
    _, packed = make_input("packed_unsorted")
    padded, lengths = unpack_to_padded(packed)  # (T, B, F)
    torch.manual_seed(2)
    dropped = dropout_between_layers(padded, 0.5, packed)
    torch.manual_seed(2)
    expected = nn.functional.dropout(packed.data, 0.5, training=True)
    torch.testing.assert_close(pack_like(dropped, packed).data, expected, atol=0, rtol=0)
    past_end = torch.arange(padded.shape[0])[:, None] >= lengths[None, :]  # (T, B)
    assert dropped[past_end].abs().sum() == 0
    assert (dropped[~past_end] == 0).any() and (dropped[~past_end] != 0).any()
