"""The Triton kernels compile for real GPUs (sm_80, sm_90) in every dtype, without a GPU: the CPU
interpreter (tests/test_kernels.py) checks the numbers, this checks the code generation, including
the persistent kernels' grid barrier, which the interpreter cannot run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.kernels.triton.common import triton

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(triton is None, reason="triton is not installed"),
]

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"  # triton_aot.py lives with the tools
# 4 per-step kernels, 4 persistent kernels in 2 variants each (W_hh on chip / streamed)
KERNELS_PER_DTYPE = 4 + 4 * 2


@pytest.mark.parametrize(
    ("arch", "dtypes", "block", "masks"),
    [
        ("90", ["float32", "bfloat16", "float64"], ["16", "64", "64"], ["none"]),
        ("80", ["float16", "float32"], ["64", "16", "32"], ["none"]),
        ("90", ["bfloat16"], ["16", "64", "64"], ["train", "eval"]),
        ("80", ["float16"], ["64", "16", "32"], ["train"]),
    ],
    ids=["sm90", "sm80", "sm90-masks", "sm80-masks"],
)
def test_kernels_compile_ahead_of_time(arch, dtypes, block, masks):
    """``masks``: the recurrent-dropout and zoneout variants (:data:`scripts/triton_aot.py`'s ``MASKS``)."""
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "triton_aot.py"),
            "--archs",
            arch,
            "--dtypes",
            *dtypes,
            "--block",
            *block,
            "--masks",
            *masks,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" ok ") == KERNELS_PER_DTYPE * len(dtypes) * len(masks), proc.stdout


_PTX_SCRIPT = """
import re, sys, torch
from triton_aot import compile_kernel
import triton_aot
from rnnkit.kernels.triton.paths import Launch
name = sys.argv[1]
triton_aot.PERSISTENT_VARIANTS["single"] = Launch("persistent", 16, 64, 64, 1, 1, 8, w_resident=True)
for variant in ("resident", "single"):
    ptx = compile_kernel(name, torch.bfloat16, 90, variant=variant).asm["ptx"]
    release = len(re.findall(r"(?:red|atom)\\.global\\.gpu\\.release\\.add", ptx))
    acquire = len(re.findall(r"(?:ld|atom)\\.global\\.gpu\\.acquire", ptx))
    print(variant, release, acquire)
"""


@pytest.mark.parametrize("name", ["_lstm_fwd_persistent", "_gru_bwd_persistent"])
def test_grid_barrier_is_a_release_arrival_and_an_acquire_spin_only_when_programs_share_a_batch(name):
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONWARNINGS": "ignore"}  # scripts/: conftest
    proc = subprocess.run(
        [sys.executable, "-c", _PTX_SCRIPT, name], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = {v: (int(r), int(a)) for v, r, a in re.findall(r"(\w+) (\d+) (\d+)", proc.stdout)}
    assert counts["resident"] == (1, 1), proc.stdout  # 32 programs per batch block: one barrier a step
    assert counts["single"] == (0, 0), proc.stdout  # one program holds all units: no atomics at all
