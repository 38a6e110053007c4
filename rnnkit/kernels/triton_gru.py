"""Triton GRU recurrence, forward and backward (training).

Same design as :mod:`rnnkit.kernels.triton_lstm`: the input projection ``W_i x + b_i`` is one GEMM
outside; one kernel per step fuses h_{t-1} W_hh^T (+ b_hh) with the gates and the update

    r = sigma(x_r + h_r), z = sigma(x_z + h_z), n = tanh(x_n + r * h_n), h_t = n + z (h_{t-1} - n);

one backward kernel per step fuses dGh_{t+1} W_hh with the gate derivatives, carrying the direct
path z_{t+1} dh_{t+1} to step t. dW_hh and db_hh are one reduction over all steps afterwards.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.kernels.lengths import full_lengths
from rnnkit.kernels.triton_common import launch_config, state_dtype, tl, triton

if triton is not None:
    from rnnkit.kernels.triton_lstm import _mm, _tanh, _tile

    @triton.jit
    def _gru_fwd_step(
        xp_ptr,
        h_prev_ptr,
        w_ptr,
        b_ptr,
        len_ptr,
        t,
        hs_ptr,
        acts_ptr,
        out_ptr,
        B,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        acc_r = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_z = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_n = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, H, BLOCK_K):  # h_{t-1} W_h{r,z,n}^T
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < H
            h = tl.load(h_prev_ptr + rb[:, None] * H + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
            wmask = mk[:, None] & mh[None, :]
            w_t = w_ptr + rh[None, :] * H + rk[:, None]
            acc_r += _mm(h, tl.load(w_t, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_z += _mm(h, tl.load(w_t + H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_n += _mm(h, tl.load(w_t + 2 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
        x_row = xp_ptr + rb[:, None] * (3 * H) + rh[None, :]
        b_r = tl.load(b_ptr + rh, mask=mh, other=0.0).to(ACC)[None, :]
        b_z = tl.load(b_ptr + H + rh, mask=mh, other=0.0).to(ACC)[None, :]
        b_n = tl.load(b_ptr + 2 * H + rh, mask=mh, other=0.0).to(ACC)[None, :]
        r = tl.sigmoid(tl.load(x_row, mask=tile, other=0.0).to(ACC) + acc_r + b_r)  # reset gate
        z = tl.sigmoid(tl.load(x_row + H, mask=tile, other=0.0).to(ACC) + acc_z + b_z)  # update gate
        hn = acc_n + b_n  # W_hn h_{t-1} + b_hn
        n = _tanh(tl.load(x_row + 2 * H, mask=tile, other=0.0).to(ACC) + r * hn)  # candidate
        state = rb[:, None] * H + rh[None, :]
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        h = n + z * (h_prev - n)
        valid = (t < tl.load(len_ptr + rb, mask=mb, other=0))[:, None]
        h = tl.where(valid, h, h_prev)
        tl.store(hs_ptr + state, h.to(hs_ptr.dtype.element_ty), mask=tile)
        tl.store(out_ptr + state, tl.where(valid, h, 0.0).to(out_ptr.dtype.element_ty), mask=tile)
        a_row = acts_ptr + rb[:, None] * (4 * H) + rh[None, :]
        aty = acts_ptr.dtype.element_ty
        tl.store(a_row, r.to(aty), mask=tile)
        tl.store(a_row + H, z.to(aty), mask=tile)
        tl.store(a_row + 2 * H, n.to(aty), mask=tile)
        tl.store(a_row + 3 * H, hn.to(aty), mask=tile)

    @triton.jit
    def _gru_bwd_step(
        dgh_next_ptr,
        w_ptr,
        d_out_ptr,
        d_hn_ptr,
        carry_in_ptr,
        acts_ptr,
        h_prev_ptr,
        len_ptr,
        t,
        dxp_ptr,
        dgh_ptr,
        carry_out_ptr,
        B,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, 3 * H, BLOCK_K):  # dGh_{t+1} W_hh
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < 3 * H
            dg = tl.load(
                dgh_next_ptr + rb[:, None] * (3 * H) + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0
            )
            w = tl.load(w_ptr + rk[:, None] * H + rh[None, :], mask=mk[:, None] & mh[None, :], other=0.0)
            dh += _mm(dg, w, ACC, PRECISION, UPCAST)
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        valid = (t < lengths)[:, None]
        last = (t == lengths - 1)[:, None]
        state = rb[:, None] * H + rh[None, :]
        dh += tl.load(d_out_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.load(carry_in_ptr + state, mask=tile, other=0.0).to(ACC)  # z_{t+1} dh_{t+1}
        dh += tl.where(last, tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        a_row = acts_ptr + rb[:, None] * (4 * H) + rh[None, :]
        r = tl.load(a_row, mask=tile, other=0.0).to(ACC)
        z = tl.load(a_row + H, mask=tile, other=0.0).to(ACC)
        n = tl.load(a_row + 2 * H, mask=tile, other=0.0).to(ACC)
        hn = tl.load(a_row + 3 * H, mask=tile, other=0.0).to(ACC)
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        d_n = dh * (1.0 - z) * (1.0 - n * n)
        d_r = d_n * hn * r * (1.0 - r)
        d_z = dh * (h_prev - n) * z * (1.0 - z)
        x_row = dxp_ptr + rb[:, None] * (3 * H) + rh[None, :]
        h_row = dgh_ptr + rb[:, None] * (3 * H) + rh[None, :]
        xty = dxp_ptr.dtype.element_ty
        tl.store(x_row, tl.where(valid, d_r, 0.0).to(xty), mask=tile)
        tl.store(x_row + H, tl.where(valid, d_z, 0.0).to(xty), mask=tile)
        tl.store(x_row + 2 * H, tl.where(valid, d_n, 0.0).to(xty), mask=tile)
        tl.store(h_row, tl.where(valid, d_r, 0.0).to(xty), mask=tile)
        tl.store(h_row + H, tl.where(valid, d_z, 0.0).to(xty), mask=tile)
        tl.store(h_row + 2 * H, tl.where(valid, d_n * r, 0.0).to(xty), mask=tile)
        tl.store(
            carry_out_ptr + state, tl.where(valid, dh * z, 0.0).to(carry_out_ptr.dtype.element_ty), mask=tile
        )


class GRUTriton(torch.autograd.Function):
    """``(xp (T, B, 3H), h0, weight_hh (3H, H), bias_hh (3H), lengths (B,))`` -> ``(output, h_n)``."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor, lengths: Tensor):
        steps, batch, three_h = xp.shape
        hidden = three_h // 3
        xp, h0, weight_hh, bias_hh = (
            xp.contiguous(),
            h0.contiguous(),
            weight_hh.contiguous(),
            bias_hh.contiguous(),
        )
        keep = state_dtype(xp.dtype)
        hs = xp.new_empty(steps, batch, hidden)
        out = xp.new_empty(steps, batch, hidden)
        acts = xp.new_empty(steps, batch, 4 * hidden, dtype=keep)
        grid, meta = launch_config(batch, hidden, xp.dtype)
        for t in range(steps):
            _gru_fwd_step[grid](
                xp[t],
                hs[t - 1] if t else h0,
                weight_hh,
                bias_hh,
                lengths,
                t,
                hs[t],
                acts[t],
                out[t],
                batch,
                hidden,
                **meta,
            )
        ctx.save_for_backward(h0, weight_hh, lengths, hs, acts)
        return out, hs[-1].clone()

    @staticmethod
    def backward(ctx, d_out: Tensor, d_hn: Tensor):
        h0, weight_hh, lengths, hs, acts = ctx.saved_tensors
        steps, batch, four_h = acts.shape
        hidden = four_h // 4
        keep = acts.dtype
        d_out = torch.zeros_like(hs) if d_out is None else d_out.contiguous()
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn.contiguous()
        d_xp = acts.new_empty(steps, batch, 3 * hidden)
        d_gh = acts.new_empty(steps + 1, batch, 3 * hidden)
        d_gh[steps].zero_()
        carry = [acts.new_zeros(batch, hidden), acts.new_empty(batch, hidden)]
        grid, meta = launch_config(batch, hidden, keep)
        w = weight_hh.to(keep)
        for step, t in enumerate(range(steps - 1, -1, -1)):
            _gru_bwd_step[grid](
                d_gh[t + 1],
                w,
                d_out[t],
                d_hn,
                carry[step % 2],
                acts[t],
                hs[t - 1] if t else h0,
                lengths,
                t,
                d_xp[t],
                d_gh[t],
                carry[(step + 1) % 2],
                batch,
                hidden,
                **meta,
            )
        d_gh = d_gh[:steps]
        d_h0 = carry[steps % 2] + torch.mm(d_gh[0], w)
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]]).to(keep)
        flat = d_gh.reshape(-1, 3 * hidden)
        d_w = torch.mm(flat.t(), h_prev.reshape(-1, hidden))
        dtype = hs.dtype
        return d_xp.to(dtype), d_h0.to(dtype), d_w.to(weight_hh.dtype), flat.sum(0).to(weight_hh.dtype), None


def gru_forward(
    xp: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, lengths: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The Triton GRU recurrence: ``xp (T, B, 3H)``, ``h0 (B, H)`` -> ``(output (T, B, H), h_n)``."""
    lengths = full_lengths(xp, lengths, torch.int32)
    if bias_hh is None:
        bias_hh = xp.new_zeros(weight_hh.shape[0])
    return GRUTriton.apply(xp, h0, weight_hh, bias_hh, lengths)
