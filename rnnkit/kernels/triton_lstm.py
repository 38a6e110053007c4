"""Triton LSTM recurrence, forward and backward (training).

The input projection of all steps is one GEMM outside (``LSTMCell.project_input``). Inside, one
kernel per time step fuses the recurrent product h_{t-1} W_hh^T, the gate nonlinearities and the
state update; the backward kernel per step fuses dG_{t+1} W_hh with the gate derivatives. The
weight gradient dW_hh = sum_t dG_t^T h_{t-1} is one GEMM over all steps afterwards.

Each program owns a (BLOCK_B rows) x (BLOCK_H hidden units) tile and keeps the four gate
accumulators of that tile, so the gates of a unit never leave registers between the product and
the cell update. Rows past their sequence's length keep their state (a step is "valid" when
t < lengths[b]); the gradient of the final state enters at each row's last valid step.

Precision: the products accumulate in float32 (float64 for float64 inputs); half-precision runs
keep gates and cell states in float32. fp32 products use exact IEEE fp32 unless
``torch.backends.cuda.matmul.allow_tf32`` is set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.kernels.lengths import full_lengths
from rnnkit.kernels.triton_common import launch_config, state_dtype, tl, triton

if triton is not None:

    @triton.jit
    def _tanh(x):
        return 2.0 * tl.sigmoid(2.0 * x) - 1.0

    @triton.jit
    def _tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
        """The (batch rows, hidden units) tile of program (0, 1) and its bounds masks."""
        rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
        mb = rb < B
        mh = rh < H
        return rb, rh, mb, mh, mb[:, None] & mh[None, :]

    @triton.jit
    def _mm(a, b, ACC: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """a @ b accumulated in ACC. UPCAST (the CPU interpreter, whose half-precision dot is wrong)
        widens the operands first: products of bf16/fp16 values are exact in fp32 either way."""
        if UPCAST:
            return tl.dot(a.to(ACC), b.to(ACC), input_precision=PRECISION, out_dtype=ACC)
        return tl.dot(a, b, input_precision=PRECISION, out_dtype=ACC)

    @triton.jit
    def _lstm_fwd_step(
        xp_ptr,
        h_prev_ptr,
        c_prev_ptr,
        w_ptr,
        len_ptr,
        t,
        hs_ptr,
        cells_ptr,
        gates_ptr,
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
        acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, H, BLOCK_K):  # h_{t-1} W_hh^T, four gates at once
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < H
            h = tl.load(h_prev_ptr + rb[:, None] * H + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
            wmask = mk[:, None] & mh[None, :]
            w_t = w_ptr + rh[None, :] * H + rk[:, None]  # (BK, BH) tile of W_hh^T, gate 0
            acc_i += _mm(h, tl.load(w_t, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_f += _mm(h, tl.load(w_t + H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_g += _mm(h, tl.load(w_t + 2 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_o += _mm(h, tl.load(w_t + 3 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
        x_row = xp_ptr + rb[:, None] * (4 * H) + rh[None, :]  # (B, 4H) slice of step t
        i = tl.sigmoid(acc_i + tl.load(x_row, mask=tile, other=0.0).to(ACC))  # input gate
        f = tl.sigmoid(acc_f + tl.load(x_row + H, mask=tile, other=0.0).to(ACC))  # forget gate
        g = _tanh(acc_g + tl.load(x_row + 2 * H, mask=tile, other=0.0).to(ACC))  # candidate C~
        o = tl.sigmoid(acc_o + tl.load(x_row + 3 * H, mask=tile, other=0.0).to(ACC))  # output gate
        state = rb[:, None] * H + rh[None, :]
        c_prev = tl.load(c_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        c = f * c_prev + i * g  # cell update
        h = o * _tanh(c)  # hidden state
        valid = (t < tl.load(len_ptr + rb, mask=mb, other=0))[:, None]
        c = tl.where(valid, c, c_prev)  # past the end the state is frozen
        h = tl.where(valid, h, h_prev)
        tl.store(cells_ptr + state, c.to(cells_ptr.dtype.element_ty), mask=tile)
        tl.store(hs_ptr + state, h.to(hs_ptr.dtype.element_ty), mask=tile)
        tl.store(out_ptr + state, tl.where(valid, h, 0.0).to(out_ptr.dtype.element_ty), mask=tile)
        g_row = gates_ptr + rb[:, None] * (4 * H) + rh[None, :]
        gty = gates_ptr.dtype.element_ty
        tl.store(g_row, i.to(gty), mask=tile)
        tl.store(g_row + H, f.to(gty), mask=tile)
        tl.store(g_row + 2 * H, g.to(gty), mask=tile)
        tl.store(g_row + 3 * H, o.to(gty), mask=tile)

    @triton.jit
    def _lstm_bwd_step(
        dg_next_ptr,
        w_ptr,
        d_out_ptr,
        d_hn_ptr,
        d_cn_ptr,
        dc_in_ptr,
        gates_ptr,
        cells_ptr,
        c_prev_ptr,
        len_ptr,
        t,
        dg_ptr,
        dc_out_ptr,
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
        for k0 in range(0, 4 * H, BLOCK_K):  # dG_{t+1} W_hh: the recurrent path into h_t
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < 4 * H
            dg = tl.load(
                dg_next_ptr + rb[:, None] * (4 * H) + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0
            )
            w = tl.load(w_ptr + rk[:, None] * H + rh[None, :], mask=mk[:, None] & mh[None, :], other=0.0)
            dh += _mm(dg, w, ACC, PRECISION, UPCAST)
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        valid = (t < lengths)[:, None]
        last = (t == lengths - 1)[:, None]  # the final state's gradient enters here
        state = rb[:, None] * H + rh[None, :]
        dh += tl.load(d_out_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.where(last, tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        dc = tl.load(dc_in_ptr + state, mask=tile, other=0.0).to(ACC)
        dc += tl.where(last, tl.load(d_cn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        g_row = gates_ptr + rb[:, None] * (4 * H) + rh[None, :]
        i = tl.load(g_row, mask=tile, other=0.0).to(ACC)
        f = tl.load(g_row + H, mask=tile, other=0.0).to(ACC)
        g = tl.load(g_row + 2 * H, mask=tile, other=0.0).to(ACC)
        o = tl.load(g_row + 3 * H, mask=tile, other=0.0).to(ACC)
        tanh_c = _tanh(tl.load(cells_ptr + state, mask=tile, other=0.0).to(ACC))
        c_prev = tl.load(c_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        dc += dh * o * (1.0 - tanh_c * tanh_c)
        d_o = dh * tanh_c * o * (1.0 - o)
        d_i = dc * g * i * (1.0 - i)
        d_f = dc * c_prev * f * (1.0 - f)
        d_g = dc * i * (1.0 - g * g)
        dty = dg_ptr.dtype.element_ty
        out_row = dg_ptr + rb[:, None] * (4 * H) + rh[None, :]
        tl.store(out_row, tl.where(valid, d_i, 0.0).to(dty), mask=tile)
        tl.store(out_row + H, tl.where(valid, d_f, 0.0).to(dty), mask=tile)
        tl.store(out_row + 2 * H, tl.where(valid, d_g, 0.0).to(dty), mask=tile)
        tl.store(out_row + 3 * H, tl.where(valid, d_o, 0.0).to(dty), mask=tile)
        tl.store(dc_out_ptr + state, tl.where(valid, dc * f, 0.0).to(dc_out_ptr.dtype.element_ty), mask=tile)


class LSTMTriton(torch.autograd.Function):
    """``(xp (T, B, 4H), h0, c0, weight_hh (4H, H), lengths (B,))`` -> ``(output, h_n, c_n)``."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, lengths: Tensor):
        steps, batch, four_h = xp.shape
        hidden = four_h // 4
        xp, h0, weight_hh = xp.contiguous(), h0.contiguous(), weight_hh.contiguous()
        keep = state_dtype(xp.dtype)
        c0 = c0.to(keep).contiguous()
        hs = xp.new_empty(steps, batch, hidden)
        out = xp.new_empty(steps, batch, hidden)
        cells = xp.new_empty(steps, batch, hidden, dtype=keep)
        gates = xp.new_empty(steps, batch, four_h, dtype=keep)
        grid, meta = launch_config(batch, hidden, xp.dtype)
        for t in range(steps):
            h_prev = hs[t - 1] if t else h0
            c_prev = cells[t - 1] if t else c0
            _lstm_fwd_step[grid](
                xp[t],
                h_prev,
                c_prev,
                weight_hh,
                lengths,
                t,
                hs[t],
                cells[t],
                gates[t],
                out[t],
                batch,
                hidden,
                **meta,
            )
        ctx.save_for_backward(h0, c0, weight_hh, lengths, hs, cells, gates)
        return out, hs[-1].clone(), cells[-1].to(xp.dtype)

    @staticmethod
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor):
        h0, c0, weight_hh, lengths, hs, cells, gates = ctx.saved_tensors
        steps, batch, four_h = gates.shape
        hidden = four_h // 4
        keep = gates.dtype
        d_out = torch.zeros_like(hs) if d_out is None else d_out.contiguous()
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn.contiguous()
        d_cn = torch.zeros_like(c0) if d_cn is None else d_cn.contiguous()
        d_gates = gates.new_empty(steps + 1, batch, four_h)  # slot T stays zero: no step T+1
        d_gates[steps].zero_()
        dc = [gates.new_zeros(batch, hidden), gates.new_empty(batch, hidden)]  # ping-pong carry
        grid, meta = launch_config(batch, hidden, keep)
        w = weight_hh.to(keep)
        for step, t in enumerate(range(steps - 1, -1, -1)):
            c_prev = cells[t - 1] if t else c0
            _lstm_bwd_step[grid](
                d_gates[t + 1],
                w,
                d_out[t],
                d_hn,
                d_cn,
                dc[step % 2],
                gates[t],
                cells[t],
                c_prev,
                lengths,
                t,
                d_gates[t],
                dc[(step + 1) % 2],
                batch,
                hidden,
                **meta,
            )
        d_gates = d_gates[:steps]
        d_h0 = torch.mm(d_gates[0], w)  # into h_0 through the first step's product
        d_c0 = dc[steps % 2]
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]]).to(keep)
        d_w = torch.mm(d_gates.reshape(-1, four_h).t(), h_prev.reshape(-1, hidden))  # all steps, one GEMM
        dtype = hs.dtype
        return d_gates.to(dtype), d_h0.to(dtype), d_c0.to(dtype), d_w.to(weight_hh.dtype), None


def lstm_forward(
    xp: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor, lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The Triton LSTM recurrence: ``xp (T, B, 4H)``, ``(h0, c0)`` -> ``(output, (h_n, c_n))``."""
    lengths = full_lengths(xp, lengths, torch.int32)
    h0, c0 = state
    out, h_n, c_n = LSTMTriton.apply(xp, h0, c0, weight_hh, lengths)
    return out, (h_n, c_n)
