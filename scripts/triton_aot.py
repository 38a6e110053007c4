"""Compile the Triton kernels for GPU architectures ahead of time, with no GPU present.

The CPU interpreter checks what the kernels compute; this checks that they compile for real GPUs
(tile shapes, dot operand types, casts) in every supported dtype. Run it with the interpreter off:

    TRITON_INTERPRET=0 python scripts/triton_aot.py --archs 80 90 \
        --dtypes float32 bfloat16 float16 float64
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import time
from dataclasses import replace

import torch

from rnnkit.kernels.triton.common import (
    ZONEOUT_EXPECTED,
    ZONEOUT_MASKS,
    ZONEOUT_NONE,
    compile_meta,
    state_dtype,
)
from rnnkit.kernels.triton.paths import Launch

_TRITON = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.int32: "i32",
}


class _Recorder:
    """Stands in for a kernel: ``recorder[grid](*args, **meta)`` records the arguments' Triton types
    (``*fp32`` for a float32 tensor, ``i32`` for an int) by the kernel's argument names."""

    def __init__(self, fn, calls: dict[str, dict[str, str]]) -> None:
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        def launch(*args, **meta):
            types = {
                name: "*" + _TRITON[a.dtype] if isinstance(a, torch.Tensor) else "i32"
                for name, a in zip(self.fn.arg_names, args, strict=False)  # constexprs come as keywords
            }
            self.calls.setdefault(self.fn.fn.__name__, types)

        return launch


@functools.cache
def _signatures(dtype: torch.dtype, masks: str = "none") -> dict[str, dict[str, str]]:
    """Argument types per kernel, read off the driver itself: :mod:`rnnkit.kernels.triton.driver`
    runs forward and backward on tiny CPU tensors of ``dtype`` (with the ``masks`` variant's
    recurrent-dropout mask and zoneout weights) on the persistent and the per-step paths, with every
    kernel replaced by a :class:`_Recorder`. So the types are what the drivers really pass."""
    from rnnkit.kernels.triton import driver
    from rnnkit.kernels.triton.gru import GRU_KERNELS
    from rnnkit.kernels.triton.lstm import LSTM_KERNELS

    calls: dict[str, dict[str, str]] = {}
    steps, batch, hidden = 2, 2, 4
    for cell in (LSTM_KERNELS, GRU_KERNELS):
        names = ("forward_step", "forward_persistent", "backward_step", "backward_persistent")
        recording = replace(cell, **{n: _Recorder(getattr(cell, n), calls) for n in names})
        for path in ("persistent", "stepwise"):
            xp = torch.zeros(steps, batch, cell.gates * hidden, dtype=dtype, requires_grad=True)
            init = tuple(torch.zeros(batch, hidden, dtype=dtype) for _ in range(cell.parts))
            params = (torch.zeros(cell.gates * hidden, hidden, dtype=dtype),)
            params += (torch.zeros(cell.gates * hidden, dtype=dtype),) if cell.params > 1 else ()
            drop = zone = None
            if MASKS[masks]["DROP"]:
                drop = torch.ones(batch, hidden, dtype=dtype)
            if MASKS[masks]["ZONE"] == ZONEOUT_MASKS:
                zone = torch.zeros(steps, cell.parts, batch, hidden, dtype=dtype)
            elif MASKS[masks]["ZONE"] == ZONEOUT_EXPECTED:
                zone = torch.tensor(0.1, dtype=dtype)
            out, final = driver.run(recording, xp, init, params, None, path, drop, zone)
            torch.autograd.backward([out, *final], [torch.zeros_like(t) for t in (out, *final)])
    return calls


# The masks a kernel reads (recurrent dropout, zoneout): none; training (the dropout mask and per-step
# zoneout masks); eval (zoneout's expectation p)
MASKS = {
    "none": {"DROP": False, "ZONE": ZONEOUT_NONE},
    "train": {"DROP": True, "ZONE": ZONEOUT_MASKS},
    "eval": {"DROP": False, "ZONE": ZONEOUT_EXPECTED},
}

# What the persistent kernels are compiled with: the variants the plan makes for real GPUs.
PERSISTENT_VARIANTS = {
    "resident": Launch("persistent", 16, 16, 512, 1, 32, 8, w_resident=True),  # T x B16 x H512
    "streamed": Launch("persistent", 16, 16, 64, 1, 48, 8, w_resident=False),  # W_hh from L2 each step
}


