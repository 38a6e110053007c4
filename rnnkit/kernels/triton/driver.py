"""One driver for every cell's Triton kernels: plan the pass, run the persistent kernel or the
per-step ones (launched, or replayed from a CUDA graph), and finish the gradients with one GEMM.

A cell plugs in with a :class:`TritonCell`: its four kernels and the few facts the driver cannot
guess (gate count, state parts, which saved states its backward reads). The kernels follow one
argument layout, with ``S`` the state parts (h; or h, C), ``P`` the recurrent parameters (W_hh; or
W_hh, b_hh) and ``K`` the carried gradients:

- forward, per step: ``xp_t, *state_{t-1}, *P, lengths, drop, zone, t, *state_t, saved_t, out_t, B, H``;
- forward, persistent: ``xp, *P, lengths, drop, zone, *states, saved, out, sync, T, B, H``, where
  ``states[s]`` is ``(T + 1, B, H)`` with slot 0 holding the initial state;
- backward, per step: ``dG_{t+1}, W_hh, d_out_t, *d_final, *carry_in, saved_t, *reads_t, lengths,
  drop, zone, t, [d_xp_t], dG_t, *carry_out, B, H``;
- backward, persistent: ``W_hh, d_out, *d_final, saved, *reads, lengths, drop, zone, [d_xp], dG,
  *carry_final, sync, T, B, H``.

``dG`` is the gradient of the recurrent pre-activations (``(T + 1, B, G H)``, slot T zero); it is
also d xp unless the cell writes ``d_xp`` itself (the GRU, whose b_hn is gated by r_t). The carried
gradients are what passes from step t to step t - 1 besides ``dG W_hh`` (the LSTM's dC and zoneout's
share of dh; the GRU's z dh); each ends in the gradient of one initial state part.

Then, once for all steps: dW_hh = sum_t dG_t^T h_{t-1} (one GEMM), db_hh = sum_t dG_t, and
dh_0 = dG_0 W_hh (times the recurrent-dropout mask) plus its carried part.

The plan (:func:`rnnkit.kernels.triton.paths.plan`) is made once per pass: the forward plans for the
input's dtype, the backward for its saved dtype (float32 for half-precision inputs: it can choose
other tiles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from rnnkit.kernels.lengths import full_lengths
from rnnkit.kernels.triton.common import compile_meta, mask_inputs, present, state_dtype
from rnnkit.kernels.triton.graphs import Buffers
from rnnkit.kernels.triton.paths import (
    DeviceLimits,
    Launch,
    barrier_counters,
    plan,
    run_per_step,
    run_persistent,
    stepwise_fallback,
    stepwise_launch,
)

SAVED_WIDTH = 4  # per-step activations saved for backward: (T, B, 4H) for every built-in cell


@dataclass(frozen=True, eq=False)
class TritonCell:
    """A cell's Triton kernels and what the driver needs to know of them (see the module docstring)."""

    kind: str  # the plan table's name ("lstm", "gru")
    gates: int  # G: xp is (T, B, G H)
    parts: int  # state parts (1: h; 2: h, C); part 0 is h, the output
    params: int  # recurrent parameters: 1 (W_hh) or 2 (W_hh, b_hh)
    carries: tuple[int, ...]  # the state part each carried gradient ends in
    forward_step: object
    forward_persistent: object
    backward_step: object
    backward_persistent: object
    reads_step: Callable[[list[Tensor], int], tuple[Tensor, ...]]  # saved states step t's backward reads
    reads_all: Callable[[list[Tensor]], tuple[Tensor, ...]]  # the same for the persistent backward
    separate_dxp: bool  # the backward writes d xp apart from dG
    vjp: Callable[..., tuple]  # higher-order gradients (rnnkit.kernels.reference.double_backward)


