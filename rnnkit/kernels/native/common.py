"""What the native ops of every cell share: the autograd wiring of a fused recurrence op and its
hand-written backward op, the entry point that picks the inference op, and the fused derivatives.

A cell's ops follow one layout (``n`` state parts: 1 for the GRU's h, 2 for the LSTM's h, C):

- forward ``op(xp, *init, *params, lengths, drop, zone) -> (output, *final, *saved)``;
- backward ``backward_op(d_output, *d_final, *init, weight_hh, lengths, *saved, drop, zone)
  -> (d_xp, *d_init, *d_params)``;
- inference ``inference_op(xp, *init, *params, lengths, drop, zone) -> (output, *final)``;
- higher-order gradients ``vjp(xp, *init, *params, lengths, d_output, *d_final, drop, zone)``
  (:mod:`rnnkit.kernels.reference.double_backward`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnkit.kernels.lengths import full_lengths

sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # grad * y * (1 - y), one pass
tanh_backward = torch.ops.aten.tanh_backward.grad_input  # grad * (1 - y^2), one pass


def needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def register_fused_autograd(op, backward_op, vjp: Callable, parts: int, params: int) -> None:
    """Give the forward ``op`` its backward: ``backward_op`` over the saved activations, or, when a
    differentiable gradient is asked for (``create_graph=True``), ``vjp`` through the reference cell."""

    def setup_context(ctx, inputs, output):
        # the saved activations are outputs nobody differentiates: without this autograd would fill a
        # zero gradient the size of each of them at every backward (missing gradients arrive as None)
        ctx.set_materialize_grads(False)
        saved = output[1 + parts :]
        ctx.save_for_backward(*inputs, *saved)
        ctx.mark_non_differentiable(*saved)

    def backward(ctx, d_output, *grads):
        tensors = ctx.saved_tensors
        xp, init = tensors[0], tensors[1 : 1 + parts]
        weights = tensors[1 + parts : 1 + parts + params]
        lengths, drop, zone = tensors[1 + parts + params : 4 + parts + params]
        saved = tensors[4 + parts + params :]
        d_output = torch.zeros_like(saved[0]) if d_output is None else d_output  # saved[0]: hs (T, B, H)
        d_final = [torch.zeros_like(s) if g is None else g for s, g in zip(init, grads[:parts], strict=True)]
        if torch.is_grad_enabled():  # create_graph=True: a gradient that is itself differentiable
            grads_in = vjp(xp, *init, *weights, lengths, d_output, *d_final, drop, zone)
        else:
            grads_in = backward_op(d_output, *d_final, *init, weights[0], lengths, *saved, drop, zone)
        return (*grads_in, None, None, None)

    op.register_autograd(backward, setup_context=setup_context)


def run_fused(
    recurrence,
    inference,
    xp: Tensor,
    init: tuple[Tensor, ...],
    params: tuple[Tensor, ...],
    lengths: Tensor | None,
    drop: Tensor | None,
    zone: Tensor | None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``(output (T, B, H), final state parts)``: the ``inference`` op when nothing needs a gradient
    (it saves nothing), else the ``recurrence`` op. Absent masks become empty tensors."""
    lengths = full_lengths(xp, lengths)
    drop = xp.new_empty(0) if drop is None else drop
    zone = xp.new_empty(0) if zone is None else zone
    if not needs_grad(xp, *init, *params):
        output, *final = inference(xp, *init, *params, lengths, drop, zone)
    else:
        output, *rest = recurrence(xp, *init, *params, lengths, drop, zone)
        final = rest[: len(init)]
    return output, tuple(final)
