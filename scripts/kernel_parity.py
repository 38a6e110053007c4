"""Compare a backend with torch.nn (or, for what torch.nn lacks, with rnnkit's reference loop) on one
configuration: used by the tests and by ``scripts/check_kernels.py`` (the correctness sweep to point
at a GPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import rnnkit.nn as rnn

LAYERS = {"lstm": (rnn.LSTM, nn.LSTM), "gru": (rnn.GRU, nn.GRU)}
# the worst error allowed per dtype: max |diff| in float64, relative norm otherwise
BOUNDS = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 6e-2, torch.float16: 1e-2}


@dataclass
class Comparison:
    """Errors of every compared tensor: outputs (output, final states) then gradients (input,
    initial states, every parameter in torch's order), against torch.nn run in float64."""

    names: list[str]
    max_abs: list[float]
    relative: list[float]

    def worst(self, relative: bool = False) -> tuple[str, float]:
        values = self.relative if relative else self.max_abs
        k = max(range(len(values)), key=values.__getitem__)
        return self.names[k], values[k]


def compare_with_torch(
    kind: str,
    backend: str,
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    lengths: Tensor | None = None,
    seed: int = 0,
    **layer_kwargs: object,
) -> Comparison:
    """Run rnnkit's layer (``backend``, ``dtype``) and torch.nn's (float64) on the same fresh random
    input, initial state and weights, with a random linear loss on every output; compare."""
    ours_cls, torch_cls = LAYERS[kind]
    generator = torch.Generator().manual_seed(seed)
    reference = torch_cls(input_size, hidden_size, **layer_kwargs).double()
    for p in reference.parameters():
        p.data.uniform_(-(hidden_size**-0.5), hidden_size**-0.5, generator=generator)
    ours = ours_cls(input_size, hidden_size, backend=backend, dtype=torch.float64, **layer_kwargs)
    ours.load_state_dict(reference.state_dict())  # in float64, then cast: both start from the same values
    runs = ((ours.to(device, dtype), dtype), (reference.to(device), torch.float64))
    return _compare(runs, steps, batch, input_size, lengths, generator, device)


def compare_with_reference(
    kind: str,
    backend: str,
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    lengths: Tensor | None = None,
    seed: int = 0,
    **layer_kwargs: object,
) -> Comparison:
    """Like :func:`compare_with_torch` for what torch.nn lacks (``zoneout``, ``recurrent_dropout``
    in ``layer_kwargs``): the layer in training mode against the same layer on the ``"reference"``
    backend, both in ``dtype`` (the masks are drawn in the run's dtype, so both draw the same masks
    only at the same dtype), the generators seeded alike before each run."""
    ours_cls, _ = LAYERS[kind]
    generator = torch.Generator().manual_seed(seed)
    ours = ours_cls(input_size, hidden_size, backend=backend, dtype=torch.float64, **layer_kwargs)
    for p in ours.parameters():
        p.data.uniform_(-(hidden_size**-0.5), hidden_size**-0.5, generator=generator)
    reference = ours_cls(input_size, hidden_size, backend="reference", dtype=torch.float64, **layer_kwargs)
    reference.load_state_dict(ours.state_dict())
    runs = ((ours.to(device, dtype), dtype), (reference.to(device, dtype), dtype))
    return _compare(runs, steps, batch, input_size, lengths, generator, device, mask_seed=seed)


def _compare(
    runs: tuple[tuple[nn.Module, torch.dtype], ...],
    steps: int,
    batch: int,
    input_size: int,
    lengths: Tensor | None,
    generator: torch.Generator,
    device: torch.device | str,
    mask_seed: int | None = None,
) -> Comparison:
    """Run each ``(module, dtype)`` on the same input, initial state and linear loss (all drawn in
    float64 from ``generator``); compare the first run with the second."""
    device = torch.device(device)
    first = runs[0][0]
    lead = first.num_layers * first.num_directions
    sizes = first.layer_cells()[0].state_sizes()
    x = torch.randn(steps, batch, input_size, generator=generator, dtype=torch.float64)
    state = [torch.randn(lead, batch, s, generator=generator, dtype=torch.float64) for s in sizes]
    weights = None
    results = []
    for module, dt in runs:
        xi = x.to(device, dt).requires_grad_()
        si = [s.to(device, dt).requires_grad_() for s in state]
        hx = si[0] if len(si) == 1 else tuple(si)
        inp = xi if lengths is None else nn.utils.rnn.pack_padded_sequence(xi, lengths, enforce_sorted=False)
        if mask_seed is not None:
            torch.manual_seed(mask_seed)  # the same masks for every run
        out, h_n = module(inp, hx)
        leaves = [out.data if lengths is not None else out, *(h_n if isinstance(h_n, tuple) else (h_n,))]
        if weights is None:
            weights = [
                torch.randn(t.shape, generator=generator, dtype=torch.float64).to(device) for t in leaves
            ]
        loss = sum((t.double() * w).sum() for t, w in zip(leaves, weights, strict=True))
        grads = torch.autograd.grad(loss, [xi, *si, *module.parameters()])
        results.append([t.detach().double() for t in (*leaves, *grads)])
    names = [
        "output",
        *[f"h_n[{k}]" for k in range(len(sizes))],
        "d_input",
        *[f"d_h0[{k}]" for k in range(len(sizes))],
    ]
    names += [f"d_{n}" for n, _ in runs[-1][0].named_parameters()]
    ours_t, ref_t = results
    max_abs = [(a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(ours_t, ref_t, strict=True)]
    rel = [((a - b).norm() / b.norm().clamp(min=1e-30)).item() for a, b in zip(ours_t, ref_t, strict=True)]
    return Comparison(names, max_abs, rel)


def compare_launch_with_cpu_op(
    kind: str,
    launch: object,
    steps: int,
    batch: int,
    hidden: int,
    lengths: Tensor | None = None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
    seed: int = 0,
) -> float:
    """The Triton op of ``kind`` run with a hand-made ``launch`` (:class:`rnnkit.kernels.triton.paths.Launch`:
    tiles and paths the table rarely picks) against the ``native`` backend's op, in float64 on fresh
    random inputs: the largest |diff| over the outputs, the final states and the gradients of the
    projected input, the initial states and the recurrent weights (and the GRU's b_hh) under a
    random linear loss. ``drop``, ``zone``: masks as the ops take them (:mod:`rnnkit.kernels.zoneout`)."""
    from rnnkit.kernels.native import gru as cpu_gru
    from rnnkit.kernels.native import lstm as cpu_lstm
    from rnnkit.kernels.triton import gru as triton_gru
    from rnnkit.kernels.triton import lstm as triton_lstm

    gen = torch.Generator().manual_seed(seed)
    gates = 4 if kind == "lstm" else 3

    def draw(*shape: int, scale: float = 1.0) -> Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()

    xp, h0, w = (
        draw(steps, batch, gates * hidden),
        draw(batch, hidden),
        draw(gates * hidden, hidden, scale=hidden**-0.5),
    )
    if kind == "lstm":
        inputs = (xp, h0, draw(batch, hidden), w)
        ours = triton_lstm.lstm_forward(xp, (h0, inputs[2]), w, lengths, launch, drop, zone)
        ref = cpu_lstm.lstm_forward(xp, (h0, inputs[2]), w, lengths, drop, zone)
    else:
        inputs = (xp, h0, w, draw(gates * hidden))
        ours = triton_gru.gru_forward(xp, h0, w, inputs[3], lengths, launch, drop, zone)
        ref = cpu_gru.gru_forward(xp, h0, w, inputs[3], lengths, drop, zone)
    results = []
    weights = None
    for out in (ours, ref):
        flat = [out[0], *out[1]] if isinstance(out[1], tuple) else list(out)
        if weights is None:
            weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in flat]
        loss = sum((t * wt).sum() for t, wt in zip(flat, weights, strict=True))
        results.append([t.detach() for t in (*flat, *torch.autograd.grad(loss, inputs))])
    return max((a - b).abs().max().item() for a, b in zip(*results, strict=True))
