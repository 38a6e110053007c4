"""The GRU recurrence as one custom op with a hand-written backward (the fast CPU path).

Semantics of :func:`rnnkit.kernels.reference.run_cell` with :class:`rnnkit.cells.GRUCell`: the input
projection ``xp = x W_ih^T + b_ih`` is computed outside; ``b_hh`` stays inside (it is gated by r_t).
See :mod:`rnnkit.kernels.native.lstm` for the design; the loop runs in C++ (``csrc/gru_loop.cpp``)
where it could be built.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.kernels.lengths import step_mask
from rnnkit.kernels.native import cpp_loop
from rnnkit.kernels.native.common import (
    CppLoop,
    register_fused_autograd,
    run_fused,
    sigmoid_backward,
    tanh_backward,
)
from rnnkit.kernels.native.matmul import RecurrentProduct
from rnnkit.kernels.reference.double_backward import gru_vjp
from rnnkit.kernels.zoneout import ZoneoutKeep


@torch.library.custom_op("rnnkit::gru_recurrence", mutates_args=(), device_types=("cpu", "cuda"))
def gru_recurrence(
    xp: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor, lengths: Tensor, drop: Tensor, zone: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(output (T, B, H), h_n)`` and, saved for backward, ``hs (T, B, H)`` (states, frozen past the
    end) and ``acts (T, B, 4H)``: r_t, z_t, n_t and the recurrent candidate part W_hn h + b_hn.
    ``drop``: a recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product (not in the carry), or
    an empty tensor for none. ``zone``: zoneout (:func:`.zoneout.zoneout_keep`), or empty."""
    compiled = cpp_loop.usable(xp)
    if compiled is not None:
        return tuple(compiled.gru_forward(xp, h0, weight_hh, bias_hh, lengths, drop, zone, True))
    steps, batch, three_h = xp.shape
    hidden = three_h // 3
    mask = step_mask(lengths, steps)
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    hs = xp.new_empty(steps, batch, hidden)
    acts = xp.new_empty(steps, batch, 4 * hidden)
    gh = xp.new_empty(batch, three_h)
    product = RecurrentProduct(weight_hh, batch, steps)
    h = h0
    for t in range(steps):
        product.add_into(bias_hh, h * drop if dropping else h, out=gh)  # (B, 3H): W_h{r,z,n} h_{t-1} + b_h
        a = acts[t]
        rz = torch.add(xp[t, :, : 2 * hidden], gh[:, : 2 * hidden], out=a[:, : 2 * hidden]).sigmoid_()  # r, z
        r, z = rz.split(hidden, dim=1)
        hn = a[:, 3 * hidden :].copy_(gh[:, 2 * hidden :])  # W_hn h_{t-1} + b_hn
        n = torch.addcmul(xp[t, :, 2 * hidden :], r, hn, out=a[:, 2 * hidden : 3 * hidden]).tanh_()  # n_t
        h_t = torch.sub(h, n, out=hs[t]).mul_(z).add_(n)  # h_t = n + z * (h_{t-1} - n) = (1 - z) n + z h
        if keep:
            keep.mix(t, (h_t,), (h,))
        if mask is not None:
            h_t.copy_(torch.where(mask[t], h_t, h))
        h = h_t
    output = hs.clone() if mask is None else hs.masked_fill(~mask, 0.0)
    return output, h.clone(), hs, acts


@gru_recurrence.register_fake
def _(xp, h0, weight_hh, bias_hh, lengths, drop, zone):
    steps, batch, three_h = xp.shape
    hidden = three_h // 3
    seq = xp.new_empty(steps, batch, hidden)
    return seq, h0.new_empty(h0.shape), seq.clone(), xp.new_empty(steps, batch, 4 * hidden)


