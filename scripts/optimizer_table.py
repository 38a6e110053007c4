"""Train one task with several optimizers over several seeds; print the median test metric and spread.

    python scripts/optimizer_table.py                                   # airline, 4 optimizers, 5 seeds
    python scripts/optimizer_table.py --optimizers sgd trend --seeds 0 1 2 -- task=classify data=adding

Every run is ``python train.py optimizer=<name> seed=<s> <overrides>`` with the same budget (the
task's epochs); learning rates are each optimizer group's defaults (``configs/optimizer/``) unless an
override sets ``model.optimizer.lr``. The table gives the median over seeds with [min, max].
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.enable_progress_bar=false"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "trend", "rprop", "adam"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--metric", default="mae", help="the test metric to report (test/<metric>)")
    parser.add_argument("--out", default="logs/optimizers")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. task=classify")
    args = parser.parse_args()
    lines = [
        f"| optimizer | lr | test {args.metric}: median [min, max] over {len(args.seeds)} seeds "
        "| wall time per run |",
        "| --- | --- | --- | --- |",
    ]
    for name in args.optimizers:
        values, times, lr = [], [], None
        for seed in args.seeds:
            out = Path(args.out) / name / str(seed)
            start = time.perf_counter()
            command = [sys.executable, str(ROOT / "train.py"), f"optimizer={name}", f"seed={seed}"]
            proc = subprocess.run(
                [*command, *QUIET, *args.overrides, f"hydra.run.dir={out}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            values.append(json.loads((out / "metrics.json").read_text())[f"test/{args.metric}"])
            config = (out / ".hydra" / "config.yaml").read_text()
            lr = next(
                (
                    line.split(":")[1].strip()
                    for line in config.splitlines()
                    if line.strip().startswith("lr:")
                ),
                lr,
            )
            print(f"{name} seed {seed}: {args.metric} {values[-1]:.4f}", flush=True)
        if not values:
            lines.append(f"| {name} | {lr} | failed | |")
            continue
        lines.append(
            f"| {name} | {lr} | {statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}] "
            f"({len(values)} runs) | {statistics.median(times):.0f} s |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
