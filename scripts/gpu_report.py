"""Everything only a GPU can show about rnnkit's kernels, in one command and one Markdown file.

    python scripts/gpu_report.py --out report.md            # under 10 minutes on one H100
    python scripts/gpu_report.py --out report.md --quick    # a smoke run: small shapes, few repeats

Every command runs in its own process with its own time limit (a kernel that hangs or crashes
costs its row, not the report). Triton compiles each kernel variant on the host (5-20 s each on an
H100's host), which dominates: the compiling runs side by side (``--jobs``, one process per core);
set ``TRITON_CACHE_DIR`` to keep the compiled kernels between runs.

1. the device, the library versions, the TF32 settings, and the plan (path, grid, barrier, W on
   chip) the Triton table makes for every benchmark case;
2. the speed table against cuDNN (``scripts/bench_rnn.py``), alone on the machine after an untimed
   pass that compiles every case's kernels side by side: forward and forward+backward, per kind and
   case (``--cases``: the standard T=100 B=64 I=H=512, T=1024 long sequences, a 2-layer
   bidirectional one) in bf16 and in fp32 with TF32 off for both sides (plus TF32 on for both at the
   standard size). Ratio = rnnkit / cuDNN: below 1.0 rnnkit is faster;
3. side by side within ``--budget`` seconds: the kernel tests on CUDA (``tests/test_kernels.py``,
   ``tests/test_triton_paths.py``, ``tests/test_step_graphs.py``: the graphed path's real CUDA
   graphs, ``tests/test_double_backward.py``) and the correctness sweep
   (``scripts/check_kernels.py --quick``, one process per kind, path and dtype): every backend and
   Triton path against torch.nn in float64, float32, bfloat16 and float16; outputs, final states
   and every gradient; odd sizes, T=1, B=1, variable lengths, the standard size, 2-layer
   bidirectional, zoneout and recurrent dropout.

A path joins ``VERIFIED_ON_GPU`` (rnnkit/kernels/triton/paths.py), and so ``backend="auto"``, only
after its rows of section 3 pass here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def environment() -> str:
    import torch

    import rnnkit
    from rnnkit.kernels.triton.common import triton
    from rnnkit.kernels.triton.paths import VERIFIED_ON_GPU, plan

    lines = [f"- torch {torch.__version__}, triton {getattr(triton, '__version__', 'not installed')}"]
    if not torch.cuda.is_available():
        lines.append("- **no CUDA device**: the sections below test nothing on a GPU")
        return "\n".join(lines)
    device = torch.device("cuda")
    p = torch.cuda.get_device_properties(device)
    lines += [
        f"- device: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
        f"compute capability {p.major}.{p.minor}; cuDNN {torch.backends.cudnn.version()}",
        f"- defaults: torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (cuDNN's fp32 "
        f"RNNs use TF32 unless turned off), torch.backends.cuda.matmul.allow_tf32="
        f"{torch.backends.cuda.matmul.allow_tf32} (rnnkit's fp32 kernels use TF32 only if on)",
        f"- paths verified on a GPU before this run (used by backend='auto'): {sorted(VERIFIED_ON_GPU)}",
        f"- rnnkit at {rnnkit.__file__}",
        "",
        "Plans of the Triton table (forward; backward plans in the state dtype):",
        "",
        "| kind | dtype | B | H | path | grid | barrier | W_hh on chip | tiles B x H x K |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("lstm", "gru"):
        for dtype in (torch.float32, torch.bfloat16):
            for batch, hidden in [(64, 512), *[(b, h) for b in (1, 4, 16) for h in (128, 256, 512, 768)]]:
                launch = plan(kind, batch, hidden, dtype, device)
                barrier, on_chip = ("yes" if flag else "no" for flag in (launch.sync, launch.w_resident))
                lines.append(
                    f"| {kind} | {str(dtype).removeprefix('torch.')} | {batch} | {hidden} | {launch.path} | "
                    f"{launch.grid} | {barrier} | {on_chip} | "
                    f"{launch.block_b} x {launch.block_h} x {launch.block_k} |"
                )
    return "\n".join(lines)


def run_command(cmd: list[str], limit: float) -> tuple[str, str, float]:
    """Run one command with a time limit: its output, its status and its wall time."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TRITON_INTERPRET": "0"},
            capture_output=True,
            text=True,
            timeout=limit,
        )
        output, status = proc.stdout + proc.stderr, f"exit {proc.returncode}"
    except subprocess.TimeoutExpired as err:
        output = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        status = f"TIMED OUT after {limit:.0f} s (a hang in a kernel, or too slow): output so far above"
    return output, status, time.perf_counter() - start