@torch.library.custom_op("rnnkit::gru_recurrence_backward", mutates_args=(), device_types=("cpu", "cuda"))
def gru_recurrence_backward(
    d_output: Tensor,
    d_hn: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    lengths: Tensor,
    hs: Tensor,
    acts: Tensor,
    drop: Tensor,
    zone: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(d_xp, d_h0, d_weight_hh, d_bias_hh)``."""
    compiled = cpp_loop.usable(acts)
    if compiled is not None:
        return tuple(compiled.gru_backward(d_output, d_hn, h0, weight_hh, lengths, hs, acts, drop, zone))
    steps, batch, four_h = acts.shape
    hidden = four_h // 4
    mask = step_mask(lengths, steps)
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    d_xp = acts.new_empty(steps, batch, 3 * hidden)  # d(x-side pre-activations) r, z, n
    d_gh = acts.new_empty(steps, batch, 3 * hidden)  # d(h-side pre-activations) r, z, hn
    through_w = RecurrentProduct(weight_hh.t(), batch, steps)  # dGh_t W_hh
    dh = d_hn.clone()
    tmp = torch.empty_like(dh)
    dh_z = torch.empty_like(dh)
    for t in range(steps - 1, -1, -1):
        dh.add_(d_output[t] if mask is None else d_output[t] * mask[t])  # dL/dh_t
        r, z, n, hn = acts[t].split(hidden, dim=1)
        h_prev = hs[t - 1] if t > 0 else h0
        dxr, dxz, dxn = d_xp[t].split(hidden, dim=1)
        dhr, dhz, dhn = d_gh[t].split(hidden, dim=1)
        # zoneout: h_t = k h_{t-1} + (1 - k) h~_t sends k dL/dh_t straight to h_{t-1}
        (dh_new,), (dh_kept,) = keep.split(t, (dh,)) if keep else ((dh,), (None,))
        torch.mul(dh_new, z, out=dh_z)  # the direct path z * dh into h_{t-1}
        tanh_backward(torch.sub(dh_new, dh_z, out=tmp), n, grad_input=dxn)  # d n_pre = (1 - z) dh (1 - n^2)
        if keep:
            dh_z.add_(dh_kept)  # and zoneout's
        torch.mul(dxn, r, out=dhn)  # d(W_hn h + b_hn)
        sigmoid_backward(torch.mul(dxn, hn, out=tmp), r, grad_input=dxr)  # d r_pre
        sigmoid_backward(torch.sub(h_prev, n, out=tmp).mul_(dh_new), z, grad_input=dxz)  # d z_pre
        dhr.copy_(dxr)
        dhz.copy_(dxz)
        via_w = through_w(d_gh[t])  # into h_{t-1} * drop through W_hh
        if dropping:
            via_w.mul_(drop)
        if mask is None:
            dh = via_w.add_(dh_z)
        else:
            m = mask[t]
            d_xp[t].mul_(m)
            d_gh[t].mul_(m)
            via_w.mul_(m)  # a frozen step's d_gh is zero: so is its product
            dh = torch.where(m, via_w.add_(dh_z), dh)
    h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
    if dropping:
        h_prev = h_prev * drop  # what the product saw
    d_gh_flat = d_gh.reshape(-1, 3 * hidden)
    d_weight_hh = torch.mm(d_gh_flat.t(), h_prev.reshape(-1, hidden))  # one GEMM over all steps
    return d_xp, dh, d_weight_hh, d_gh_flat.sum(0)


@gru_recurrence_backward.register_fake
def _(d_output, d_hn, h0, weight_hh, lengths, hs, acts, drop, zone):
    steps, batch, four_h = acts.shape
    three_h = 3 * (four_h // 4)
    return (
        acts.new_empty(steps, batch, three_h),
        h0.new_empty(h0.shape),
        weight_hh.new_empty(weight_hh.shape),
        acts.new_empty(three_h),
    )


register_fused_autograd(gru_recurrence, gru_recurrence_backward, gru_vjp, parts=1, params=2)
CPP_LOOP = CppLoop("gru", parts=1, params=2, vjp=gru_vjp)  # csrc/gru_loop.cpp


@torch.library.custom_op("rnnkit::gru_inference", mutates_args=(), device_types=("cpu", "cuda"))
def gru_inference(
    xp: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor, lengths: Tensor, drop: Tensor, zone: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`gru_recurrence` without gradients: nothing saved, step buffers reused."""
    compiled = cpp_loop.usable(xp)
    if compiled is not None:
        return tuple(compiled.gru_forward(xp, h0, weight_hh, bias_hh, lengths, drop, zone, False))
    steps, batch, three_h = xp.shape
    hidden = three_h // 3
    mask = step_mask(lengths, steps)
    output = xp.new_empty(steps, batch, hidden)
    gh = xp.new_empty(batch, three_h)
    rz = xp.new_empty(batch, 2 * hidden)
    n = xp.new_empty(batch, hidden)
    states = [h0, xp.new_empty(batch, hidden), xp.new_empty(batch, hidden)]
    product = RecurrentProduct(weight_hh, batch, steps)
    h = h0
    dropping = drop.numel() > 0
    keep = ZoneoutKeep(zone)
    for t in range(steps):
        product.add_into(bias_hh, h * drop if dropping else h, out=gh)
        torch.add(xp[t, :, : 2 * hidden], gh[:, : 2 * hidden], out=rz).sigmoid_()
        r, z = rz.split(hidden, dim=1)
        torch.addcmul(xp[t, :, 2 * hidden :], r, gh[:, 2 * hidden :], out=n).tanh_()
        h_t = states[1 + t % 2]
        torch.sub(h, n, out=h_t).mul_(z).add_(n)
        if keep:
            keep.mix(t, (h_t,), (h,))
        if mask is not None:
            h_t.copy_(torch.where(mask[t], h_t, h))
            torch.mul(h_t, mask[t], out=output[t])  # zero past the end
        else:
            output[t].copy_(h_t)
        h = h_t
    return output, h.clone()


@gru_inference.register_fake
def _(xp, h0, weight_hh, bias_hh, lengths, drop, zone):
    steps, batch, three_h = xp.shape
    return xp.new_empty(steps, batch, three_h // 3), h0.new_empty(h0.shape)


def gru_forward(
    xp: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    lengths: Tensor | None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The fused GRU recurrence: ``xp (T, B, 3H)``, ``h0 (B, H)`` -> ``(output (T, B, H), h_n)``.
    ``drop``: a recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product, or None. ``zone``:
    zoneout's keep weights (:func:`.zoneout.zoneout_keep`), or None."""
    if bias_hh is None:
        bias_hh = xp.new_zeros(weight_hh.shape[0])
    output, (h_n,) = run_fused(
        gru_recurrence, gru_inference, xp, (h0,), (weight_hh, bias_hh), lengths, drop, zone, CPP_LOOP
    )
    return output, h_n
