"""How a Triton recurrence is run: the path table, the co-residency check that keeps a persistent
grid from hanging, the streamed-W persistent variant, and what ``backend="auto"`` picks on CUDA."""

from __future__ import annotations

import pytest
import torch
from kernel_parity import compare_launch_with_cpu_op

from rnnkit import kernels
from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.kernels.triton import common as triton_common
from rnnkit.kernels.triton.common import why_triton_cannot_run
from rnnkit.kernels.triton.paths import (
    PATHS,
    DeviceLimits,
    GridTooLarge,
    Launch,
    check_coresident,
    max_resident_programs,
    plan,
)

CUDA = torch.device("cuda")  # planning only: no CUDA tensor is made
H100 = DeviceLimits(sm_count=132)
needs_interpreter = pytest.mark.skipif(
    why_triton_cannot_run(torch.device("cpu")) is not None,
    reason=f"Triton cannot run on the CPU: {why_triton_cannot_run(torch.device('cpu'))}",
)


# ------------------------------------------------------------------------------------- the table
def test_whole_w_hh_in_one_program_needs_no_barrier():
    launch = plan("lstm", 64, 128, torch.bfloat16, CUDA, limits=H100)  # 4 x 128 x 128 bf16 = 128 KiB
    assert (launch.path, launch.grid, launch.sync, launch.w_resident) == ("persistent", (1, 1), False, True)


def test_standard_size_spreads_units_over_the_sms_with_a_barrier():
    launch = plan("lstm", 64, 512, torch.bfloat16, CUDA, limits=H100)
    assert launch.path == "persistent" and launch.sync and launch.w_resident
    assert (launch.block_h, launch.grid) == (16, (1, 32))
    assert launch.meta() == {
        "BLOCK_B": 64,
        "BLOCK_H": 16,
        "BLOCK_K": 512,
        "SYNC": True,
        "W_RESIDENT": True,
    }


def test_w_hh_too_big_for_the_chip_is_streamed_in_chunks():
    launch = plan("lstm", 16, 768, torch.float32, CUDA, limits=H100)  # 4 x 1024 x 16 x 4 B = 256 KiB
    assert launch.path == "persistent" and not launch.w_resident and launch.block_k == 64


def test_a_grid_the_device_cannot_hold_takes_the_graphed_path_or_is_refused_when_forced():
    small = DeviceLimits(sm_count=4)
    launch = plan("gru", 1024, 256, torch.float32, CUDA, limits=small)  # 16 batch blocks > 4 SMs
    assert launch.path == "graphed" and launch.graphed
    with pytest.raises(GridTooLarge, match="persistent grid .* of 16 programs cannot be resident at once"):
        plan("gru", 1024, 256, torch.float32, CUDA, path="persistent", limits=small)


def test_coresidency_check_refuses_an_oversized_grid():
    # 255 registers x 8 warps: one program per SM; 64 registers x 4 warps: 8 per SM (by registers)
    assert max_resident_programs(H100, n_regs=255, num_warps=8, shared_bytes=0) == 132
    assert max_resident_programs(H100, n_regs=64, num_warps=4, shared_bytes=0) == 132 * 8
    assert max_resident_programs(H100, n_regs=32, num_warps=4, shared_bytes=100 * 1024) == 132 * 2
    check_coresident(132, 132)
    with pytest.raises(GridTooLarge, match="133 programs cannot be resident at once .* holds 132"):
        check_coresident(133, 132)


@pytest.mark.parametrize("path", ["stepwise", "graphed"])
def test_stepwise_grid_is_widened_to_cover_the_sms(path):
    launch = plan("lstm", 64, 512, torch.float32, CUDA, path=path, limits=H100)
    assert launch.programs >= 128 and launch.block_h == 16  # was 8 programs with 64 x 64 tiles
    assert launch.path == path and launch.graphed == (path == "graphed")


def test_interpreter_runs_one_program_per_batch_block():
    launch = plan("lstm", 70, 33, torch.float64, torch.device("cpu"))
    assert (launch.path, launch.grid, launch.sync) == ("persistent", (2, 1), False)


