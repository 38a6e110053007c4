"""Time cells without a hand-written kernel on the ``compiled`` backend against their reference loop
and against the built-in LSTM's fastest backend, in one run (CPU).

For each case it builds torch.nn.LSTM, rnnkit's LSTM on its ``native`` and ``reference`` backends,
and each cell (the README's MGU, ``layernorm_lstm`` ...) on the ``reference`` and ``compiled``
backends; the first call of each compiled layer (the compile, or a load from inductor's disk cache)
is timed apart, then every layer runs interleaved (A, B, C, A, B, C, ...) and the table reports the
median after warm-up with two ratios:

- ``/ LSTM best``: the cell's time over the built-in LSTM's fastest rnnkit backend at the same size
  (issue 11's target for the compiled path: <= 1.3),
- ``speed-up``: the cell's reference loop over its compiled path (target: >= 2).

    python scripts/bench_cells.py                                   # both cases, fwd+bwd
    python scripts/bench_cells.py --cases small --modes fwd fwd+bwd --repeats 21
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_rnn import CASES, make_step, time_pair

import rnnkit.nn as rnn
from rnnkit.cells.examples import MinimalGatedUnit
from rnnkit.kernels.compiled.cell import CHUNK_STEPS, step_compiler

CELLS = {
    "mgu": MinimalGatedUnit,
    "layernorm_lstm": "layernorm_lstm",
    "layernorm_gru": "layernorm_gru",
    "peephole_lstm": "peephole_lstm",
    "gru": "gru",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=["small", "standard"], choices=list(CASES))
    parser.add_argument("--cells", nargs="+", default=["mgu", "layernorm_lstm"], choices=list(CELLS))
    parser.add_argument("--modes", nargs="+", default=["fwd+bwd"], choices=["fwd", "fwd+bwd"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    print(
        f"# torch {torch.__version__}, cpu, float32, threads {torch.get_num_threads()}, median of "
        f"{args.repeats} after {args.warmup} warm-up; compiled path: {step_compiler()}, "
        f"{CHUNK_STEPS} steps per call"
    )
    header = (
        f"| {'case':22} | {'mode':7} | {'layer':26} | {'ms':>8} | {'/ LSTM best':>11} "
        f"| {'speed-up':>8} | {'1st call s':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for case_key in args.cases:
        case = CASES[case_key]
        size = (case.input_size, case.hidden_size, case.num_layers, case.bidirectional)
        layers: dict[str, torch.nn.Module] = {
            "torch.nn.LSTM": torch.nn.LSTM(*size),
            "LSTM native": rnn.LSTM(*size, backend="native"),
            "LSTM reference": rnn.LSTM(*size, backend="reference"),
        }
        for name in args.cells:
            for backend in ("reference", "compiled"):
                layers[f"{name} {backend}"] = rnn.Recurrent(CELLS[name], *size, backend=backend)
        x = torch.randn(case.steps, case.batch, case.input_size)
        for mode in args.modes:
            first_call: dict[str, float] = {}
            for label, layer in layers.items():
                layer.train(mode != "fwd")
                if label.endswith("compiled"):
                    start = time.perf_counter()
                    make_step(layer, x, mode)()
                    first_call[label] = time.perf_counter() - start
            times = dict(
                zip(
                    layers,
                    time_pair(
                        [make_step(layer, x, mode) for layer in layers.values()],
                        x.device,
                        args.warmup,
                        args.repeats,
                    ),
                    strict=True,
                )
            )
            best_lstm = min(times["LSTM native"], times["LSTM reference"])
            for label, seconds in times.items():
                cell = label.rsplit(" ", 1)[0]
                speedup = (
                    f"{times[f'{cell} reference'] / seconds:8.2f}" if label.endswith("compiled") else " " * 8
                )
                compile_s = f"{first_call[label]:10.1f}" if label in first_call else " " * 10
                print(
                    f"| {case.name:22} | {mode:7} | {label:26} | {seconds * 1e3:8.2f} "
                    f"| {seconds / best_lstm:11.2f} | {speedup} | {compile_s} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
