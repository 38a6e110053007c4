"""Train one task in several variants over several seeds; print the median test metric and spread.

    python scripts/variants_table.py --variant forced model.teacher_forcing=1.0 \\
        --variant closed model.teacher_forcing=0.0 --seeds 0 1 2 3 4

Every run is ``python train.py <variant overrides> seed=<s> <common overrides>`` in its own folder
under ``--out``, with the same budget; the table gives the median over seeds with [min, max].
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


def run_variants(
    variants: dict[str, list[str]], seeds: list[int], metric: str, out: str, common: list[str]
) -> list[str]:
    """Run every variant with every seed; return the table's markdown lines."""
    lines = [
        f"| variant | overrides | test {metric}: median [min, max] | runs | wall time per run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, overrides in variants.items():
        values, times = [], []
        for seed in seeds:
            folder = Path(out) / name / str(seed)
            command = [sys.executable, str(ROOT / "train.py"), *overrides, f"seed={seed}", *QUIET, *common]
            start = time.perf_counter()
            proc = subprocess.run(
                [*command, f"hydra.run.dir={folder}"], cwd=ROOT, capture_output=True, text=True
            )
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            values.append(json.loads((folder / "metrics.json").read_text())[f"test/{metric}"])
            print(f"{name} seed {seed}: {metric} {values[-1]:.4f}", flush=True)
        summary = (
            f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]" if values else "failed"
        )
        wall = statistics.median(times)
        lines.append(f"| {name} | `{' '.join(overrides)}` | {summary} | {len(values)} | {wall:.0f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "OVERRIDE"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--metric", default="mae")
    parser.add_argument("--out", default="logs/variants")
    parser.add_argument("--common", nargs="*", default=[], help="overrides for every run")
    args = parser.parse_args()
    variants = {name: overrides for name, *overrides in args.variant}
    print("\n".join(run_variants(variants, args.seeds, args.metric, args.out, args.common)))


if __name__ == "__main__":
    main()