def test_unknown_path_is_named():
    with pytest.raises(
        ValueError, match=r"Triton path must be one of \['persistent', 'graphed', 'stepwise'\], got 'fast'"
    ):
        plan("lstm", 4, 8, torch.float32, CUDA, path="fast", limits=H100)


# ------------------------------------------------------------------- kernels the table rarely picks
@needs_interpreter
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [3, 70], ids=["one_batch_block", "two_batch_blocks"])
@pytest.mark.parametrize("masks", ["none", "train", "eval"])
def test_persistent_kernel_with_streamed_w_matches_the_cpu_op_in_float64(kind, batch, masks):
    """Also with the masks of recurrent dropout and zoneout (training) or zoneout's expectation (eval)."""
    steps, hidden = 5, 33
    parts = 2 if kind == "lstm" else 1
    drop = zone = None
    if masks == "train":
        drop = (torch.rand(batch, hidden) > 0.3).double() / 0.7
        zone = (torch.rand(steps, parts, batch, hidden) < 0.3).double()
    elif masks == "eval":
        zone = torch.tensor(0.3, dtype=torch.float64)
    # W streamed from memory in 16-wide K chunks (3 chunks for H = 33) instead of held on chip
    launch = Launch("persistent", 64, 64, 16, -(-batch // 64), 1, w_resident=False)
    lengths = torch.randint(1, steps + 1, (batch,))
    assert compare_launch_with_cpu_op(kind, launch, steps, batch, hidden, lengths, drop, zone) <= 1e-10


# --------------------------------------------------------------------------------- auto on CUDA
@pytest.mark.parametrize("cell", [LSTMCell(3, 8), GRUCell(3, 8)], ids=["lstm", "gru"])
@pytest.mark.parametrize(
    ("verified", "expected"),
    [
        (frozenset(), "native"),
        (frozenset({"stepwise"}), "triton-stepwise"),
        (frozenset({"graphed", "stepwise"}), "triton-graphed"),
        (frozenset(PATHS), "triton-persistent"),
    ],
    ids=["nothing_verified", "stepwise_verified", "per_step_verified", "all_verified"],
)
def test_auto_on_cuda_uses_only_paths_verified_on_a_gpu(monkeypatch, cell, verified, expected):
    if why_triton_cannot_run(CUDA) is not None:
        pytest.skip(f"Triton is not installed: {why_triton_cannot_run(CUDA)}")
    from rnnkit.kernels.triton import driver

    calls = []

    def triton_launch(cell_kernels, path, allowed, lengths, drop, zone, xp, *tensors):
        launch = driver.choose_launch(cell_kernels, xp.shape[1], 8, xp.dtype, xp.device, path, allowed)
        calls.append(f"triton-{launch.path}")  # the interpreter's plan: persistent fits
        final = (xp.new_zeros(xp.shape[1], 8) for _ in range(cell_kernels.parts))
        return (xp.new_zeros(xp.shape[0], xp.shape[1], 8), *final)

    monkeypatch.setattr(driver.TritonRecurrence, "apply", triton_launch)
    monkeypatch.setattr(kernels, "NATIVE", lambda *a: calls.append("native"))
    monkeypatch.setattr(kernels, "VERIFIED_ON_GPU", verified)
    runner = kernels.select("auto", cell, CUDA)
    x = torch.zeros(5, 2, cell.input_size)  # a runner projects its input itself
    state = (torch.zeros(2, 8), torch.zeros(2, 8)) if isinstance(cell, LSTMCell) else torch.zeros(2, 8)
    runner(cell, x, state, None)
    assert calls == [expected]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # under torch.compile: one op
    runner(cell, x, state, None)
    assert calls == [expected, "native"]


class _FakeKernel:
    """A Triton kernel stand-in for run_persistent's CUDA branch: its compiled form needs more
    shared memory than an SM has while W_hh is held on chip (as fp32 H=512 did on an H100)."""

    def __init__(self, streamed_fits: bool = True) -> None:
        self.launched: list[dict] = []
        self.streamed_fits = streamed_fits

    def warmup(self, *args, grid, **meta):
        from rnnkit.kernels.triton.common import OutOfResources

        fits = self.streamed_fits

        class Compiled:
            n_regs, metadata = 128, type("Meta", (), {"shared": 1024})

            def _init_handles(self) -> None:
                if meta["W_RESIDENT"] or not fits:
                    raise OutOfResources(262144, 232448, "shared memory")

        return Compiled()

    def __getitem__(self, grid):
        return lambda *args, **meta: self.launched.append(meta)


@pytest.mark.skipif(why_triton_cannot_run(torch.device("cpu")) is not None, reason="needs triton")
def test_a_persistent_kernel_too_big_for_an_sm_runs_graphed_or_streams_w_when_forced():
    from rnnkit.kernels.triton.paths import run_persistent

    launch = Launch("persistent", 16, 512, 512, 1, 1, w_resident=True)  # one program: no barrier
    kernel = _FakeKernel()
    assert run_persistent(kernel, launch, (), {}, CUDA) is False  # the caller runs graphed
    assert kernel.launched == []
    assert run_persistent(kernel, launch, (), {}, CUDA, forced=True) is True
    assert [(m["W_RESIDENT"], m["BLOCK_K"]) for m in kernel.launched] == [(False, 64)]
    always = _FakeKernel()
    always.warmup = lambda *a, grid, **meta: _FakeKernel.warmup(
        always, *a, grid=grid, **{**meta, "W_RESIDENT": 1}
    )
    with pytest.raises(GridTooLarge, match="does not fit one SM"):
        run_persistent(always, launch, (), {}, CUDA, forced=True)


BARRIER_SCRIPT = """
import torch
from rnnkit.kernels.triton.paths import Launch
from kernel_parity import compare_launch_with_cpu_op

lengths = torch.tensor([4, 2, 3])
for kind in ("lstm", "gru"):
    for resident, block_k in ((True, 16), (False, 8)):
        launch = Launch("persistent", 16, 16, block_k, 1, 1, w_resident=resident, barrier=True)
        assert launch.sync and launch.meta()["SYNC"]
        error = compare_launch_with_cpu_op(kind, launch, 4, 3, 8, lengths)
        assert error <= 1e-10, error
        print(kind, "resident" if resident else "streamed", "ok", flush=True)
"""


@needs_interpreter
def test_persistent_kernels_pass_their_grid_barrier_forward_and_backward():
    """The barrier's arrival count must match the steps done, in the backward's reversed loop too
    (a target ahead of the arrivals hangs the GPU; found on an H100). The interpreter runs the
    barrier when one program holds every unit; a hang is caught by the subprocess's time limit."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BARRIER_SCRIPT], env=env, capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired as err:
        done = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        pytest.fail(f"a persistent kernel never passed its grid barrier (a GPU would hang); done: {done!r}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok") == 4, proc.stdout


@pytest.mark.skipif(triton_common.triton is None, reason="triton is not installed")
@pytest.mark.parametrize(
    ("triton_version", "numpy_version", "runs"),
    [
        ("3.6.0", "2.4.6", False),
        ("3.4.0", "2.4.0", False),
        ("3.9.0", "2.4.6", True),
        ("3.6.0", "2.3.5", True),
    ],
)
def test_the_cpu_interpreter_is_refused_with_the_versions_that_break_it(
    monkeypatch, triton_version, numpy_version, runs
):
    import numpy

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_common.triton, "__version__", triton_version)
    monkeypatch.setattr(numpy, "__version__", numpy_version)
    reason = why_triton_cannot_run(torch.device("cpu"))
    if runs:
        assert reason is None
    else:
        assert f"Triton {triton_version}'s CPU interpreter fails under numpy {numpy_version}" in reason
        assert "use triton >= 3.9 or numpy < 2.4" in reason
