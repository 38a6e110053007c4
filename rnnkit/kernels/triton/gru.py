"""Triton GRU recurrence, forward and backward (training).

Same design as :mod:`rnnkit.kernels.triton.lstm` (the stepwise and persistent kernels share the
pointwise helpers below): the input projection ``W_i x + b_i`` is one GEMM outside; per step,
h_{t-1} W_hh^T (+ b_hh) with the gates and the update

    r = sigma(x_r + h_r), z = sigma(x_z + h_z), n = tanh(x_n + r * h_n), h_t = n + z (h_{t-1} - n);

backward, per step, dGh_{t+1} W_hh with the gate derivatives, carrying the direct path
z_{t+1} dh_{t+1} to step t (in registers on the persistent path). dW_hh and db_hh are one
reduction over all steps afterwards. ``hs`` is (T + 1, B, H) with h_0 in slot 0. Recurrent dropout
(on h_{t-1} in the product, not in the carry z h_{t-1}) and zoneout are kernel inputs, as for the LSTM.
"""

from __future__ import annotations

from torch import Tensor

from rnnkit.kernels.reference.double_backward import gru_vjp
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
    def _gru_product(
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
        """h_{t-1}[rb] W_h{r,z,n}^T[:, units rh], W_hh streamed in BLOCK_K chunks; with DROP,
        h_{t-1} times the recurrent-dropout mask ``drop`` (B, H)."""
        acc_r = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_z = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        acc_n = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, H, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < H
            rows = rb[:, None] * H + rk[None, :]
            h = tl.load(h_ptr + rows, mask=mb[:, None] & mk[None, :], other=0.0)
            if DROP:
                h = _dropped(h, tl.load(drop_ptr + rows, mask=mb[:, None] & mk[None, :], other=0.0), ACC)
            wmask = mk[:, None] & mh[None, :]
            w_t = w_ptr + rh[None, :] * H + rk[:, None]
            acc_r += _mm(h, tl.load(w_t, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_z += _mm(h, tl.load(w_t + H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
            acc_n += _mm(h, tl.load(w_t + 2 * H * H, mask=wmask, other=0.0), ACC, PRECISION, UPCAST)
        return acc_r, acc_z, acc_n

    @triton.jit
    def _gru_zoneout(zone_ptr, t, state, tile, B, H, ACC: tl.constexpr, ZONE: tl.constexpr):
        """Zoneout's keep weight of h at step t for one tile (``zone`` has one part)."""
        if ZONE != 0:
            return _zoneout_keep(zone_ptr, t, 0, 1, state, tile, B, H, ACC, ZONE)
        else:
            return 0.0

    @triton.jit
    def _gru_update(
        acc_r,
        acc_z,
        acc_n,
        x_row,
        b_ptr,
        rh,
        mh,
        tile,
        h_prev,
        valid,
        kh,
        H,
        ACC: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        """Gates and update of one tile; ``x_row`` points at the tile in xp_t (B, 3H). With zoneout
        (ZONE), h mixes with h_{t-1} by the keep weight kh."""
        b_r = tl.load(b_ptr + rh, mask=mh, other=0.0).to(ACC)[None, :]
        b_z = tl.load(b_ptr + H + rh, mask=mh, other=0.0).to(ACC)[None, :]
        b_n = tl.load(b_ptr + 2 * H + rh, mask=mh, other=0.0).to(ACC)[None, :]
        r = tl.sigmoid(tl.load(x_row, mask=tile, other=0.0).to(ACC) + acc_r + b_r)  # reset gate
        z = tl.sigmoid(tl.load(x_row + H, mask=tile, other=0.0).to(ACC) + acc_z + b_z)  # update gate
        hn = acc_n + b_n  # W_hn h_{t-1} + b_hn
        n = _tanh(tl.load(x_row + 2 * H, mask=tile, other=0.0).to(ACC) + r * hn)  # candidate
        h = n + z * (h_prev - n)
        if ZONE != 0:
            h = _zoneout_mix(h, h_prev, kh)
        h = tl.where(valid, h, h_prev)  # past the end the state is frozen
        return r, z, n, hn, h

    @triton.jit
    def _gru_store(state, tile, valid, r, z, n, hn, h, a_row, h_out, out, H):
        """Write one step of a tile: h_t, the masked output and the activations backward reads."""
        tl.store(h_out + state, h.to(h_out.dtype.element_ty), mask=tile)
        tl.store(out + state, tl.where(valid, h, 0.0).to(out.dtype.element_ty), mask=tile)
        aty = a_row.dtype.element_ty
        tl.store(a_row, r.to(aty), mask=tile)
        tl.store(a_row + H, z.to(aty), mask=tile)
        tl.store(a_row + 2 * H, n.to(aty), mask=tile)
        tl.store(a_row + 3 * H, hn.to(aty), mask=tile)

    @triton.jit
    def _gru_grads(
        dh, a_row, tile, valid, h_prev, x_row, h_row, kh, H, ACC: tl.constexpr, ZONE: tl.constexpr
    ):
        """Store dxp_t (B, 3H) and dGh_t (B, 3H) of one tile; returns the direct path z dh to h_{t-1}
        (with zoneout, h_t = kh h_{t-1} + (1 - kh) h~_t: the update sees (1 - kh) dh and kh dh
        skips the step)."""
        if ZONE != 0:
            kept = dh * kh
            dh = dh * (1.0 - kh)
        else:
            kept = 0.0
        r = tl.load(a_row, mask=tile, other=0.0).to(ACC)
        z = tl.load(a_row + H, mask=tile, other=0.0).to(ACC)
        n = tl.load(a_row + 2 * H, mask=tile, other=0.0).to(ACC)
        hn = tl.load(a_row + 3 * H, mask=tile, other=0.0).to(ACC)
        d_n = dh * (1.0 - z) * (1.0 - n * n)
        d_r = d_n * hn * r * (1.0 - r)
        d_z = dh * (h_prev - n) * z * (1.0 - z)
        xty = x_row.dtype.element_ty
        tl.store(x_row, tl.where(valid, d_r, 0.0).to(xty), mask=tile)
        tl.store(x_row + H, tl.where(valid, d_z, 0.0).to(xty), mask=tile)
        tl.store(x_row + 2 * H, tl.where(valid, d_n, 0.0).to(xty), mask=tile)
        tl.store(h_row, tl.where(valid, d_r, 0.0).to(xty), mask=tile)
        tl.store(h_row + H, tl.where(valid, d_z, 0.0).to(xty), mask=tile)
        tl.store(h_row + 2 * H, tl.where(valid, d_n * r, 0.0).to(xty), mask=tile)
        return tl.where(valid, dh * z + kept, 0.0)

    # ---------------------------------------------------------------------------- one launch per step
    @triton.jit
    def _gru_fwd_step(
        xp_ptr,
        h_prev_ptr,
        w_ptr,
        b_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
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
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        acc_r, acc_z, acc_n = _gru_product(
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
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        valid = (t < tl.load(len_ptr + rb, mask=mb, other=0))[:, None]
        kh = _gru_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
        x_row = xp_ptr + rb[:, None] * (3 * H) + rh[None, :]
        r, z, n, hn, h = _gru_update(
            acc_r, acc_z, acc_n, x_row, b_ptr, rh, mh, tile, h_prev, valid, kh, H, ACC, ZONE
        )
        a_row = acts_ptr + rb[:, None] * (4 * H) + rh[None, :]
        _gru_store(state, tile, valid, r, z, n, hn, h, a_row, hs_ptr, out_ptr, H)

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
        drop_ptr,
        zone_ptr,
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
        DROP: tl.constexpr,
        ZONE: tl.constexpr,
    ):
        rb, rh, mb, mh, tile = _tile(B, H, BLOCK_B, BLOCK_H)  # this program's rows and units
        dh = _rows_times_w(  # dGh_{t+1} W_hh
            dgh_next_ptr, w_ptr, rb, rh, mb, mh, 3 * H, H, BLOCK_B, BLOCK_H, BLOCK_K, ACC, PRECISION, UPCAST
        )
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        valid = (t < lengths)[:, None]
        last = (t == lengths - 1)[:, None]
        state = rb[:, None] * H + rh[None, :]
        if DROP:  # h_t entered step t + 1's product as h_t * drop
            dh = dh * tl.load(drop_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.load(d_out_ptr + state, mask=tile, other=0.0).to(ACC)
        dh += tl.load(carry_in_ptr + state, mask=tile, other=0.0).to(ACC)  # z_{t+1} dh_{t+1}
        dh += tl.where(last, tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC), 0.0)
        h_prev = tl.load(h_prev_ptr + state, mask=tile, other=0.0).to(ACC)
        a_row = acts_ptr + rb[:, None] * (4 * H) + rh[None, :]
        x_row = dxp_ptr + rb[:, None] * (3 * H) + rh[None, :]
        h_row = dgh_ptr + rb[:, None] * (3 * H) + rh[None, :]
        kh = _gru_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
        carry = _gru_grads(dh, a_row, tile, valid, h_prev, x_row, h_row, kh, H, ACC, ZONE)
        tl.store(carry_out_ptr + state, carry.to(carry_out_ptr.dtype.element_ty), mask=tile)

    # ---------------------------------------------------------------------- one launch for all steps
    @triton.jit
    def _gru_fwd_persistent(
        xp_ptr,
        w_ptr,
        b_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
        hs_ptr,
        acts_ptr,
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
            w_r = tl.load(w_t, mask=wmask, other=0.0)
            w_z = tl.load(w_t + H * H, mask=wmask, other=0.0)
            w_n = tl.load(w_t + 2 * H * H, mask=wmask, other=0.0)
            if DROP:  # the recurrent-dropout mask of these rows, for every step
                drop_all = tl.load(drop_ptr + rb[:, None] * H + rk[None, :], mask=h_tile, other=0.0)
        h = tl.load(hs_ptr + state, mask=tile, other=0.0).to(ACC)  # h_0 (own units)
        step = B * H
        for t in range(T):
            h_prev_ptr = hs_ptr + t * step  # h_{t-1} of every unit, written by all programs
            if W_RESIDENT:
                h_all = tl.load(h_prev_ptr + rb[:, None] * H + rk[None, :], mask=h_tile, other=0.0)
                if DROP:
                    h_all = _dropped(h_all, drop_all, ACC)
                acc_r = _mm(h_all, w_r, ACC, PRECISION, UPCAST)
                acc_z = _mm(h_all, w_z, ACC, PRECISION, UPCAST)
                acc_n = _mm(h_all, w_n, ACC, PRECISION, UPCAST)
            else:
                acc_r, acc_z, acc_n = _gru_product(
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
            kh = _gru_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
            x_row = xp_ptr + t * (3 * step) + rb[:, None] * (3 * H) + rh[None, :]
            r, z, n, hn, h = _gru_update(
                acc_r, acc_z, acc_n, x_row, b_ptr, rh, mh, tile, h, valid, kh, H, ACC, ZONE
            )
            a_row = acts_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            _gru_store(
                state, tile, valid, r, z, n, hn, h, a_row, hs_ptr + (t + 1) * step, out_ptr + t * step, H
            )
            _grid_barrier(sync_ptr + tl.program_id(0), (t + 1) * tl.num_programs(1), SYNC)

    @triton.jit
    def _gru_bwd_persistent(
        w_ptr,
        d_out_ptr,
        d_hn_ptr,
        acts_ptr,
        hs_ptr,
        len_ptr,
        drop_ptr,
        zone_ptr,
        dxp_ptr,
        dgh_ptr,
        carry_ptr,
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
        if DROP:  # h_t entered step t + 1's product as h_t * drop
            drop_own = tl.load(drop_ptr + state, mask=tile, other=0.0).to(ACC)
        if W_RESIDENT:  # this program's columns of W_hh, one (K, BLOCK_H) tile per gate, on chip
            rk = tl.arange(0, BLOCK_K)
            mk = rk < H
            dg_tile = mb[:, None] & mk[None, :]
            wmask = mk[:, None] & mh[None, :]
            w_c = w_ptr + rk[:, None] * H + rh[None, :]
            w_r = tl.load(w_c, mask=wmask, other=0.0)
            w_z = tl.load(w_c + H * H, mask=wmask, other=0.0)
            w_n = tl.load(w_c + 2 * H * H, mask=wmask, other=0.0)
        d_hn = tl.load(d_hn_ptr + state, mask=tile, other=0.0).to(ACC)
        carry = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)  # z_{t+1} dh_{t+1}, in registers
        step = B * H
        for s in range(T):
            t = T - 1 - s
            dg_next = dgh_ptr + (t + 1) * (3 * step)  # dGh_{t+1} of every unit, written by all programs
            if W_RESIDENT:
                row = dg_next + rb[:, None] * (3 * H) + rk[None, :]
                dh = _mm(tl.load(row, mask=dg_tile, other=0.0), w_r, ACC, PRECISION, UPCAST)
                dh += _mm(tl.load(row + H, mask=dg_tile, other=0.0), w_z, ACC, PRECISION, UPCAST)
                dh += _mm(tl.load(row + 2 * H, mask=dg_tile, other=0.0), w_n, ACC, PRECISION, UPCAST)
            else:
                dh = _rows_times_w(
                    dg_next,
                    w_ptr,
                    rb,
                    rh,
                    mb,
                    mh,
                    3 * H,
                    H,
                    BLOCK_B,
                    BLOCK_H,
                    BLOCK_K,
                    ACC,
                    PRECISION,
                    UPCAST,
                )
            valid = (t < lengths)[:, None]
            last = (t == lengths - 1)[:, None]
            if DROP:
                dh = dh * drop_own
            dh += tl.load(d_out_ptr + t * step + state, mask=tile, other=0.0).to(ACC)
            dh += carry
            dh += tl.where(last, d_hn, 0.0)
            h_prev = tl.load(hs_ptr + t * step + state, mask=tile, other=0.0).to(ACC)
            a_row = acts_ptr + t * (4 * step) + rb[:, None] * (4 * H) + rh[None, :]
            x_row = dxp_ptr + t * (3 * step) + rb[:, None] * (3 * H) + rh[None, :]
            h_row = dgh_ptr + t * (3 * step) + rb[:, None] * (3 * H) + rh[None, :]
            kh = _gru_zoneout(zone_ptr, t, state, tile, B, H, ACC, ZONE)
            carry = _gru_grads(dh, a_row, tile, valid, h_prev, x_row, h_row, kh, H, ACC, ZONE)
            _grid_barrier(sync_ptr + tl.program_id(0), (s + 1) * tl.num_programs(1), SYNC)  # s steps done
        tl.store(carry_ptr + state, carry.to(carry_ptr.dtype.element_ty), mask=tile)


GRU_KERNELS = (
    TritonCell(
        kind="gru",
        gates=3,
        parts=1,  # h
        params=2,  # W_hh, b_hh
        carries=(0,),  # z_{t+1} dh_{t+1}, straight into h_t
        forward_step=_gru_fwd_step,
        forward_persistent=_gru_fwd_persistent,
        backward_step=_gru_bwd_step,
        backward_persistent=_gru_bwd_persistent,
        reads_step=lambda states, t: (states[0][t],),  # h_{t-1}
        reads_all=lambda states: (states[0],),
        separate_dxp=True,  # b_hn is gated by r_t: d xp_n differs from d(W_hn h + b_hn)
        vjp=gru_vjp,
    )
    if triton is not None
    else None
)


def gru_forward(
    xp: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    lengths: Tensor | None,
    path: str | Launch | None = None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
    allowed: frozenset[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """The Triton GRU recurrence: ``xp (T, B, 3H)``, ``h0 (B, H)`` -> ``(output (T, B, H), h_n)``.

    ``path`` forces a path (:mod:`rnnkit.kernels.triton.paths`), ``allowed`` limits the table's
    choice; ``drop``: a recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product, or None;
    ``zone``: zoneout's keep weights (:func:`rnnkit.kernels.zoneout.zoneout_keep`), or None."""
    if bias_hh is None:
        bias_hh = xp.new_zeros(weight_hh.shape[0])
    out, (h_n,) = run(GRU_KERNELS, xp, (h0,), (weight_hh, bias_hh), lengths, path, drop, zone, allowed)
    return out, h_n
