"""The Triton kernels compile for real GPUs (sm_80, sm_90) in every dtype, without a GPU: the CPU
interpreter (tests/test_kernels.py) checks the numbers, this checks the code generation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnkit.kernels.triton_common import triton

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(triton is None, reason="triton is not installed"),
]


@pytest.mark.parametrize(
    ("arch", "dtypes", "block"),
    [
        ("90", ["float32", "bfloat16", "float64"], ["16", "64", "64"]),
        ("80", ["float16", "float32"], ["64", "16", "32"]),
    ],
    ids=["sm90", "sm80"],
)
def test_kernels_compile_ahead_of_time(arch, dtypes, block):
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnkit.kernels.triton_aot",
            "--archs",
            arch,
            "--dtypes",
            *dtypes,
            "--block",
            *block,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" ok ") == 4 * len(dtypes)
