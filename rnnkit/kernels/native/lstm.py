"""The LSTM recurrence as one custom op with a hand-written backward (the fast CPU path).

Forward and backward loop over time inside the op, in C++ where it could be built
(:mod:`.cpp_loop`, ``csrc/lstm_loop.cpp``: one product and one pass over the rows per step), else
in the Python below: no autograd graph per step, preallocated
buffers, in-place pointwise work with fused derivative kernels (``sigmoid_backward``,
``tanh_backward``), the recurrent product through oneDNN with pre-packed weights where it runs
(:mod:`.cpu_matmul`), and the recurrent weight gradient as one GEMM over all steps. Being a
``torch.library.custom_op`` with a fake implementation, it is a single node under ``torch.compile``:
the graph does not break at every step. Without gradients a lighter op runs (nothing saved).
Higher-order gradients re-run the reference cell (:mod:`.double_backward`).

Semantics are those of :func:`rnnkit.kernels.reference.run_cell` with :class:`rnnkit.cells.LSTMCell`
(no projection) run over ``xp + bias``: the input product ``x W_ih^T`` is computed outside, the bias
``b_ih + b_hh`` is added in the loop (one pass fewer over ``(T, B, 4H)`` than a projection with its
bias), past a sequence's length the state is frozen and the output is zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.rnn import both_biases
from rnnkit.kernels.lengths import full_lengths, step_mask
from rnnkit.kernels.native import cpp_loop
from rnnkit.kernels.native.common import (
    CppLoop,
    needs_grad,
    register_fused_autograd,
    run_fused,
    sigmoid_backward,
    tanh_backward,
)
from rnnkit.kernels.native.matmul import RecurrentProduct
from rnnkit.kernels.reference.double_backward import lstm_bias_vjp
from rnnkit.kernels.zoneout import ZoneoutKeep


def _activate(g: Tensor, hidden: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gate pre-activations (B, 4H) -> i, f, C~, o in place."""
    g[:, : 2 * hidden].sigmoid_()  # i_t, f_t
    g[:, 2 * hidden : 3 * hidden].tanh_()  # C~_t
    g[:, 3 * hidden :].sigmoid_()  # o_t
    return g.split(hidden, dim=1)


