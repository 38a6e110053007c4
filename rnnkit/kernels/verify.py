"""Compare a backend with torch.nn on one configuration: used by the tests and by
``scripts/check_kernels.py`` (the correctness sweep to point at a GPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import rnnkit.nn as rnn

LAYERS = {"lstm": (rnn.LSTM, nn.LSTM), "gru": (rnn.GRU, nn.GRU)}


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
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    ours_cls, torch_cls = LAYERS[kind]
    reference = torch_cls(input_size, hidden_size, **layer_kwargs).double()
    for p in reference.parameters():
        p.data.uniform_(-(hidden_size**-0.5), hidden_size**-0.5, generator=generator)
    ours = ours_cls(input_size, hidden_size, backend=backend, dtype=torch.float64, **layer_kwargs)
    ours.load_state_dict(reference.state_dict())  # in float64, then cast: both start from the same values
    ours = ours.to(device, dtype)
    reference = reference.to(device)
    lead = ours.num_layers * ours.num_directions
    sizes = ours.layer_cells()[0].state_sizes()
    x = torch.randn(steps, batch, input_size, generator=generator, dtype=torch.float64)
    state = [torch.randn(lead, batch, s, generator=generator, dtype=torch.float64) for s in sizes]
    weights = None
    results = []
    for module, dt in ((ours, dtype), (reference, torch.float64)):
        xi = x.to(device, dt).requires_grad_()
        si = [s.to(device, dt).requires_grad_() for s in state]
        hx = si[0] if len(si) == 1 else tuple(si)
        inp = xi if lengths is None else nn.utils.rnn.pack_padded_sequence(xi, lengths, enforce_sorted=False)
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
    names += [f"d_{n}" for n, _ in reference.named_parameters()]
    ours_t, ref_t = results
    max_abs = [(a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(ours_t, ref_t, strict=True)]
    rel = [((a - b).norm() / b.norm().clamp(min=1e-30)).item() for a, b in zip(ours_t, ref_t, strict=True)]
    return Comparison(names, max_abs, rel)
