"""What the Triton kernels share: availability, dtypes, tile sizes, the masks of recurrent dropout
and zoneout, and the device helpers (``_tanh``, ``_mm``, ``_tile``, ``_grid_barrier``,
``_zoneout_keep``, ``_zoneout_mix``) used by every kernel file."""

from __future__ import annotations

import torch
from torch.torch_version import TorchVersion

from rnnkit.kernels.triton.host import NOT_ON_THIS_DEVICE, interpreting

try:  # triton is an optional extra: pip install "rnnkit[triton]"
    import triton
    import triton.language as tl
    from triton.runtime.errors import OutOfResources

    TRITON_IMPORT_ERROR: str | None = None
except ImportError as err:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None
    TRITON_IMPORT_ERROR = str(err)

    class OutOfResources(RuntimeError):  # type: ignore[no-redef]
        """Stands in for Triton's error where Triton is absent (nothing raises it)."""


def triton_installed() -> bool:
    """The optional triton package imported."""
    return triton is not None


def why_triton_cannot_run(device: torch.device) -> str | None:
    """None when Triton kernels can run on ``device`` here, else the reason."""
    if triton is None:
        return f"the triton package is not installed ({TRITON_IMPORT_ERROR}); pip install 'rnnkit[triton]'"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return _interpreter_numpy_clash()
    return NOT_ON_THIS_DEVICE.format(device=device.type)


def _interpreter_numpy_clash() -> str | None:
    """The CPU interpreter of Triton before 3.9 turns a loop bound into an int with
    ``int(array_of_one)``, which numpy 2.4 refuses (seen with triton 3.4 and 3.6; 3.9 runs)."""
    import numpy

    assert triton is not None
    if TorchVersion(triton.__version__) < "3.9" and TorchVersion(numpy.__version__) >= "2.4":
        return (
            f"Triton {triton.__version__}'s CPU interpreter fails under numpy {numpy.__version__} "
            "('only 0-dimensional arrays can be converted to Python scalars'): use triton >= 3.9 "
            "or numpy < 2.4 to run the kernels on the CPU (CUDA is unaffected)"
        )
    return None


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Saved activations of half-precision runs are kept in float32 (fp32 accumulation)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_precision() -> str:
    """tf32 only when the user allowed it for matmuls; exact fp32 otherwise."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def compile_meta(dtype: torch.dtype) -> dict:
    """Compile-time arguments every kernel takes besides its tile sizes."""
    return {"ACC": accumulator(dtype), "PRECISION": dot_precision(), "UPCAST": interpreting()}


ZONEOUT_NONE, ZONEOUT_EXPECTED, ZONEOUT_MASKS = 0, 1, 2  # the kernels' ZONE: how ``zone`` is read


def mask_inputs(xp: torch.Tensor, drop: torch.Tensor | None, zone: torch.Tensor | None):
    """``(drop, zone, meta)`` for a kernel launch: the recurrent-dropout mask ``(B, H)`` and the
    zoneout keep weights (:func:`rnnkit.kernels.zoneout.zoneout_keep`: 0-dim p, or ``(T, P, B, H)``
    masks), contiguous, with the compile-time flags ``DROP`` and ``ZONE`` that say which are read.
    An absent mask is replaced by ``xp`` (a valid pointer of the right type that is never read)."""
    given = present(drop, zone)
    zone = given.get("zone")
    kind = ZONEOUT_NONE if zone is None else ZONEOUT_EXPECTED if zone.dim() == 0 else ZONEOUT_MASKS
    meta = {"DROP": "drop" in given, "ZONE": kind}
    return given.get("drop", xp), given.get("zone", xp), meta


def present(drop: torch.Tensor | None, zone: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The masks that are there, by name (``drop``, ``zone``), contiguous: the per-step loops' buffers."""
    given = (("drop", drop), ("zone", zone))
    return {name: t.contiguous() for name, t in given if t is not None and t.numel() > 0}


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
    def _grid_barrier(counter_ptr, target, SYNC: tl.constexpr):
        """Wait until ``target`` arrivals were counted at ``counter_ptr``, after adding this one.

        The counter only grows during a launch (the driver zeroes it before), so step t waits for
        ``programs * (t + 1)`` arrivals and no reset is needed between steps. ``debug_barrier``
        orders this program's stores before its release; the acquire spin makes the other
        programs' stores visible after it. Without SYNC (one program per group, and always in the
        CPU interpreter, which runs programs one after another) only the in-program barrier runs:
        a program reads back its own step's stores from global memory.
        """
        tl.debug_barrier()
        if SYNC:
            tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
            while tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu") < target:
                pass
            tl.debug_barrier()

    @triton.jit
    def _rows_times_w(
        src_ptr,
        w_ptr,
        rb,
        rh,
        mb,
        mh,
        K,
        H,
        BLOCK_B: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        """``src[rb, :K] @ W[:K, rh]`` streamed in BLOCK_K chunks: the backward recurrent product
        dG_{t+1} W_hh of one (rows, units) tile, with ``src`` (B, K) and ``W`` (K, H) row-major."""
        acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < K
            src = tl.load(src_ptr + rb[:, None] * K + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
            w = tl.load(w_ptr + rk[:, None] * H + rh[None, :], mask=mk[:, None] & mh[None, :], other=0.0)
            acc += _mm(src, w, ACC, PRECISION, UPCAST)
        return acc

    @triton.jit
    def _dropped(h, drop, ACC: tl.constexpr):
        """h_{t-1} times the recurrent-dropout mask, in the operands' dtype (rounded once from ACC,
        as torch rounds a half-precision product; the CPU interpreter's bf16 arithmetic is wrong)."""
        return (h.to(ACC) * drop.to(ACC)).to(h.dtype)

    @triton.jit
    def _zoneout_keep(zone_ptr, t, part, P, state, tile, B, H, ACC: tl.constexpr, ZONE: tl.constexpr):
        """Zoneout's keep weight k of state part ``part`` (of P) at step t for one tile: ``zone`` is
        0-dim p (ZONE = 1, eval: the expectation) or 0/1 masks (T, P, B, H) (ZONE = 2, training)."""
        if ZONE == 1:
            return tl.load(zone_ptr).to(ACC)
        else:
            return tl.load(zone_ptr + (t * P + part) * B * H + state, mask=tile, other=0.0).to(ACC)

    @triton.jit
    def _zoneout_mix(new, old, k):
        """s_t = k s_{t-1} + (1 - k) s~_t, rounded as ``torch.lerp(new, old, k)`` rounds it (exact
        for 0/1 masks)."""
        return tl.where(k < 0.5, new + k * (old - new), old - (old - new) * (1.0 - k))
