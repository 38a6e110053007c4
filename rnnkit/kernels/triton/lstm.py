"""Triton LSTM recurrence, forward and backward (training).

The input projection of all steps is one GEMM outside (``LSTMCell.project_input``). Inside, per
step: the recurrent product h_{t-1} W_hh^T, the gate nonlinearities and the cell update

    i = sigma(.), f = sigma(.), C~ = tanh(.), o = sigma(.), C_t = f C_{t-1} + i C~, h_t = o tanh(C_t);

and backward, per step, dG_{t+1} W_hh with the gate derivatives. The weight gradient
dW_hh = sum_t dG_t^T h_{t-1} is one GEMM over all steps afterwards.

Two kernel shapes run this math (:mod:`rnnkit.kernels.triton.paths` chooses): ``_lstm_*_step`` (one
launch per time step) and ``_lstm_*_persistent`` (one launch for all steps, the time loop inside,
C and dC in registers, W_hh on chip, a grid barrier per step). Both call the same pointwise helpers.

Each program owns a (BLOCK_B rows) x (BLOCK_H hidden units) tile and keeps the four gate
accumulators of that tile, so the gates of a unit never leave registers between the product and
the cell update. Rows past their sequence's length keep their state (a step is "valid" when
t < lengths[b]); the gradient of the final state enters at each row's last valid step.

Recurrent dropout and zoneout (:mod:`rnnkit.kernels.zoneout`) are kernel inputs, read only when the
compile-time flags DROP and ZONE say so: the product takes h_{t-1} times the sequence's mask, and h_t,
C_t mix with their previous values by the keep weights; backward multiplies dG_{t+1} W_hh by the same
mask and passes zoneout's share of dh_t, dC_t straight to step t - 1.

Buffers: ``hs`` and ``cells`` are (T + 1, B, H) with slot 0 holding h_0 and C_0, so step t reads
slot t and writes slot t + 1 on both paths. Precision: the products accumulate in float32 (float64
for float64 inputs); half-precision runs keep gates and cell states in float32. fp32 products use
exact IEEE fp32 unless ``torch.backends.cuda.matmul.allow_tf32`` is set.
"""

from __future__ import annotations

from torch import Tensor

from rnnkit.kernels.reference.double_backward import lstm_vjp
from rnnkit.kernels.triton.common import tl, triton
from rnnkit.kernels.triton.driver import TritonCell, run
from rnnkit.kernels.triton.paths import Launch