def compile_kernel(
    name: str,
    dtype: torch.dtype,
    arch: int,
    block: tuple[int, int, int] = (16, 64, 64),
    variant: str = "resident",
    masks: str = "none",
):
    """Compile one kernel for ``sm_{arch}``; returns the compiled kernel (PTX in ``.asm["ptx"]``).

    Per-step kernels take the tiles ``block`` (BLOCK_B, BLOCK_H, BLOCK_K); persistent ones one of
    :data:`PERSISTENT_VARIANTS`, with the grid barrier compiled in (SYNC); ``masks`` one of
    :data:`MASKS`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rnnkit.kernels.triton import gru as triton_gru
    from rnnkit.kernels.triton import lstm as triton_lstm

    fn = getattr(triton_lstm if name.startswith("_lstm") else triton_gru, name)
    if not isinstance(fn, triton.runtime.jit.JITFunction):
        raise RuntimeError("ahead-of-time compilation needs TRITON_INTERPRET unset (the interpreter is on)")
    signature = dict(_signatures(dtype, masks)[name])
    constexprs = {**compile_meta(state_dtype(dtype)), "PRECISION": "ieee", "UPCAST": False, **MASKS[masks]}
    num_warps = 4
    if name.endswith("_persistent"):
        launch = PERSISTENT_VARIANTS[variant]
        constexprs.update(launch.meta())
        num_warps = launch.num_warps
    else:
        constexprs.update(BLOCK_B=block[0], BLOCK_H=block[1], BLOCK_K=block[2])
    for key in constexprs:
        signature[key] = "constexpr"
    missing = set(fn.arg_names) - set(signature)
    if missing:
        raise RuntimeError(f"{name}: no type for arguments {sorted(missing)}")
    src = ASTSource(
        fn=fn,
        signature={a: signature[a] for a in fn.arg_names},
        constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()},
    )
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


def resources(kernel, arch: int) -> str:
    """Registers per thread, spilled bytes and shared memory of a compiled kernel, from ptxas -v
    (what decides how many programs an SM holds, and whether W_hh on chip really stayed there)."""
    import re
    import subprocess
    import tempfile

    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
        ptx.write(kernel.asm["ptx"])
        ptx.flush()
        suffix = "a" if arch >= 90 else ""
        proc = subprocess.run(
            [get_ptxas(arch).path, f"-arch=sm_{arch}{suffix}", "-v", ptx.name, "-o", os.devnull],
            capture_output=True,
            text=True,
        )
    info = proc.stdout + proc.stderr
    regs = re.search(r"Used (\d+) registers", info)
    spills = re.search(r"(\d+) bytes spill stores", info)
    return (
        f"{regs.group(1) if regs else '?'} regs, {spills.group(1) if spills else '?'} B spilled, "
        f"{kernel.metadata.shared // 1024} KiB shared"
    )


def jobs(kernels: list[str]) -> list[tuple[str, str]]:
    """(kernel, variant) pairs: per-step kernels once, persistent ones in every variant."""
    return [
        (name, variant)
        for name in kernels
        for variant in (PERSISTENT_VARIANTS if name.endswith("_persistent") else ["step"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", type=int, default=[80, 90])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16", "float64"])
    parser.add_argument("--kernels", nargs="+", default=list(_signatures(torch.float32)))
    parser.add_argument(
        "--masks",
        nargs="+",
        choices=list(MASKS),
        default=["none"],
        help="the recurrent-dropout and zoneout variants to compile (default: none)",
    )
    parser.add_argument(
        "--block",
        nargs=3,
        type=int,
        default=[16, 64, 64],
        metavar=("B", "H", "K"),
        help="BLOCK_B BLOCK_H BLOCK_K (the drivers use 16..64 each)",
    )
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("set TRITON_INTERPRET=0: the interpreter replaces the kernels with Python functions")
    failures = 0
    for arch in args.archs:
        for dtype_name in args.dtypes:
            for (name, variant), masks in itertools.product(jobs(args.kernels), args.masks):
                start = time.perf_counter()
                try:
                    kernel = compile_kernel(
                        name, getattr(torch, dtype_name), arch, tuple(args.block), variant, masks
                    )
                    status = f"ok ({len(kernel.asm['ptx']) // 1024} KiB PTX, {resources(kernel, arch)})"
                except Exception as err:  # noqa: BLE001 - report every failing combination
                    failures += 1
                    status = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
                print(
                    f"sm_{arch} {dtype_name:9} {name:21} {variant:8} {masks:5} "
                    f"{time.perf_counter() - start:5.1f} s  "
                    f"{status}",
                    flush=True,
                )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
