"""Where one eval forward of an rnnkit LSTM goes, beside torch.nn's (issue 32): the whole layer, its
first layer's C++ time loop alone and its first input projection alone, timed interleaved in one
process (median of the repeats after warm-up, milliseconds).

    python scripts/time_lstm_parts.py                       # T24 B32 I64 H64, 2 layers
    python scripts/time_lstm_parts.py --case 12 32 128 128 2

The layer's time less its loops and projections (one each per layer) is what Python and the
allocations around them cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnkit.nn as rnn
from rnnkit.kernels.native import cpp_loop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--case", nargs=5, type=int, default=[24, 32, 64, 64, 2], metavar=("T", "B", "I", "H", "L")
    )
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    steps, batch, inputs, hidden, layers = args.case
    ops = cpp_loop.ops()
    if ops is None:
        raise SystemExit("the C++ loop could not be built here (see the warning): nothing to time")
    torch.manual_seed(0)
    x = torch.randn(steps, batch, inputs)
    theirs = torch.nn.LSTM(inputs, hidden, layers).eval()
    ours = rnn.LSTM(inputs, hidden, layers, backend="native").eval()
    ours.load_state_dict(theirs.state_dict())
    bias = (ours.bias_ih_l0 + ours.bias_hh_l0).detach()  # added in the loop
    xp = torch.matmul(x, ours.weight_ih_l0.detach().t())  # (T, B, 4H)
    h0 = torch.zeros(batch, hidden)
    none, no_lengths = torch.empty(0), torch.empty(0, dtype=torch.long)
    weight_hh = ours.weight_hh_l0.detach()
    parts = {
        "torch.nn layer": lambda: theirs(x),
        "rnnkit layer": lambda: ours(x),
        "rnnkit loop (layer 0)": lambda: ops.lstm_forward(
            xp, h0, h0, weight_hh, bias, no_lengths, none, none, False
        ),
        "rnnkit projection (layer 0)": lambda: torch.matmul(x, ours.weight_ih_l0.t()),
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in parts.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    skip = args.repeats // 10  # warm-up
    print(
        f"# T{steps} B{batch} I{inputs} H{hidden} L{layers}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values[skip:]) * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