if triton is not None:
    from rnnkit.kernels.triton.common import (
        _dropped,
        _grid_barrier,
        _mm,
        _rows_times_w,
        _tanh,
        _tile,
        _zoneout_keep,
        _zoneout_mix,
    )

    @triton.jit
    def _lstm_product(
        h_ptr,
        w_ptr,
        drop_ptr,
        rb,
        rh,
        mb,
        mh,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
        DROP: tl.constexpr,
    ):
        """h_{t-1}[rb] W_hh^T[:, gate units rh] for the four gates, W_hh streamed in BLOCK_K chunks;
        with DROP, h_{t-1} times the recurrent-dropout mask ``drop`` (B, H)."""
        acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, H, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < H
            rows = rb[:, None] * H + rk[None, :]
            h = tl.load(h_ptr + rows, mask=mb[:, None] & mk[None, :], other=0.0)
            if DROP:
                h = _dropped(h, tl.load(drop_ptr + rows, mask=mb[:, None] & mk[None, :], other=0.0), ACC)
            wmask = mk[:, None] & mh[None, :]
            w_t = w_ptr + rh[None, :] * H + rk[:, None]  # (BK, BH) tile of W_hh^T, gate i
            acc_i += _mm(h, tl.load(w_t, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_f += _mm(h, tl.load(w_t + H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_g += _mm(h, tl.load(w_t + 2 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_o += _mm(h, tl.load(w_t + 3 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
        return acc_i, acc_f, acc_g, acc_o

    @triton.jit
    def _lstm_zoneout(zone_ptr, t, state, tile, B, H, ACC: tl.constexpr, ZONE: tl.constexpr):
        """Zoneout's keep weights (kh, kc) of step t for one tile: parts 0 (h) and 1 (C) of ``zone``."""
        if ZONE != 0:
            kh = _zoneout_keep(zone_ptr, t, 0, 2, state, tile, B, H, ACC, ZONE)
            kc = _zoneout_keep(zone_ptr, t, 1, 2, state, tile, B, H, ACC, ZONE)
        else:
            kh = 0.0
            kc = 0.0
        return kh, kc

    @triton.jit
    def _lstm_update(
        acc_i,
        acc_f,
        acc_g,
        acc_o,
        x_row,
        tile,
        c_prev,
        h_prev,
        valid,
        kh,
        kc,
        H,
        ACC: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        """Gates and state update of one tile; ``x_row`` points at the tile in xp_t (B, 4H). With
        zoneout (ZONE), h and C mix with their previous values by the keep weights kh, kc."""
        i = tl.sigmoid(acc_i + tl.load(x_row, mask=tile, other=0.0).to(ACC))  # input gate
        f = tl.sigmoid(acc_f + tl.load(x_row + H, mask=tile, other=0.0).to(ACC))  # forget gate
        g = _tanh(acc_g + tl.load(x_row + 2 * H, mask=tile, other=0.0).to(ACC))  # candidate C~
        o = tl.sigmoid(acc_o + tl.load(x_row + 3 * H, mask=tile, other=0.0).to(ACC))  # output gate
        c = f * c_prev + i * g  # cell update
        h = o * _tanh(c)  # hidden state
        if ZONE != 0:
            c = _zoneout_mix(c, c_prev, kc)
            h = _zoneout_mix(h, h_prev, kh)
        c = tl.where(valid, c, c_prev)  # past the end the state is frozen
        h = tl.where(valid, h, h_prev)
        return i, f, g, o, c, h

    @triton.jit
    def _lstm_store(state, tile, valid, i, f, g, o, c, h, g_row, h_out, c_out, out, H):
        """Write one step of a tile: h_t, C_t, the masked output and the four gates."""
        tl.store(c_out + state, c.to(c_out.dtype.element_ty), mask=tile)
        tl.store(h_out + state, h.to(h_out.dtype.element_ty), mask=tile)
        tl.store(out + state, tl.where(valid, h, 0.0).to(out.dtype.element_ty), mask=tile)
        gty = g_row.dtype.element_ty
        tl.store(g_row, i.to(gty), mask=tile)
        tl.store(g_row + H, f.to(gty), mask=tile)
        tl.store(g_row + 2 * H, g.to(gty), mask=tile)
        tl.store(g_row + 3 * H, o.to(gty), mask=tile)

    @triton.jit
    def _lstm_gate_grads(dh, dc, g_row, tile, c, c_prev, kh, kc, H, ACC: tl.constexpr, ZONE: tl.constexpr):
        """dG_t of one tile from dh_t, dC_t (C_t's gradient from later steps) and the saved gates;
        also returns dC_{t-1} = dC_t f and the part of dh_t that flows straight into h_{t-1}.

        Zoneout (ZONE): h_t = kh h_{t-1} + (1 - kh) h~_t (C likewise), so the update sees
        (1 - k) of each gradient and k of it skips the step; the update C~_t = f C_{t-1} + i C~ is
        recomputed from the saved gates (the saved C_t is the mixed state)."""
        i = tl.load(g_row, mask=tile, other=0.0).to(ACC)
        f = tl.load(g_row + H, mask=tile, other=0.0).to(ACC)
        g = tl.load(g_row + 2 * H, mask=tile, other=0.0).to(ACC)
        o = tl.load(g_row + 3 * H, mask=tile, other=0.0).to(ACC)
        if ZONE != 0:
            c = f * c_prev + i * g
            dh_kept = dh * kh
            dc_kept = dc * kc
            dh = dh * (1.0 - kh)
            dc = dc * (1.0 - kc)
        else:
            dh_kept = 0.0
            dc_kept = 0.0
        tanh_c = _tanh(c)
        dc += dh * o * (1.0 - tanh_c * tanh_c)
        d_o = dh * tanh_c * o * (1.0 - o)
        d_i = dc * g * i * (1.0 - i)
        d_f = dc * c_prev * f * (1.0 - f)
        d_g = dc * i * (1.0 - g * g)
        return d_i, d_f, d_g, d_o, dc * f + dc_kept, dh_kept

    @triton.jit
    def _lstm_store_grads(out_row, tile, valid, d_i, d_f, d_g, d_o, H):
        dty = out_row.dtype.element_ty
        tl.store(out_row, tl.where(valid, d_i, 0.0).to(dty), mask=tile)
        tl.store(out_row + H, tl.where(valid, d_f, 0.0).to(dty), mask=tile)
        tl.store(out_row + 2 * H, tl.where(valid, d_g, 0.0).to(dty), mask=tile)
        tl.store(out_row + 3 * H, tl.where(valid, d_o, 0.0).to(dty), mask=tile)

    # ---------------------------------------------------------------------------- one launch per step
    @triton.jit
    def _lstm_fwd_step(
        xp_ptr,
        h_prev_ptr,
        c_prev_ptr,
        w_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
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
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        acc_i, acc_f, acc_g, acc_o = _lstm_product(
            h_prev_ptr,
            w_ptr,
            drop_ptr,
            rb,
            rh,
            mb,
            mh,
            H,
            BLOCK_B,
            BLOCK_H,
            BLOCK_K,
            ACC,
            PRECISION,
            UPCAST,
            DROP,
        )
        state = rb[:, None] * H + rh[None, :]
        c_prev = tl.load(c_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        valid = (t < tl.load(len_ptr + rb, mask=mb, other=0))[:, None]
        kh, kc = _lstm_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
        x_row = xp_ptr + rb[:, None] * (4 * H) + rh[None, :]  # (B, 4H) slice of step t
        i, f, g, o, c, h = _lstm_update(
            acc_i, acc_f, acc_g, acc_o, x_row, tile, c_prev, h_prev, valid, kh, kc, H, ACC, ZONE
        )
        g_row = gates_ptr + rb[:, None] * (4 * H) + rh[None, :]
        _lstm_store(state, tile, valid, i, f, g, o, c, h, g_row, hs_ptr, cells_ptr, out_ptr, H)

    @triton.jit
    def _lstm_bwd_step(
        dg_next_ptr,
        w_ptr,
        d_out_ptr,
        d_hn_ptr,
        d_cn_ptr,
        dc_in_ptr,
        dh_in_ptr,
        gates_ptr,
        cells_ptr,
        c_prev_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
        t,
        dg_ptr,
        dc_out_ptr,
        dh_out_ptr,
        B,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        # dG_{t+1} W_hh: the recurrent path into h_t
        dh = _rows_times_w(
            dg_next_ptr, w_ptr, rb, rh, mb, mh, 4 * H, H, BLOCK_B, BLOCK_H, BLOCK_K, ACC, PRECISION, UPCAST
        )
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        valid = (t < lengths)[:, None]
        last = (t == lengths - 1)[:, None]  # the final state's gradient enters here
        state = rb[:, None] * H + rh[None, :]
        if DROP:  # h_t entered step t + 1's product as h_t * drop
            dh = dh * tl.load(drop_ptr + state, mask=tile, other=0.0).to(ACC)
        if ZONE != 0:  # what zoneout at step t + 1 passed straight back to h_t
            dh += tl.load(dh_in_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.load(d_out_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.where(last, tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        dc = tl.load(dc_in_ptr + state, mask=tile, other=0.0).to(ACC)
        dc += tl.where(last, tl.load(d_cn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        c = tl.load(cells_ptr + state, mask=tile, other=0.0).to(ACC)
        c_prev = tl.load(c_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        g_row = gates_ptr + rb[:, None] * (4 * H) + rh[None, :]
        kh, kc = _lstm_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
        d_i, d_f, d_g, d_o, dc, dh_kept = _lstm_gate_grads(
            dh, dc, g_row, tile, c, c_prev, kh, kc, H, ACC, ZONE
        )
        _lstm_store_grads(dg_ptr + rb[:, None] * (4 * H) + rh[None, :], tile, valid, d_i, d_f, d_g, d_o, H)
        tl.store(dc_out_ptr + state, tl.where(valid, dc, 0.0).to(dc_out_ptr.dtype.element_ty), mask=tile)
        if ZONE != 0:
            kept = tl.where(valid, dh_kept, 0.0)
            tl.store(dh_out_ptr + state, kept.to(dh_out_ptr.dtype.element_ty), mask=tile)

    # ---------------------------------------------------------------------- one launch for all steps
    @triton.jit
    def _lstm_fwd_persistent(
        xp_ptr,
        w_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
        hs_ptr,
        cells_ptr,
        gates_ptr,
        out_ptr,
        sync_ptr,
        T,
        B,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
        SYNC: tl.constexpr,
        W_RESIDENT: tl.constexpr,
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        state = rb[:, None] * H + rh[None, :]
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        if W_RESIDENT:  # this program's rows of W_hh (as W_hh^T columns, one tile per gate), on chip
            rk = tl.arange(0, BLOCK_K)
            mk = rk < H
            h_tile = mb[:, None] & mk[None, :]
            wmask = mk[:, None] & mh[None, :]
            w_t = w_ptr + rh[None, :] * H + rk[:, None]
            w_i = tl.load(w_t, mask=wmask, other=0.0)
            w_f = tl.load(w_t + H * H, mask=wmask, other=0.0)
            w_g = tl.load(w_t + 2 * H * H, mask=wmask, other=0.0)
            w_o = tl.load(w_t + 3 * H * H, mask=wmask, other=0.0)
            if DROP:  # the recurrent-dropout mask of these rows, for every step
                drop_all = tl.load(drop_ptr + rb[:, None] * H + rk[None, :], mask=h_tile, other=0.0)
        c = tl.load(cells_ptr + state, mask=tile, other=0.0).to(ACC)  # C_0: C stays in registers
        h = tl.load(hs_ptr + state, mask=tile, other=0.0).to(ACC)  # h_0 (own units)
        step = B * H
        for t in range(T):
            h_prev_ptr = hs_ptr + t * step  # h_{t-1} of every unit, written by all programs
            if W_RESIDENT:
                h_all = tl.load(h_prev_ptr + rb[:, None] * H + rk[None, :], mask=h_tile, other=0.0)
                if DROP:
                    h_all = _dropped(h_all, drop_all, ACC)
                acc_i = _mm(h_all, w_i, ACC, PRECISION, UPCAST)
                acc_f = _mm(h_all, w_f, ACC, PRECISION, UPCAST)
                acc_g = _mm(h_all, w_g, ACC, PRECISION, UPCAST)
                acc_o = _mm(h_all, w_o, ACC, PRECISION, UPCAST)
            else:
                acc_i, acc_f, acc_g, acc_o = _lstm_product(
                    h_prev_ptr,
                    w_ptr,
                    drop_ptr,
                    rb,
                    rh,
                    mb,
                    mh,
                    H,
                    BLOCK_B,
                    BLOCK_H,
                    BLOCK_K,
                    ACC,
                    PRECISION,
                    UPCAST,
                    DROP,
                )
            valid = (t < lengths)[:, None]
            kh, kc = _lstm_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
            x_row = xp_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            i, f, g, o, c, h = _lstm_update(
                acc_i, acc_f, acc_g, acc_o, x_row, tile, c, h, valid, kh, kc, H, ACC, ZONE
            )
            g_row = gates_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            _lstm_store(
                state,
                tile,
                valid,
                i,
                f,
                g,
                o,
                c,
                h,
                g_row,
                hs_ptr + (t + 1) * step,
                cells_ptr + (t + 1) * step,
                out_ptr + t * step,
                H,
            )
            _grid_barrier(sync_ptr + tl.program_id(0), (t + 1) * tl.num_programs(1), SYNC)

    @triton.jit
    def _lstm_bwd_persistent(
        w_ptr,
        d_out_ptr,
        d_hn_ptr,
        d_cn_ptr,
        gates_ptr,
        cells_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
        dg_ptr,
        d_c0_ptr,
        dh_kept_ptr,
        sync_ptr,
        T,
        B,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
        SYNC: tl.constexpr,
        W_RESIDENT: tl.constexpr,
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        state = rb[:, None] * H + rh[None, :]
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        if W_RESIDENT:  # this program's columns of W_hh, one (K, BLOCK_H) tile per gate, on chip
            rk = tl.arange(0, BLOCK_K)
            mk = rk < H
            dg_tile = mb[:, None] & mk[None, :]
            wmask = mk[:, None] & mh[None, :]
            w_c = w_ptr + rk[:, None] * H + rh[None, :]
            w_i = tl.load(w_c, mask=wmask, other=0.0)
            w_f = tl.load(w_c + H * H, mask=wmask, other=0.0)
            w_g = tl.load(w_c + 2 * H * H, mask=wmask, other=0.0)
            w_o = tl.load(w_c + 3 * H * H, mask=wmask, other=0.0)
        d_hn = tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC)
        d_cn = tl.load(d_cn_ptr + state, mask=tile, other=0.0).to(ACC)
        if DROP:  # h_t entered step t + 1's product as h_t * drop
            drop_own = tl.load(drop_ptr + state, mask=tile, other=0.0).to(ACC)
        dc = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)  # dC_t stays in registers
        dh_kept = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)  # zoneout's k dh_{t+1}, straight into h_t
        step = B * H
        for s in range(T):
            t = T - 1 - s
            dg_next = dg_ptr + (t + 1) * (4 * step)  # dG_{t+1} of every unit, written by all programs
            if W_RESIDENT:
                row = dg_next + rb[:, None] * (4 * H) + rk[None, :]
                dh = _mm(tl.load(row, mask=dg_tile, other=0.0), w_i, ACC, PRECISION, UPCAST)
                dh += _mm(tl.load(row + H, mask=dg_tile, other=0.0), w_f, ACC, PRECISION, UPCAST)
                dh += _mm(tl.load(row + 2 * H, mask=dg_tile, other=0.0), w_g, ACC, PRECISION, UPCAST)
                dh += _mm(tl.load(row + 3 * H, mask=dg_tile, other=0.0), w_o, ACC, PRECISION, UPCAST)
            else:
                dh = _rows_times_w(
                    dg_next,
                    w_ptr,
                    rb,
                    rh,
                    mb,
                    mh,
                    4 * H,
                    H,
                    BLOCK_B,
                    BLOCK_H,
                    BLOCK_K,
                    ACC,
                    PRECISION,
                    UPCAST,
                )
            valid = (t < lengths)[:, None]
            last = (t == lengths - 1)[:, None]  # the final state's gradient enters here
            if DROP:
                dh = dh * drop_own
            if ZONE != 0:
                dh += dh_kept
            dh += tl.load(d_out_ptr + t * step + state, mask=tile, other=0.0).to(ACC)
            dh += tl.where(last, d_hn, 0.0)
            dc += tl.where(last, d_cn, 0.0)
            c = tl.load(cells_ptr + (t + 1) * step + state, mask=tile, other=0.0).to(ACC)
            c_prev = tl.load(cells_ptr + t * step + state, mask=tile, other=0.0).to(ACC)
            g_row = gates_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            kh, kc = _lstm_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
            d_i, d_f, d_g, d_o, dc, kept = _lstm_gate_grads(
                dh, dc, g_row, tile, c, c_prev, kh, kc, H, ACC, ZONE
            )
            out_row = dg_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            _lstm_store_grads(out_row, tile, valid, d_i, d_f, d_g, d_o, H)
            dc = tl.where(valid, dc, 0.0)
            if ZONE != 0:
                dh_kept = tl.where(valid, kept, 0.0)
            _grid_barrier(sync_ptr + tl.program_id(0), (s + 1) * tl.num_programs(1), SYNC)  # s steps done
        tl.store(d_c0_ptr + state, dc.to(d_c0_ptr.dtype.element_ty), mask=tile)
        tl.store(dh_kept_ptr + state, dh_kept.to(dh_kept_ptr.dtype.element_ty), mask=tile)


LSTM_KERNELS = (
    TritonCell(
        kind="lstm",
        gates=4,
        parts=2,  # h, C
        params=1,  # W_hh
        carries=(1, 0),  # dC_t, and zoneout's share of dh_t: straight into C_{t-1}, h_{t-1}
        forward_step=_lstm_fwd_step,
        forward_persistent=_lstm_fwd_persistent,
        backward_step=_lstm_bwd_step,
        backward_persistent=_lstm_bwd_persistent,
        reads_step=lambda states, t: (states[1][t + 1], states[1][t]),  # C_t, C_{t-1}
        reads_all=lambda states: (states[1],),
        separate_dxp=False,  # d xp is dG
        vjp=lstm_vjp,
    )
    if triton is not None
    else None
)


def lstm_forward(
    xp: Tensor,
    state: tuple[Tensor, Tensor],
    weight_hh: Tensor,
    lengths: Tensor | None,
    path: str | Launch | None = None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
    allowed: frozenset[str] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The Triton LSTM recurrence: ``xp (T, B, 4H)``, ``(h0, c0)`` -> ``(output, (h_n, c_n))``.

    ``path`` forces a path (:mod:`rnnkit.kernels.triton.paths`), ``allowed`` limits the table's
    choice; ``drop``: a recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product, or None;
    ``zone``: zoneout's keep weights for the parts (h, C) (:func:`rnnkit.kernels.zoneout.zoneout_keep`),
    or None."""
    out, (h_n, c_n) = run(LSTM_KERNELS, xp, tuple(state), (weight_hh,), lengths, path, drop, zone, allowed)
    return out, (h_n, c_n)
