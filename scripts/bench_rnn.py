"""Time rnnkit's recurrent layers against torch.nn's (oneDNN on CPU, cuDNN on CUDA) in one run.

Each case builds a torch.nn layer and one rnnkit twin per backend with the same weights, then
alternates them (A, B, C, A, B, C, ...) so that machine-wide speed swings hit all alike, and reports
the median of the repeats after warm-up and the ratio rnnkit / torch.nn (below 1.0: rnnkit is faster):
the median over repeats of rnnkit's time over torch.nn's in the same round, which a slow spell of a
shared machine moves less than a ratio of medians. With ``--processes N`` the whole run is repeated
in N fresh processes and each row gives the median of their ratios and its range: where the buffers
land in memory differs from one process to the next and moves a small case's ratio by up to 20% on a
2-core VM, which interleaving within one process cannot cancel.

    python scripts/bench_rnn.py                             # CPU cases, reference and native backends
    python scripts/bench_rnn.py --device cuda               # standard + long-sequence cases, adds triton
    python scripts/bench_rnn.py --device cuda --dtype bfloat16 --kinds lstm
    python scripts/bench_rnn.py --kinds lstm --cases standard --backends cpu --repeats 51
    python scripts/bench_rnn.py --recurrent-dropout 0.25 --modes fwd+bwd   # rnnkit with variational
        # recurrent dropout in training against plain torch.nn (which has none): the option's cost
    python scripts/bench_rnn.py --zoneout 0.1 --modes fwd+bwd              # the same for zoneout
    python scripts/bench_rnn.py --kinds lstm --cases tiny_h64 --backends native --processes 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import rnnkit.nn as rnn
from rnnkit.kernels import BACKENDS


@dataclass(frozen=True)
class Case:
    name: str
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False


CASES = {
    "standard": Case("T100 B64 I512 H512", 100, 64, 512, 512),
    "small": Case("T200 B8 I32 H64", 200, 8, 32, 64),
    "deep_bi": Case("T50 B32 I128 H256 L2 bi", 50, 32, 128, 256, 2, True),
    "deep": Case("T50 B32 I128 H256 L2", 50, 32, 128, 256, 2),
    # the small 2-layer models of forecasting programs: bound by per-call overhead, not arithmetic
    "tiny_h64": Case("T24 B32 I64 H64 L2", 24, 32, 64, 64, 2),
    "tiny_h128": Case("T12 B32 I128 H128 L2", 12, 32, 128, 128, 2),
}
# small batches, long sequences: where a fused recurrence can beat cuDNN on a GPU
for _b in (1, 4, 16):
    for _h in (128, 256, 512, 768):
        CASES[f"long_b{_b}_h{_h}"] = Case(f"T1024 B{_b} I{_h} H{_h}", 1024, _b, _h, _h)
CASES["deep_bi_512"] = Case("T100 B64 I512 H512 L2 bi", 100, 64, 512, 512, 2, True)
DEFAULT_CASES = {
    "cpu": ["standard", "small", "deep_bi", "deep", "tiny_h64", "tiny_h128"],
    "cuda": ["standard"] + [k for k in CASES if k.startswith("long")] + ["deep_bi_512"],
}
FUSED = [b for b in BACKENDS if b != "auto"]
PYTHON_LOOP = "native-python"  # the native backend with its C++ loop turned off (the fallback)
CHOICES = [*FUSED, PYTHON_LOOP]
KINDS = {"lstm": (rnn.LSTM, torch.nn.LSTM), "gru": (rnn.GRU, torch.nn.GRU), "rnn": (rnn.RNN, torch.nn.RNN)}


MODES = {
    "fwd": "forward in eval mode without gradients",
    "fwd+bwd": "forward and backward in training mode, the input without gradient (raw data)",
    "fwd+bwd+dx": "the same with the input's gradient (as after an embedding or another layer)",
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    layer: torch.nn.Module, x: torch.Tensor, mode: str, python_loop: bool = False
) -> Callable[[], None]:
    source = x.detach().requires_grad_(mode == "fwd+bwd+dx")  # dx: the input needs its gradient too

    def forward_backward() -> None:
        if mode == "fwd":
            with torch.no_grad():
                layer(x)
        else:
            source.grad = None
            out, _ = layer(source)
            out.sum().backward()

    if not python_loop:
        return forward_backward

    def with_python_loop() -> None:
        os.environ["RNNKIT_CPP_LOOP"] = "0"
        try:
            forward_backward()
        finally:
            del os.environ["RNNKIT_CPP_LOOP"]

    return with_python_loop


def time_interleaved(
    fns: list[Callable[[], None]], device: torch.device, warmup: int, repeats: int
) -> list[list[float]]:
    """Seconds of each function at each repeat, the functions alternated (A, B, A, B, ...)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[k].append(time.perf_counter() - start)
    return samples