def choose_launch(
    cell: TritonCell,
    batch: int,
    hidden: int,
    dtype: torch.dtype,
    device: torch.device,
    path: str | Launch | None,
    allowed: frozenset[str] | None,
) -> Launch:
    """The pass's plan: the table's (or the forced ``path``'s); with ``allowed`` (``backend="auto"``:
    the paths verified on a GPU), a per-step path when the table's is not allowed."""
    launch = plan(cell.kind, batch, hidden, dtype, device, path)
    if allowed is not None and launch.path not in allowed:
        fallback = "graphed" if "graphed" in allowed else "stepwise"
        launch = stepwise_launch(batch, hidden, DeviceLimits.of(device), fallback)
    return launch


def _forward_steps(cell: TritonCell, b: Buffers, launch: Launch, meta: dict) -> None:
    """The per-step forward over the buffers ``b``: the initial state into slot 0 of each state
    buffer, then one kernel per step. Replayable: it reads and writes ``b`` alone."""
    states = [b[f"state{p}"] for p in range(cell.parts)]
    params = [b[f"param{k}"] for k in range(cell.params)]
    out = b["out"]
    steps, batch, hidden = out.shape
    for p, state in enumerate(states):
        state[0].copy_(b[f"init{p}"])
    drop, zone = b.get("drop", b["xp"]), b.get("zone", b["xp"])  # absent masks: never read
    for t in range(steps):
        cell.forward_step[launch.grid](
            b["xp"][t],
            *(s[t] for s in states),
            *params,
            b["lengths"],
            drop,
            zone,
            t,
            *(s[t + 1] for s in states),
            b["saved"][t],
            out[t],
            batch,
            hidden,
            **meta,
            **launch.meta(),
        )


def _backward_steps(cell: TritonCell, b: Buffers, launch: Launch, meta: dict) -> None:
    """The per-step backward over the buffers ``b``, from step T - 1 down; carried gradient k
    ping-pongs through ``carries[2k]``, ``carries[2k + 1]`` (``(2K, B, H)``) and ends in ``direct{k}``."""
    d_rec, d_out, carries = b["d_rec"], b["d_out"], b["carries"]
    states = [b[f"state{p}"] for p in range(cell.parts)]
    finals = [b[f"d_final{p}"] for p in range(cell.parts)]
    steps, batch, hidden = d_out.shape
    d_rec[steps].zero_()  # no step T + 1
    carries.zero_()  # nothing carried from after the last step
    drop, zone = b.get("drop", b["d_out"]), b.get("zone", b["d_out"])  # absent masks: never read
    ks = range(len(cell.carries))
    for step, t in enumerate(range(steps - 1, -1, -1)):
        now, after = step % 2, (step + 1) % 2
        cell.backward_step[launch.grid](
            d_rec[t + 1],
            b["w"],
            d_out[t],
            *finals,
            *(carries[2 * k + now] for k in ks),
            b["saved"][t],
            *cell.reads_step(states, t),
            b["lengths"],
            drop,
            zone,
            t,
            *((b["d_xp"][t],) if cell.separate_dxp else ()),
            d_rec[t],
            *(carries[2 * k + after] for k in ks),
            batch,
            hidden,
            **meta,
            **launch.meta(),
        )
    for k in ks:
        b[f"direct{k}"].copy_(carries[2 * k + steps % 2])


