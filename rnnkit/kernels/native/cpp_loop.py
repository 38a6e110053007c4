"""The native backend's time loops in C++ (``csrc/``), built once at first use.

``torch.utils.cpp_extension.load`` compiles the sources with the installed compiler and ninja into
torch's extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and
loads them as ``torch.ops.rnnkit_cpp.*``; later processes reuse the build (it is rebuilt only when a
source changes). Where it cannot be built or loaded (no compiler, no ninja, a failed build), the
Python loops of :mod:`.lstm` / :mod:`.gru` run instead, after one warning that says why.
``RNNKIT_CPP_LOOP=0`` turns the C++ loop off (the fallback's tests use it; ``RNNKIT_COMPILED_LOOP``,
its former name, is still read).
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = sorted(str(p) for p in CSRC.glob("*.cpp"))
DTYPES = (torch.float32, torch.float64)  # what the C++ loops are instantiated for
_lock = threading.Lock()
_state: dict[str, Any] = {}


def disabled() -> bool:
    flag = os.environ.get("RNNKIT_CPP_LOOP")  # read at every call: a test or benchmark may flip it
    if flag is None:
        flag = os.environ.get("RNNKIT_COMPILED_LOOP", "1")  # the former name
    return flag.strip().lower() in ("0", "false", "no", "off")


def ops() -> Any | None:
    """``torch.ops.rnnkit_cpp``, built on first use; None where it cannot be (warned once)."""
    if disabled():
        return None
    if "ops" in _state:
        return _state["ops"]
    with _lock:
        if "ops" not in _state:
            _state["ops"] = _build()
    return _state["ops"]


SIMD_FLAGS = {
    "AVX512": [
        "-mavx512f",
        "-mavx512bw",
        "-mavx512vl",
        "-mavx512dq",
        "-mfma",
        "-mf16c",
        "-DCPU_CAPABILITY_AVX512",
        "-DCPU_CAPABILITY=AVX512",
    ],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}


def simd_flags() -> list[str]:
    """Compiler flags for the vector instructions of ``csrc/`` (``at::vec::Vectorized``): those of
    the instruction set torch's own kernels run with on this machine, AVX-512 or AVX2 (GCC or Clang
    on x86; 16 or 8 float lanes per vector), else none (ATen's portable Vectorized, or NEON on ARM
    where ATen enables it by itself). ``RNNKIT_CPP_SIMD=avx2`` builds the AVX2 loop on an AVX-512
    machine (its own build; tests use it to check both)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in SIMD_FLAGS:
        return []
    if os.environ.get("RNNKIT_CPP_SIMD", "").strip().lower() == "avx2":
        capability = "AVX2"
    return SIMD_FLAGS[capability]


def openmp_flags() -> list[str]:
    """``-fopenmp`` where torch's own threads are OpenMP's (its Linux wheels): ``at::parallel_for``
    is a header template that compiles to an OpenMP parallel region only in code built with it, so
    without the flag every parallel loop of csrc/ ran on one thread. The extension links torch's own
    ``libgomp`` (``torch/lib`` comes first on the link path), the runtime already loaded, so both
    share one thread pool. Elsewhere (macOS, a native-threads torch) none: the loops run serially."""
    if platform.system() != "Linux" or "OpenMP" not in torch.__config__.parallel_info():
        return []
    return ["-fopenmp"]


def build_name(flags: list[str]) -> str:
    """The extension's name in torch's cache: it changes with every source or header, with the
    instruction set and with the checkout's location, so that a changed header or another machine
    sharing the cache rebuilds, and two checkouts of rnnkit (a clone beside an editable install) do
    not rebuild each other's extension at every process start (ninja's commands name the sources'
    absolute paths)."""
    digest = hashlib.sha256(str(CSRC.resolve()).encode())
    for path in sorted(p for p in CSRC.iterdir() if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(" ".join(flags).encode())
    return f"rnnkit_cpp_{digest.hexdigest()[:12]}"


def _build() -> Any | None:
    try:
        from torch.utils.cpp_extension import load

        flags = simd_flags() + openmp_flags()
        load(
            name=build_name(flags),
            sources=SOURCES,
            extra_cflags=["-O3", *flags],
            extra_ldflags=openmp_flags(),
            is_python_module=False,
            verbose=False,
        )
        return torch.ops.rnnkit_cpp
    except Exception as error:  # no compiler, no ninja, a failed build: the Python loop runs
        lines = str(error).strip().splitlines()
        errors = [line.strip() for line in lines if "error:" in line.lower()]  # compiler complaints
        reason = errors[0] if errors else (lines[-1] if lines else "")
        warnings.warn(
            "rnnkit: the compiled CPU time loop could not be built or loaded "
            f"({type(error).__name__}: {reason}); the Python loop runs instead "
            "(same results, slower at small sizes). Install a C++ compiler and ninja to get it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def usable(x: torch.Tensor) -> Any | None:
    """The compiled ops when they can run a recurrence over ``x`` (CPU, float32/float64), else None.

    They run at every size: per step the product takes the route timed fastest at the first call
    at that shape (csrc/step_product.h) and one pass over the rows does the rest. Measured
    (scripts/bench_rnn.py, 2 cores, fp32, ratio to torch.nn, compiled / Python loop): T100 B64 H512
    LSTM fwd 1.16 / 1.29, fwd+bwd 1.04 / 1.05; T200 B8 H64 LSTM fwd+bwd 0.93 / 4.85.
    """
    if x.device.type != "cpu" or x.dtype not in DTYPES:
        return None
    return ops()
