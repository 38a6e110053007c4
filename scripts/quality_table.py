"""Run the default configs of every task and print the quality table of the README.

    python scripts/quality_table.py                 # all rows (tens of minutes on 2 CPU cores)
    python scripts/quality_table.py --rows digits    # some rows

Each row is ``python train.py <overrides>`` in its own output directory under ``--out``; the table
shows the model's test metric next to the naive baseline's and the wall time of the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.enable_progress_bar=false"]

# name: (overrides, metric, target description)
ROWS = {
    "timeseries": ([], "mae", "test MAE below seasonal naive (last 24 months)"),
    "digits": (["task=classify", "cell=lstm"], "acc", "test accuracy >= 0.97"),
    "adding_lstm": (["task=classify", "data=adding", "cell=lstm"], "mse", "LSTM MSE < 0.01 (T=100)"),
    "adding_rnn": (["task=classify", "data=adding", "cell=rnn"], "mse", "Elman RNN fails (stays near 0.167)"),
    "addition": (["task=seq2seq"], "exact_match", "exact match >= 0.95 on held-out sums"),
    "reber": (["task=language", "cell=lstm"], "string_acc", ">= 99% of test strings right at every step"),
    "waveform": (["task=generate"], "mse", "MSE under 10% of the constant baseline's"),
    # why recurrence: the time-delay network sees only its window (the last 9 steps)
    "adding_tdnn": (["task=classify", "data=adding", "cell=tdnn"], "mse", "TDNN cannot reach the markers"),
    "timeseries_tdnn": (["cell=tdnn"], "mae", "TDNN on the airline series"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", default="logs/quality")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    lines = ["| run | target | model | baseline | wall time |", "| --- | --- | --- | --- | --- |"]
    for name in args.rows:
        overrides, metric, target = ROWS[name]
        out = Path(args.out) / name
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *overrides,
                *QUIET,
                *args.overrides,
                f"hydra.run.dir={out}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            lines.append(f"| {name} | {target} | failed | | {elapsed:.0f} s |")
            continue
        metrics = json.loads((out / "metrics.json").read_text())
        model, baseline = metrics.get(f"test/{metric}"), metrics.get(f"baseline/{metric}")
        lines.append(
            f"| `{' '.join(overrides) or '(default)'}` | {target} | {metric} {model:.4f} | "
            f"{baseline:.4f} | {elapsed:.0f} s |"
        )
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