class TritonRecurrence(torch.autograd.Function):
    """``(cell, path, allowed, lengths (B,), drop, zone, xp (T, B, G H), *init, *params)`` ->
    ``(output (T, B, H), *final state parts)``.

    ``drop``: the recurrent-dropout mask ``(B, H)`` on h_{t-1} in the product, or empty; ``zone``:
    zoneout's keep weights (:func:`rnnkit.kernels.zoneout.zoneout_keep`), or empty. ``path``: a
    Triton path (or a hand-made :class:`Launch`) to force, or None for the table; ``allowed``: the
    paths the table may choose (None: all).
    """

    @staticmethod
    def forward(ctx, cell: TritonCell, path, allowed, lengths, drop, zone, xp, *tensors):  # type: ignore[override]
        init, params = tensors[: cell.parts], tensors[cell.parts :]
        steps, batch, width = xp.shape
        hidden = width // cell.gates
        inputs = (xp, *init, *params)  # as given: what a higher-order gradient differentiates
        xp = xp.contiguous()
        params = tuple(p.contiguous() for p in params)
        drop_arg, zone_arg, masks = mask_inputs(xp, drop, zone)
        keep = state_dtype(xp.dtype)
        # slot 0: the initial state, slot t + 1: the state after step t; h in the input's dtype
        states = [
            xp.new_empty(steps + 1, batch, hidden, dtype=xp.dtype if p == 0 else keep)
            for p in range(cell.parts)
        ]
        saved = xp.new_empty(steps, batch, SAVED_WIDTH * hidden, dtype=keep)
        out = xp.new_empty(steps, batch, hidden)
        meta = {**compile_meta(xp.dtype), **masks}
        launch = choose_launch(cell, batch, hidden, xp.dtype, xp.device, path, allowed)
        ran = False
        if launch.path == "persistent":
            for state, first in zip(states, init, strict=True):
                state[0].copy_(first)
            args = (xp, *params, lengths, drop_arg, zone_arg, *states, saved, out)
            args += (barrier_counters(launch, xp.device), steps, batch, hidden)
            ran = run_persistent(
                cell.forward_persistent, launch, args, meta, xp.device, forced=path is not None
            )
        if not ran:
            launch = stepwise_fallback(launch, batch, hidden, xp.device)
            read = {"xp": xp, "lengths": lengths, **present(drop, zone)}
            read |= {f"init{p}": t for p, t in enumerate(init)} | {
                f"param{k}": t for k, t in enumerate(params)
            }
            written = {f"state{p}": s for p, s in enumerate(states)} | {"saved": saved, "out": out}
            *states, saved, out = run_per_step(
                f"{cell.kind}_forward",
                partial(_forward_steps, cell),
                launch,
                meta,
                read,
                written,
                tuple(written),
            )
        ctx.cell, ctx.path, ctx.allowed = cell, path, allowed
        ctx.save_for_backward(params[0], lengths, saved, drop, zone, *states, *inputs)
        return (out, states[0][-1].clone(), *(s[-1].to(xp.dtype) for s in states[1:]))

    @staticmethod
    def backward(ctx, d_out: Tensor, *d_final: Tensor):  # type: ignore[override]
        cell: TritonCell = ctx.cell
        weight_hh, lengths, saved, drop, zone, *rest = ctx.saved_tensors
        states, inputs = rest[: cell.parts], rest[cell.parts :]
        hs = states[0]
        steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        width = cell.gates * hidden
        d_out = hs.new_zeros(steps, batch, hidden) if d_out is None else d_out.contiguous()
        d_final = [hs.new_zeros(batch, hidden) if d is None else d.contiguous() for d in d_final]
        if torch.is_grad_enabled():  # create_graph=True: a gradient that is itself differentiable
            xp, init, params = inputs[0], inputs[1 : 1 + cell.parts], inputs[1 + cell.parts :]
            grads = cell.vjp(xp, *init, *params, lengths, d_out, *d_final, drop, zone)
            return (None,) * 6 + tuple(grads)
        keep = saved.dtype
        d_rec = saved.new_empty(steps + 1, batch, width)  # dG; slot T stays zero: no step T + 1
        d_xp = saved.new_empty(steps, batch, width) if cell.separate_dxp else None
        directs = [saved.new_empty(batch, hidden) for _ in cell.carries]  # carried into the initial state
        w = weight_hh.to(keep).contiguous()
        drop_arg, zone_arg, masks = mask_inputs(hs, drop, zone)
        meta = {**compile_meta(keep), **masks}
        launch = choose_launch(cell, batch, hidden, keep, saved.device, ctx.path, ctx.allowed)
        ran = False
        if launch.path == "persistent":
            d_rec[steps].zero_()
            args = (w, d_out, *d_final, saved, *cell.reads_all(states), lengths, drop_arg, zone_arg)
            args += (*((d_xp,) if d_xp is not None else ()), d_rec, *directs)
            args += (barrier_counters(launch, saved.device), steps, batch, hidden)
            forced = ctx.path is not None
            ran = run_persistent(cell.backward_persistent, launch, args, meta, saved.device, forced=forced)
        if not ran:
            launch = stepwise_fallback(launch, batch, hidden, saved.device)
            read = {"w": w, "d_out": d_out, "saved": saved, "lengths": lengths, **present(drop, zone)}
            read |= {f"d_final{p}": d for p, d in enumerate(d_final)}
            read |= {f"state{p}": s for p, s in enumerate(states)}
            written = {"d_rec": d_rec, **({"d_xp": d_xp} if d_xp is not None else {})}
            written |= {f"direct{k}": d for k, d in enumerate(directs)}
            written["carries"] = saved.new_empty(2 * len(cell.carries), batch, hidden)
            outputs = tuple(k for k in written if k != "carries")
            d_rec, *others = run_per_step(
                f"{cell.kind}_backward", partial(_backward_steps, cell), launch, meta, read, written, outputs
            )
            if d_xp is not None:
                d_xp, *others = others
            directs = others
        return (None,) * 6 + _finish_gradients(
            cell, d_rec[:steps], d_xp, directs, hs, w, drop, masks, weight_hh
        )