def time_pair(fns: list[Callable[[], None]], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Median seconds of each function, interleaved."""
    return [statistics.median(s) for s in time_interleaved(fns, device, warmup, repeats)]


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median over repeats of ours / theirs timed back to back: a slow spell of a shared machine
    (two-core VMs swing by 30-50% for seconds) then cancels within each pair."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--cases", nargs="+", default=None, choices=list(CASES), help="default: per device")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=CHOICES,
        help="default: reference, native and native-python (the native backend's Python loop, the "
        "fallback of its C++ loop) on the CPU; triton-persistent, triton-graphed and triton-stepwise on CUDA",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(MODES),
        choices=list(MODES),
        help="; ".join(f"{k}: {v}" for k, v in MODES.items()),
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--recurrent-dropout",
        type=float,
        default=0.0,
        help="rnnkit layers get this recurrent_dropout (active in fwd+bwd, which trains); torch.nn has none",
    )
    parser.add_argument(
        "--zoneout",
        type=float,
        default=0.0,
        help="rnnkit layers get this zoneout (masks in fwd+bwd, its expectation in fwd); torch.nn has none",
    )
    parser.add_argument(
        "--tf32",
        choices=["off", "on"],
        default="off",
        help="fp32 on CUDA: TF32 off for cuDNN and rnnkit alike (exact fp32), or on for both",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="repeat the run in this many fresh processes; each row: the median of their ratios (range)",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one process's rows
    args = parser.parse_args()
    if args.processes > 1:
        across_processes(args.processes)
        return
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cases = args.cases or DEFAULT_CASES["cuda" if device.type == "cuda" else "cpu"]
    backends = args.backends or (
        ["triton-persistent", "triton-graphed", "triton-stepwise"]
        if device.type == "cuda"
        else ["reference", "native", PYTHON_LOOP]
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, device {device}, dtype {args.dtype}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats} after {args.warmup} warm-up, "
        f"rnnkit recurrent_dropout {args.recurrent_dropout}, zoneout {args.zoneout}, "
        f"TF32 {args.tf32} (torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32})"
    )
    if not args.json:
        print_header()
    for kind in args.kinds:
        ours_cls, torch_cls = KINDS[kind]
        kind_backends = [b for b in backends if kind != "rnn" or b == "reference"]  # no fused Elman RNN
        for case_key in cases:
            case = CASES[case_key]
            kw = {"num_layers": case.num_layers, "bidirectional": case.bidirectional}
            reference = torch_cls(case.input_size, case.hidden_size, **kw).to(device, dtype)
            ours = []
            for backend in kind_backends:
                layer = ours_cls(
                    case.input_size,
                    case.hidden_size,
                    backend="native" if backend == PYTHON_LOOP else backend,
                    recurrent_dropout=args.recurrent_dropout,
                    zoneout=args.zoneout,
                    **kw,
                ).to(device, dtype)
                layer.load_state_dict(reference.state_dict())
                ours.append(layer)
            x = torch.randn(case.steps, case.batch, case.input_size, device=device, dtype=dtype)
            for mode in args.modes:
                layers = [reference, *ours]
                for layer in layers:
                    layer.train(mode != "fwd")
                python_loop = [False] + [b == PYTHON_LOOP for b in kind_backends]
                steps = [make_step(layer, x, mode, p) for layer, p in zip(layers, python_loop, strict=True)]
                samples = time_interleaved(steps, device, args.warmup, args.repeats)
                t_torch = statistics.median(samples[0])
                for backend, ours_samples in zip(kind_backends, samples[1:], strict=True):
                    row = [
                        kind,
                        case.name,
                        mode,
                        backend,
                        t_torch * 1e3,
                        statistics.median(ours_samples) * 1e3,
                    ]
                    ratio = paired_ratio(ours_samples, samples[0])
                    if args.json:
                        print(json.dumps([*row, ratio]), flush=True)
                    else:
                        print_row(row, f"{ratio:5.2f}")


def print_header(ratio_width: int = 5) -> None:
    header = (
        f"| {'kind':5} | {'case':24} | {'mode':10} | {'backend':10} "
        f"| {'torch.nn ms':>11} | {'rnnkit ms':>9} | {'ratio':>{ratio_width}} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")


def print_row(row: list, ratio: str) -> None:
    kind, case, mode, backend, t_torch, t_ours = row
    print(
        f"| {kind:5} | {case:24} | {mode:10} | {backend:10} | {t_torch:11.2f} | {t_ours:9.2f} | {ratio} |",
        flush=True,
    )


def across_processes(processes: int) -> None:
    """Run this script with the same arguments in ``processes`` fresh processes, one after another,
    and print each row's median over them (times: medians; ratio: median and range)."""
    argv, skip = [], False
    for arg in sys.argv[1:]:  # the same arguments less --processes N (or --processes=N)
        if skip or arg.startswith("--processes="):
            skip = False
        elif arg == "--processes":
            skip = True
        else:
            argv.append(arg)
    runs: list[list[list]] = []
    for k in range(processes):
        done = subprocess.run(
            [sys.executable, __file__, *argv, "--json"], check=True, capture_output=True, text=True
        )
        if k == 0:
            print(done.stdout.splitlines()[0].replace("# ", f"# {processes} processes, each: ", 1))
        runs.append([json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")])
    print_header(ratio_width=16)
    for rows in zip(*runs, strict=True):
        ratios = [r[6] for r in rows]
        times = [statistics.median(r[k] for r in rows) for k in (4, 5)]
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        print_row([*rows[0][:4], *times], f"{ratio:>16}")


if __name__ == "__main__":
    main()