def section(title: str, runs: list[tuple[list[str], tuple[str, str, float]]]) -> str:
    """One Markdown section from the results of its commands (printed as it is made)."""
    parts = [f"## {title}"]
    for cmd, (output, status, wall) in runs:
        parts.append(f"`{' '.join(cmd[1:])}`: {status}, {wall:.0f} s\n\n{output.strip()}")
        print(f"\n## {title}\n$ {' '.join(cmd)}\n{output[-3000:]}\n[{status}, {wall:.0f} s]", flush=True)
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="report.md", help="Markdown file to write")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(16, os.cpu_count() or 1),
        help="processes for the correctness sections (Triton compiles on the CPU: one per core)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["speed", "sweep", "tests"], help="sections to leave out"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["standard", "long_b16_h768", "long_b4_h512", "long_b1_h256", "deep_bi_512"],
        help="scripts/bench_rnn.py cases to time in bf16 and fp32 (TF32 on: the standard case)",
    )
    parser.add_argument(
        "--compile-budget", type=float, default=240.0, help="seconds for compiling the benchmark's kernels"
    )
    parser.add_argument("--case-limit", type=float, default=60.0, help="seconds for timing one case")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for the correctness sections together; a job not done by then is reported cut",
    )
    args = parser.parse_args()

    paths = ["triton-persistent", "triton-graphed", "triton-stepwise", "native"]
    dtypes = ["float64", "float32", "bfloat16", "float16"]
    sweep = [  # one process per (kind, backend, dtype): they compile side by side
        [PY, "scripts/check_kernels.py", "--device", "cuda", "--kinds", kind, "--backends", backend]
        + ["--dtypes", dtype, "--quick"]
        for kind in ("lstm", "gru")
        for backend in paths
        for dtype in dtypes
    ]
    tests = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernels.py"]
    tests += ["tests/test_triton_paths.py", "tests/test_step_graphs.py", "tests/test_double_backward.py"]
    if args.jobs > 1:
        tests += ["-n", str(max(1, args.jobs // 2))]
    repeats = ["--repeats", "3", "--warmup", "1"] if args.quick else ["--repeats", "11", "--warmup", "3"]
    bench = [PY, "scripts/bench_rnn.py", "--device", "cuda"]
    headline = ["long_b1_h256", "standard"] if args.quick else args.cases
    settings = [  # (title, dtype arguments, cases)
        ("bfloat16", ["--dtype", "bfloat16"], headline),
        ("float32, TF32 off for both", ["--dtype", "float32"], headline),
        ("float32, TF32 on for both", ["--dtype", "float32", "--tf32", "on"], ["standard"]),
    ]
    speed = [  # one process per (setting, kind, case): a kernel that hangs costs one row
        (title, [*bench, *dtype_args, "--kinds", kind, "--cases", case])
        for title, dtype_args, cases in settings
        for kind in ("lstm", "gru")
        for case in cases
    ]
    started = time.perf_counter()
    parts = ["# rnnkit GPU report\n", environment()]
    print(parts[-1], flush=True)

    def save() -> None:  # keep what is done if a later part dies
        Path(args.out).write_text("\n\n".join(parts) + "\n")

    # Speed first. Triton compiles each kernel variant on the host (5-20 s): compile every case's
    # kernels side by side in one untimed pass, then time the cases one at a time on an idle machine.
    if "speed" not in args.skip:
        compile_by = time.perf_counter() + args.compile_budget
        untimed = [[*cmd, "--repeats", "1", "--warmup", "0"] for _, cmd in speed]

        def compile_case(cmd: list[str]) -> tuple[str, str, float]:
            left = compile_by - time.perf_counter()
            return run_command(cmd, left) if left > 5 else ("", "NOT RUN", 0.0)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            compiled = list(pool.map(compile_case, untimed))
        cut = [
            f"({status}) `{' '.join(cmd[2:])}`"
            for cmd, (_, status, _) in zip(untimed, compiled, strict=True)
            if status != "exit 0"
        ]
        parts.append(
            f"## Compiling the benchmark's kernels (untimed, side by side)\n\n{len(untimed) - len(cut)} of "
            f"{len(untimed)} cases ran once" + "".join(f"\n- not done {c}" for c in cut) + "\n"
        )
        for title in dict.fromkeys(title for title, _ in speed):
            runs = [(cmd, run_command([*cmd, *repeats], args.case_limit)) for t, cmd in speed if t == title]
            parts.append(section(f"Speed against cuDNN: {title}", runs))
            save()
    # Correctness: the sweep's processes and the tests run side by side, each with its own limit.
    jobs = ([] if "tests" in args.skip else [tests]) + ([] if "sweep" in args.skip else sweep)
    deadline = time.perf_counter() + args.budget

    def run_by_deadline(cmd: list[str]) -> tuple[str, str, float]:
        left = deadline - time.perf_counter()
        return run_command(cmd, left) if left > 5 else ("", "NOT RUN: the budget was spent", 0.0)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs // 2) + 1) as pool:
        results = list(pool.map(run_by_deadline, jobs))
    if "tests" not in args.skip:
        parts.append(section("Kernel tests on CUDA", [(tests, results.pop(0))]))
    if "sweep" not in args.skip:
        title = "Correctness on CUDA against torch.nn (quick shapes and the standard one)"
        parts.append(section(title, list(zip(sweep, results, strict=True))))
    parts.append(f"Total wall time: {time.perf_counter() - started:.0f} s")
    save()
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
