"""What the Triton kernels share: availability, launch parameters, dtypes."""

from __future__ import annotations

import os

import torch

try:  # triton is an optional extra: pip install "rnnkit[triton]"
    import triton
    import triton.language as tl

    TRITON_IMPORT_ERROR: str | None = None
except ImportError as err:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None
    TRITON_IMPORT_ERROR = str(err)


def interpreting() -> bool:
    """Triton kernels run on the CPU through the interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def why_triton_cannot_run(device: torch.device) -> str | None:
    """None when Triton kernels can run on ``device`` here, else the reason."""
    if triton is None:
        return f"the triton package is not installed ({TRITON_IMPORT_ERROR}); pip install 'rnnkit[triton]'"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return None
    return (
        "Triton kernels run on CUDA tensors (or on the CPU under TRITON_INTERPRET=1), "
        f"got a {device.type} tensor"
    )


def block_sizes(batch: int, hidden: int) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_H, BLOCK_K): tiles of at least 16 (tl.dot's minimum)."""
    block_b = min(64, max(16, triton.next_power_of_2(batch)))
    block_h = min(64, max(16, triton.next_power_of_2(hidden)))
    block_k = min(64, max(16, triton.next_power_of_2(hidden)))
    return block_b, block_h, block_k


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Saved activations of half-precision runs are kept in float32 (fp32 accumulation)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def launch_config(batch: int, hidden: int, dtype: torch.dtype) -> tuple[tuple[int, int], dict]:
    """Grid and compile-time arguments of a per-step kernel over a (batch, hidden) state."""
    block_b, block_h, block_k = block_sizes(batch, hidden)
    grid = (triton.cdiv(batch, block_b), triton.cdiv(hidden, block_h))
    meta = {
        "BLOCK_B": block_b,
        "BLOCK_H": block_h,
        "BLOCK_K": block_k,
        "ACC": accumulator(dtype),
        "PRECISION": dot_precision(),
        "UPCAST": interpreting(),
    }
    return grid, meta


def dot_precision() -> str:
    """tf32 only when the user allowed it for matmuls; exact fp32 otherwise."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