def _finish_gradients(
    cell: TritonCell,
    d_rec: Tensor,
    d_xp: Tensor | None,
    directs: list[Tensor],
    hs: Tensor,
    w: Tensor,
    drop: Tensor,
    masks: dict,
    weight_hh: Tensor,
) -> tuple[Tensor, ...]:
    """``(d_xp, *d_init, d_weight_hh[, d_bias_hh])`` from dG ``(T, B, G H)`` and the carried parts."""
    keep = d_rec.dtype
    hidden = hs.shape[2]
    h_prev = hs[:-1].to(keep)  # (T, B, H): h_0 .. h_{T-1}
    via_w = torch.mm(d_rec[0], w)  # into h_0 through the first step's product
    if masks["DROP"]:
        via_w.mul_(drop)
        h_prev = h_prev * drop  # what the product saw
    d_init: list[Tensor | None] = [via_w] + [None] * (cell.parts - 1)
    for part, direct in zip(cell.carries, directs, strict=True):
        d_init[part] = direct if d_init[part] is None else d_init[part] + direct
    flat = d_rec.reshape(-1, d_rec.shape[2])  # (T B, G H)
    d_w = torch.mm(flat.t(), h_prev.reshape(-1, hidden))  # all steps, one GEMM
    dtype = hs.dtype
    grads = [
        (d_rec if d_xp is None else d_xp).to(dtype),
        *(d.to(dtype) for d in d_init),
        d_w.to(weight_hh.dtype),
    ]
    if cell.params > 1:
        grads.append(flat.sum(0).to(weight_hh.dtype))  # b_hh
    return tuple(grads)


def run(
    cell: TritonCell,
    xp: Tensor,
    init: tuple[Tensor, ...],
    params: tuple[Tensor, ...],
    lengths: Tensor | None,
    path: str | Launch | None = None,
    drop: Tensor | None = None,
    zone: Tensor | None = None,
    allowed: frozenset[str] | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``cell``'s Triton recurrence: ``xp (T, B, G H)`` from ``init`` (the state parts, ``(B, H)``
    each) -> ``(output (T, B, H), final state parts)``; arguments as :class:`TritonRecurrence`."""
    lengths = full_lengths(xp, lengths, torch.int32)
    drop = xp.new_empty(0) if drop is None else drop
    zone = xp.new_empty(0) if zone is None else zone
    out, *final = TritonRecurrence.apply(cell, path, allowed, lengths, drop, zone, xp, *init, *params)
    return out, tuple(final)
