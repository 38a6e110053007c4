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
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.kernels.lengths import full_lengths
from rnnkit.kernels.native import cpp_loop

sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # grad * y * (1 - y), one pass
tanh_backward = torch.ops.aten.tanh_backward.grad_input  # grad * (1 - y^2), one pass


def needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _fused_backward(saved_tensors, d_output, grads, parts: int, params: int, backward_op, vjp: Callable):
    """The gradients of a fused forward's inputs from what it saved: ``backward_op`` over the saved
    activations, or, when a differentiable gradient is asked for (``create_graph=True``), ``vjp``
    through the reference cell."""
    xp, init = saved_tensors[0], saved_tensors[1 : 1 + parts]
    weights = saved_tensors[1 + parts : 1 + parts + params]
    lengths, drop, zone = saved_tensors[1 + parts + params : 4 + parts + params]
    saved = saved_tensors[4 + parts + params :]
    d_output = torch.zeros_like(saved[0]) if d_output is None else d_output  # saved[0]: hs (T, B, H)
    d_final = [torch.zeros_like(s) if g is None else g for s, g in zip(init, grads[:parts], strict=True)]
    if torch.is_grad_enabled():  # create_graph=True: a gradient that is itself differentiable
        lengths = full_lengths(xp, lengths if lengths.numel() else None)  # the eager path passes none
        return vjp(xp, *init, *weights, lengths, d_output, *d_final, drop, zone)
    return backward_op(d_output, *d_final, *init, weights[0], lengths, *saved, drop, zone)


def _save_for_fused_backward(ctx, inputs, output, parts: int) -> None:
    # the saved activations are outputs nobody differentiates: without this autograd would fill a
    # zero gradient the size of each of them at every backward (missing gradients arrive as None)
    ctx.set_materialize_grads(False)
    saved = output[1 + parts :]
    ctx.save_for_backward(*inputs, *saved)
    ctx.mark_non_differentiable(*saved)


def register_fused_autograd(op, backward_op, vjp: Callable, parts: int, params: int) -> None:
    """Give the forward ``op`` its backward (:func:`_fused_backward`)."""

    def setup_context(ctx, inputs, output):
        _save_for_fused_backward(ctx, inputs, output, parts)

    def backward(ctx, d_output, *grads):
        grads_in = _fused_backward(ctx.saved_tensors, d_output, grads, parts, params, backward_op, vjp)
        return (*grads_in, None, None, None)

    op.register_autograd(backward, setup_context=setup_context)


@dataclass(frozen=True)
class CppLoop:
    """A cell's C++ time loop (``torch.ops.rnnkit_cpp.<name>_forward/_backward``, the ops the custom
    ops call on the CPU) and what its autograd node needs: the state ``parts``, the recurrent
    ``params`` and the differentiable ``vjp`` for higher-order gradients."""

    name: str
    parts: int
    params: int
    vjp: Callable


class _EagerCppRecurrence(torch.autograd.Function):
    """One eager call of a C++ time loop with its backward, outside ``torch.library``.

    The same forward, backward and saved tensors as the custom op (``register_fused_autograd``),
    without the custom op's Python dispatch and autograd wrapping, which cost ~0.1 ms a call: a
    tenth of a 2-layer LSTM at T24 B32 H64 (issue 30). ``torch.compile`` still sees the custom op."""

    @staticmethod
    def forward(ctx, loop: CppLoop, ops, *inputs: Tensor) -> tuple[Tensor, ...]:
        # ctx-style (no setup_context): Function.apply then skips binding the arguments through
        # inspect.signature at every call (~0.15 ms); under functorch transforms, which need
        # setup_context, the layers run the reference loop instead
        output = tuple(getattr(ops, f"{loop.name}_forward")(*inputs, True))
        ctx.loop, ctx.ops = loop, ops
        _save_for_fused_backward(ctx, inputs, output, loop.parts)
        return output

    @staticmethod
    def backward(ctx, d_output, *grads):
        loop: CppLoop = ctx.loop
        backward_op = getattr(ctx.ops, f"{loop.name}_backward")
        grads_in = _fused_backward(
            ctx.saved_tensors, d_output, grads, loop.parts, loop.params, backward_op, loop.vjp
        )
        return (None, None, *grads_in, None, None, None)


def eager_outside_transforms() -> bool:
    """Whether a call runs in plain eager mode, where the C++ loops are called without the custom
    ops: not under ``torch.compile`` (which sees the custom ops), ``torch.jit.trace`` or a functorch
    transform (``torch.func.grad``, ``vmap``...: they need a ``setup_context`` the eager nodes skip;
    the layers run the reference loop under them)."""
    return not (
        torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._are_functorch_transforms_active()
    )


def run_fused(
    recurrence,
    inference,
    xp: Tensor,
    init: tuple[Tensor, ...],
    params: tuple[Tensor, ...],
    lengths: Tensor | None,
    drop: Tensor | None,
    zone: Tensor | None,
    cpp: CppLoop | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``(output (T, B, H), final state parts)``: the ``inference`` op when nothing needs a gradient
    (it saves nothing), else the ``recurrence`` op. Absent masks become empty tensors. In eager mode
    on the CPU the ``cpp`` loop these ops would run is called directly (same numbers, less overhead;
    no lengths is an empty tensor there, which the loop reads as every sequence running all T steps)."""
    drop = xp.new_empty(0) if drop is None else drop
    zone = xp.new_empty(0) if zone is None else zone
    if torch.jit.is_tracing():
        # one graph whatever the grad mode (jit.trace checks its trace again under no_grad): the
        # custom op that saves for backward, whose autograd runs in the traced module too
        output, *rest = recurrence(xp, *init, *params, full_lengths(xp, lengths), drop, zone)
        return output, tuple(rest[: len(init)])
    ops = None if cpp is None or not eager_outside_transforms() else cpp_loop.usable(xp)
    if ops is not None:
        lengths = xp.new_empty(0, dtype=torch.long) if lengths is None else lengths
        if not needs_grad(xp, *init, *params):
            output, *final = getattr(ops, f"{cpp.name}_forward")(
                xp, *init, *params, lengths, drop, zone, False
            )
        else:
            output, *rest = _EagerCppRecurrence.apply(cpp, ops, xp, *init, *params, lengths, drop, zone)
            final = rest[: len(init)]
        return output, tuple(final)
    lengths = full_lengths(xp, lengths)
    if not needs_grad(xp, *init, *params):
        output, *final = inference(xp, *init, *params, lengths, drop, zone)
    else:
        output, *rest = recurrence(xp, *init, *params, lengths, drop, zone)
        final = rest[: len(init)]
    return output, tuple(final)