@torch.library.custom_op("rnnkit::lstm_recurrence", mutates_args=(), device_types=("cpu", "cuda"))
def lstm_recurrence(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    bias: Tensor,
    lengths: Tensor,
    drop: Tensor,
    zone: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(output (T, B, H), h_n, c_n)`` and, saved for backward, ``hs (T, B, H)`` (states, not
    zeroed past the end), ``gates (T, B, 4H)`` (activated), ``cells (T, B, H)`` and
    ``tanh_cells``, tanh of the cell update before zoneout.
    ``drop``: the sequence's recurrent-dropout mask ``(B, H)`` multiplying h_{t-1} in the product,
    or an empty tensor for none. ``zone``: zoneout (:func:`.zoneout.zoneout_keep`), or empty."""
    compiled = cpp_loop.usable(xp)
    if compiled is not None:
        return tuple(compiled.lstm_forward(xp, h0, c0, weight_hh, bias, lengths, drop, zone, True))
    xp = xp + bias  # (T, B, 4H): x_t W_ih^T + b
    steps, batch, four_h = xp.shape
    hidden = four_h // 4
    mask = step_mask(lengths, steps)
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    hs = xp.new_empty(steps, batch, hidden)  # h_t (frozen past the end)
    cells = xp.new_empty(steps, batch, hidden)  # C_t
    tanh_cells = xp.new_empty(steps, batch, hidden)  # tanh(C_t)
    gates = xp.new_empty(steps, batch, four_h)  # activated i, f, C~, o
    product = RecurrentProduct(weight_hh, batch, steps)
    h, c = h0, c0
    for t in range(steps):
        g = product.add_into(
            xp[t], h * drop if dropping else h, out=gates[t]
        )  # (B, 4H): W [h_{t-1}, x_t] + b
        i, f, c_tilde, o = _activate(g, hidden)
        c_t = torch.mul(f, c, out=cells[t]).addcmul_(i, c_tilde)  # C_t = f * C_{t-1} + i * C~
        h_t = torch.mul(o, torch.tanh(c_t, out=tanh_cells[t]), out=hs[t])  # h_t = o * tanh(C_t)
        if keep:
            keep.mix(t, (h_t, c_t), (h, c))
        if mask is not None:
            c_t.copy_(torch.where(mask[t], c_t, c))
            h_t.copy_(torch.where(mask[t], h_t, h))
        h, c = h_t, c_t
    output = hs.clone() if mask is None else hs.masked_fill(~mask, 0.0)  # outputs may not alias saved state
    return output, h.clone(), c.clone(), hs, gates, cells, tanh_cells


@lstm_recurrence.register_fake
def _(xp, h0, c0, weight_hh, bias, lengths, drop, zone):
    steps, batch, four_h = xp.shape
    seq = xp.new_empty(steps, batch, four_h // 4)
    return (
        seq,
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
        seq.clone(),
        xp.new_empty(xp.shape),
        seq.clone(),
        seq.clone(),
    )


@torch.library.custom_op("rnnkit::lstm_recurrence_backward", mutates_args=(), device_types=("cpu", "cuda"))
def lstm_recurrence_backward(
    d_output: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    lengths: Tensor,
    hs: Tensor,
    gates: Tensor,
    cells: Tensor,
    tanh_cells: Tensor,
    drop: Tensor,
    zone: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(d_xp, d_h0, d_c0, d_weight_hh, d_bias)`` by BPTT over the saved activations."""
    compiled = cpp_loop.usable(gates)
    if compiled is not None:
        return tuple(
            compiled.lstm_backward(
                d_output, d_hn, d_cn, h0, c0, weight_hh, lengths, hs, gates, cells, tanh_cells, drop, zone
            )
        )
    steps, batch, four_h = gates.shape
    hidden = four_h // 4
    mask = step_mask(lengths, steps)
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    d_gates = gates.new_empty(steps, batch, four_h)  # d(pre-activations) = d xp_t
    through_w = RecurrentProduct(weight_hh.t(), batch, steps)  # dG_t W_hh
    dh = d_hn.clone()  # dL/dh_t arriving from the future
    dc = d_cn.clone()  # dL/dC_t arriving from the future
    tmp = torch.empty_like(dc)
    for t in range(steps - 1, -1, -1):
        dh.add_(d_output[t] if mask is None else d_output[t] * mask[t])  # dL/dh_t
        i, f, c_tilde, o = gates[t].split(hidden, dim=1)
        di, df, dg, do = d_gates[t].split(hidden, dim=1)
        tanh_c = tanh_cells[t]
        c_prev = cells[t - 1] if t > 0 else c0
        # zoneout: h_t = k_h h_{t-1} + (1 - k_h) h~_t (C likewise) sends k dL/dh_t straight to h_{t-1}
        (dh_new, dc_new), (dh_kept, dc_kept) = keep.split(t, (dh, dc)) if keep else ((dh, dc), (dh, dc))
        sigmoid_backward(torch.mul(dh_new, tanh_c, out=tmp), o, grad_input=do)  # d o_pre
        via_h = tanh_backward(torch.mul(dh_new, o, out=tmp), tanh_c, grad_input=tmp)  # o (1 - tanh^2)
        # dL/dC~_t update: in place unless dc itself must survive for the frozen rows' pass-through
        dc_t = dc_new + via_h if mask is not None and not keep else dc_new.add_(via_h)
        sigmoid_backward(torch.mul(dc_t, c_tilde, out=tmp), i, grad_input=di)  # d i_pre
        sigmoid_backward(torch.mul(dc_t, c_prev, out=tmp), f, grad_input=df)  # d f_pre
        tanh_backward(torch.mul(dc_t, i, out=tmp), c_tilde, grad_input=dg)  # d C~_pre
        if mask is not None:
            d_gates[t].mul_(mask[t])
        via_w = through_w(d_gates[t])  # (B, H): into h_{t-1} through W_hh
        if dropping:
            via_w.mul_(drop)  # h_{t-1} entered the product as h_{t-1} * drop
        via_f = dc_t.mul_(f)  # into C_{t-1}
        if keep:
            via_w.add_(dh_kept)
            via_f.add_(dc_kept)
        if mask is None:
            dh, dc = via_w, via_f
        else:  # frozen steps pass the gradients through
            dh, dc = torch.where(mask[t], via_w, dh), torch.where(mask[t], via_f, dc)
    h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # (T, B, H): h_{t-1}
    if dropping:
        h_prev = h_prev * drop  # what the product saw
    d_weight_hh = torch.mm(d_gates.reshape(-1, four_h).t(), h_prev.reshape(-1, hidden))  # one GEMM, all steps
    return d_gates, dh, dc, d_weight_hh, d_gates.sum((0, 1))


@lstm_recurrence_backward.register_fake
def _(d_output, d_hn, d_cn, h0, c0, weight_hh, lengths, hs, gates, cells, tanh_cells, drop, zone):
    return (
        gates.new_empty(gates.shape),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
        weight_hh.new_empty(weight_hh.shape),
        gates.new_empty(gates.shape[-1]),
    )


register_fused_autograd(lstm_recurrence, lstm_recurrence_backward, lstm_bias_vjp, parts=2, params=2)
CPP_LOOP = CppLoop("lstm", parts=2, params=2, vjp=lstm_bias_vjp)  # csrc/lstm_loop.cpp


@torch.library.custom_op("rnnkit::lstm_inference", mutates_args=(), device_types=("cpu", "cuda"))
def lstm_inference(
    xp: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    bias: Tensor,
    lengths: Tensor,
    drop: Tensor,
    zone: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lstm_recurrence` without gradients: nothing is saved, so the step buffers are reused
    (no T-sized activation buffers to allocate and fault in)."""
    compiled = cpp_loop.usable(xp)
    if compiled is not None:
        return tuple(compiled.lstm_forward(xp, h0, c0, weight_hh, bias, lengths, drop, zone, False))
    xp = xp + bias  # (T, B, 4H): x_t W_ih^T + b
    steps, batch, four_h = xp.shape
    hidden = four_h // 4
    mask = step_mask(lengths, steps)
    output = xp.new_empty(steps, batch, hidden)
    g = xp.new_empty(batch, four_h)
    cells = [c0.clone(), xp.new_empty(batch, hidden)]  # ping-pong C_{t-1}, C_t
    frozen_h = [h0.clone(), xp.new_empty(batch, hidden)] if mask is not None else None  # never write h0
    product = RecurrentProduct(weight_hh, batch, steps)
    h = h0
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    for t in range(steps):
        i, f, c_tilde, o = _activate(product.add_into(xp[t], h * drop if dropping else h, out=g), hidden)
        c_prev, c_t = cells[t % 2], cells[(t + 1) % 2]
        torch.mul(f, c_prev, out=c_t).addcmul_(i, c_tilde)
        h_t = torch.tanh(c_t, out=output[t]).mul_(o)
        if keep:
            keep.mix(t, (h_t, c_t), (h, c_prev))
        if mask is not None:
            c_t.copy_(torch.where(mask[t], c_t, c_prev))
            state = frozen_h[(t + 1) % 2]
            state.copy_(torch.where(mask[t], h_t, h))
            h_t.masked_fill_(~mask[t], 0.0)
            h_t = state
        h = h_t
    return output, h.clone(), cells[steps % 2].clone()


@lstm_inference.register_fake
def _(xp, h0, c0, weight_hh, bias, lengths, drop, zone):
    steps, batch, four_h = xp.shape
    return xp.new_empty(steps, batch, four_h // 4), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def lstm_forward(
    xp: Tensor,
    state: tuple[Tensor, Tensor],
    weight_hh: Tensor,
    lengths: Tensor | None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The fused LSTM recurrence: ``xp (T, B, 4H)``, ``(h0, c0)`` -> ``(output (T, B, H), (h_n, c_n))``.
    ``drop``: a recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product (the cell's
    :meth:`~rnnkit.cells.RecurrentCell.recurrent_input`), or None. ``zone``: zoneout, the keep
    weights of :func:`.zoneout.zoneout_keep` for the parts (h, C), or None. ``bias (4H)``: added to
    every step's pre-activations in the loop (``b_ih + b_hh`` where ``xp`` is ``x W_ih^T`` alone),
    or None where ``xp`` holds it already."""
    if bias is None:
        bias = xp.new_zeros(xp.shape[-1])
    output, final = run_fused(
        lstm_recurrence, lstm_inference, xp, state, (weight_hh, bias), lengths, drop, zone, CPP_LOOP
    )
    return output, final


def _project(x: Tensor, weight_ih: Tensor) -> Tensor:
    """``x (T, B, I) W_ih^T -> (T, B, 4H)`` as one GEMM over the ``T*B`` rows (an empty batch too)."""
    steps, batch, inputs = x.shape
    return torch.mm(x.reshape(steps * batch, inputs), weight_ih.t()).view(steps, batch, weight_ih.shape[0])


def _loop_bias(xp: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None) -> Tensor:
    """The ``(4H,)`` bias the loop adds to every step: ``b_ih + b_hh``, or zeros for ``bias=False``."""
    bias = both_biases(bias_ih, bias_hh)
    return xp.new_zeros(xp.shape[-1]) if bias is None else bias


class EagerLstmLayer(torch.autograd.Function):
    """One LSTM (layer, direction) on the CPU in eager mode as ONE autograd node: the input product
    ``x W_ih^T``, the bias ``b_ih + b_hh`` and the C++ time loop forward, and backward the loop's BPTT
    then ``dx = dG W_ih``, ``dW_ih = dG^T x``, ``db_ih = db_hh = sum dG``.

    The same numbers as the projection, bias sum and :class:`.common._EagerCppRecurrence` chained by
    autograd, with three nodes fewer and their views and transposes (issues 30 and 32: 2-layer
    T24/T12 training steps went from 1.00-1.08 to 0.91-0.98 of oneDNN's time, docs/benchmarks.md),
    and ``x`` saved instead of ``xp`` (I features per step instead of 4H). Higher-order gradients go
    through :func:`lstm_bias_vjp` over the recomputed projection."""

    @staticmethod
    def forward(ctx, ops, x, weight_ih, bias_ih, bias_hh, h0, c0, weight_hh, lengths, drop, zone):
        # ctx-style forward (no setup_context): Function.apply then skips binding the arguments by
        # inspect.signature at every call (~0.15 ms, issue 30); under functorch transforms, which
        # need setup_context, the layers run the reference loop instead
        xp = _project(x, weight_ih)  # (T, B, 4H)
        bias = _loop_bias(xp, bias_ih, bias_hh)  # (4H,)
        output, h_n, c_n, *saved = ops.lstm_forward(xp, h0, c0, weight_hh, bias, lengths, drop, zone, True)
        ctx.set_materialize_grads(False)  # the saved activations' gradients stay None
        ctx.ops = ops
        ctx.save_for_backward(x, weight_ih, bias_ih, bias_hh, h0, c0, weight_hh, lengths, drop, zone, *saved)
        return output, h_n, c_n  # hs, gates, cells, tanh_cells stay inside the node

    @staticmethod
    def backward(ctx, d_output, d_hn, d_cn):
        x, weight_ih, bias_ih, bias_hh, h0, c0, weight_hh, lengths, drop, zone, *saved = ctx.saved_tensors
        steps, batch, inputs = x.shape
        d_output = torch.zeros_like(saved[0]) if d_output is None else d_output  # (T, B, H)
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
        d_cn = torch.zeros_like(c0) if d_cn is None else d_cn
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients through the reference
            xp = torch.matmul(x, weight_ih.t())  # (T, B, 4H), differentiable this time
            bias = _loop_bias(xp, bias_ih, bias_hh)
            d_xp, d_h0, d_c0, d_weight_hh, d_bias = lstm_bias_vjp(
                xp,
                h0,
                c0,
                weight_hh,
                bias,
                full_lengths(xp, lengths if lengths.numel() else None),
                d_output,
                d_hn,
                d_cn,
                drop,
                zone,
            )
        else:
            d_xp, d_h0, d_c0, d_weight_hh, d_bias = ctx.ops.lstm_backward(
                d_output, d_hn, d_cn, h0, c0, weight_hh, lengths, *saved, drop, zone
            )
        d_gates = d_xp.reshape(steps * batch, weight_ih.shape[0])  # (T*B, 4H)
        needs = ctx.needs_input_grad
        d_x = torch.mm(d_gates, weight_ih).view(steps, batch, inputs) if needs[1] else None
        d_weight_ih = torch.mm(d_gates.t(), x.reshape(steps * batch, inputs)) if needs[2] else None
        d_b = d_bias if bias_ih is not None else None
        return None, d_x, d_weight_ih, d_b, d_b, d_h0, d_c0, d_weight_hh, None, None, None


def eager_lstm_layer(
    ops,
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight_ih: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    weight_hh: Tensor,
    lengths: Tensor | None,
    drop: Tensor | None,
    zone: Tensor | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One LSTM (layer, direction) over ``x (T, B, I)`` by the C++ loop ``ops`` in eager mode, its
    input product included: ``(output (T, B, H), (h_n, c_n))``. :class:`EagerLstmLayer` where a
    gradient is needed, else the projection and the loop's inference pass (nothing saved).
    Every tensor shares ``x``'s dtype and device (the caller checks)."""
    lengths = x.new_empty(0, dtype=torch.long) if lengths is None else lengths  # empty: all run T steps
    drop = x.new_empty(0) if drop is None else drop
    zone = x.new_empty(0) if zone is None else zone
    h0, c0 = state
    params = [p for p in (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh) if p is not None]
    if needs_grad(*params):
        output, h_n, c_n = EagerLstmLayer.apply(
            ops, x, weight_ih, bias_ih, bias_hh, h0, c0, weight_hh, lengths, drop, zone
        )
        return output, (h_n, c_n)
    xp = _project(x, weight_ih)  # (T, B, 4H)
    bias = _loop_bias(xp, bias_ih, bias_hh)
    output, h_n, c_n = ops.lstm_forward(xp, h0, c0, weight_hh, bias, lengths, drop, zone, False)
    return output, (h_n, c_n)
