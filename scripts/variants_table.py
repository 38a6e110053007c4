"""Train one task in several variants over several seeds; print the median test metrics and spread.

    python scripts/variants_table.py --variant forced model.teacher_forcing=1.0 \\
        --variant closed model.teacher_forcing=0.0 --seeds 0 1 2 3 4
    python scripts/variants_table.py --script backtest.py --variant airline origins=4 step=12 \\
        --metric model_mape model_coverage80 model_coverage95 ets_coverage80

Every run is ``python <script> <variant overrides> seed=<s> <common overrides>`` in its own folder
under ``--out``, with the same budget; the table gives the median over seeds with [min, max] for
each ``--metric``, read from the run's ``metrics.json`` (``test/<metric>`` for ``train.py``; a
backtest's means, e.g. ``model_mape``, for ``backtest.py``).
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
    variants: dict[str, list[str]],
    seeds: list[int],
    metrics: list[str],
    out: str,
    common: list[str],
    script: str = "train.py",
) -> list[str]:
    """Run every variant with every seed; return the table's markdown lines."""
    lines = [
        "| variant | overrides | "
        + " | ".join(f"{metric}: median [min, max]" for metric in metrics)
        + " | runs | wall time per run |",
        "| --- | --- |" + " --- |" * len(metrics) + " --- | --- |",
    ]
    for name, overrides in variants.items():
        values: dict[str, list[float]] = {metric: [] for metric in metrics}
        times, runs = [], 0
        for seed in seeds:
            folder = Path(out) / name / str(seed)
            command = [sys.executable, str(ROOT / script), *overrides, f"seed={seed}", *QUIET, *common]
            start = time.perf_counter()
            proc = subprocess.run(
                [*command, f"hydra.run.dir={folder}"], cwd=ROOT, capture_output=True, text=True
            )
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            found = json.loads((folder / "metrics.json").read_text())
            runs += 1
            for metric in metrics:
                value = found.get(f"test/{metric}", found.get(metric))
                if value is None:
                    where = folder / "metrics.json"
                    raise KeyError(f"--metric {metric}: not in {where} (keys: {sorted(found)})")
                values[metric].append(value)
            report = ", ".join(f"{m} {values[m][-1]:.4f}" for m in metrics)
            print(f"{name} seed {seed}: {report}", flush=True)
        summaries = " | ".join(
            f"{statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]" if v else "failed"
            for v in values.values()
        )
        wall = statistics.median(times)
        lines.append(f"| {name} | `{' '.join(overrides)}` | {summaries} | {runs} | {wall:.0f} s |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "OVERRIDE"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--metric", nargs="+", default=["mae"], help="metrics.json keys (test/ implied)")
    parser.add_argument("--script", default="train.py", choices=["train.py", "backtest.py"])
    parser.add_argument("--out", default="logs/variants")
    parser.add_argument("--common", nargs="*", default=[], help="overrides for every run")
    args = parser.parse_args()
    variants = {name: overrides for name, *overrides in args.variant}
    lines = run_variants(variants, args.seeds, args.metric, args.out, args.common, args.script)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
