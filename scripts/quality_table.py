"""Run the default configs of every task over seeds and print the quality table of the README.

    python scripts/quality_table.py                          # all rows, 5 seeds (hours on 2 cores)
    python scripts/quality_table.py --rows digits --seeds 3  # some rows
    python scripts/quality_table.py --rows ucr_all --write docs/ucr.md  # every UCR/UEA set aeon ships
    python scripts/quality_table.py --rows csv_all --write docs/forecasting-public-table.md
        # the data=csv defaults on the public series of scripts/public_series.py

Each run is ``python train.py <overrides> seed=<s>`` in its own output directory under ``--out``. The
table gives the model's test metric as the median over the seeds with [min, max], next to the
baselines of the same runs (the classical forecasts do not depend on the seed: one value), and the
median wall time per run.
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
FORECAST_BASELINES = {
    "seasonal naive": "baseline",
    "Holt-Winters": "baseline_holt_winters",
    "ETS": "baseline_ets",
}
EVERY_FORECAST_BASELINE = {**FORECAST_BASELINES, "seasonal naive + drift": "baseline_seasonal_naive_drift"}
NAIVE = {"naive": "baseline"}
TEXT_BASELINES = {"unigram": "baseline", "bigram": "baseline_bigram"}
UCR_BASELINES = {
    "majority class": "baseline",
    "1-NN DTW": "baseline_dtw_1nn",
    "MiniRocket": "baseline_minirocket",
}


class Row:
    def __init__(
        self,
        overrides: list[str],
        metric: str,
        target: str,
        baselines: dict[str, str] = NAIVE,
        scale: float = 1.0,
        also: tuple[str, ...] = (),
        shown: str | None = None,
    ) -> None:
        self.overrides = overrides
        self.metric = metric
        self.target = target
        self.baselines = baselines
        self.scale = scale  # 100 shows a fraction as a percentage
        self.also = also  # more metrics shown beside the first (unscaled), with the baselines' values
        self.shown = shown  # the overrides as the table shows them (default: as run)


def ucr(name: str) -> Row:
    return Row(
        ["task=classify", "data=ucr", f"data.name={name}"], "acc", f"{name}: test accuracy", UCR_BASELINES
    )


def ucr_rows() -> dict[str, Row]:
    """A row ``ucr_<Name>`` per classification set of the installed aeon's archive folder (none
    without aeon)."""
    from rnnkit.data.ucr import bundled_sets

    try:
        names = bundled_sets()
    except ImportError:
        return {}
    return {f"ucr_{name}": ucr(name) for name in names}


def csv_rows(folder: str | Path) -> dict[str, Row]:
    """A row ``csv_<name>`` per public series of :mod:`public_series`, read from ``folder`` with the
    ``data=csv`` defaults: MAPE (%) against every classical baseline, and MASE, which series near
    zero (sunspots, lynx) make the fairer yardstick."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from public_series import SERIES

    rows = {}
    for name, series in SERIES.items():
        overrides = series.overrides(Path(folder))
        shown = " ".join(overrides).replace(str(Path(folder).resolve()), "<out>/series")
        rows[f"csv_{name}"] = Row(
            overrides, "mape", series.description, EVERY_FORECAST_BASELINE, 100, also=("mase",), shown=shown
        )
    return rows


ROWS = {
    "airline24": Row(
        [], "mape", "MAPE <= 5% and below every baseline (24 months from 1958-12)", FORECAST_BASELINES, 100
    ),
    "airline12": Row(
        ["data.horizon=12"], "mae", "MAE <= 13.4 (12 months of 1960 from 1959-12)", FORECAST_BASELINES
    ),
    "airline12_lag": Row(
        ["data.horizon=12", "data.seasonal_lag=true"],
        "mae",
        "MAE <= 13.4, with v_(t+1-12) as an input",
        FORECAST_BASELINES,
    ),
    "airline12_seasonal": Row(
        ["data.horizon=12", "data.seasonal_lag=true", "model.residual=seasonal", "model.distribution=null"],
        "mae",
        "MAE <= 13.4, the point head predicting the change over a season",
        FORECAST_BASELINES,
    ),
    "airline12_experiment": Row(
        ["experiment=airline12"],
        "mae",
        "MAE <= 13.4: seasonal lag input and refit (configs/experiment/airline12.yaml)",
        FORECAST_BASELINES,
    ),
    "panel": Row(
        ["data=panel"], "mase", "8 quarterly US macro series, 8 quarters from one origin", FORECAST_BASELINES
    ),
    "digits": Row(["task=classify", "cell=lstm"], "acc", "test accuracy >= 0.97"),
    "adding_lstm": Row(["task=classify", "data=adding", "cell=lstm"], "mse", "LSTM MSE < 0.01 (T=100)"),
    "adding_rnn": Row(
        ["task=classify", "data=adding", "cell=rnn"], "mse", "Elman RNN fails (stays near 0.167)"
    ),
    "addition": Row(["task=seq2seq"], "exact_match", "exact match >= 0.95 on held-out sums"),
    "reber": Row(["task=language", "cell=lstm"], "string_acc", ">= 99% of test strings right at every step"),
    "waveform": Row(["task=generate"], "mse", "MSE under 10% of the constant baseline's"),
    "text": Row(
        ["task=language", "data=text"],
        "bits_per_symbol",
        "bits per character on held-out text below the bigram's",
        TEXT_BASELINES,
    ),
    "gunpoint": ucr("GunPoint"),
    "italypower": ucr("ItalyPowerDemand"),
    "arrowhead": ucr("ArrowHead"),
    "japanesevowels": ucr("JapaneseVowels"),
    # why recurrence: the time-delay network sees only its window (the last 9 steps)
    "adding_tdnn": Row(["task=classify", "data=adding", "cell=tdnn"], "mse", "TDNN cannot reach the markers"),
    "airline24_tdnn": Row(["cell=tdnn"], "mape", "TDNN on the airline series", FORECAST_BASELINES, 100),
}


def spread(values: list[float], scale: float) -> str:
    """``median [min, max]`` (or the one value when every run agrees)."""
    values = [v * scale for v in values]
    digits = 2 if scale != 1 else 4
    if max(values) - min(values) < 10**-digits:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def run_row(name: str, row: Row, seeds: list[int], out: str, extra: list[str]) -> str:
    metrics, times = [], []
    for seed in seeds:
        folder = Path(out) / name / str(seed)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *row.overrides, f"seed={seed}", *QUIET, *extra]
            + [f"hydra.run.dir={folder}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        metrics.append(json.loads((folder / "metrics.json").read_text()))
        print(f"{name} seed {seed}: {row.metric} {metrics[-1][f'test/{row.metric}']:.4f}", file=sys.stderr)
    if not metrics:
        return f"| {name} | {row.target} | failed | | | {statistics.median(times):.0f} s |"
    cells, baselines = [], []
    for metric, scale in ((row.metric, row.scale), *((m, 1.0) for m in row.also)):
        model = [m[f"test/{metric}"] for m in metrics]
        best = None  # the baseline with the lowest median (the metrics here are errors)
        for label, prefix in row.baselines.items():
            values = [m[f"{prefix}/{metric}"] for m in metrics if f"{prefix}/{metric}" in m]
            if values:
                baselines.append(f"{label} {metric} {spread(values, scale)}")
                if best is None or statistics.median(values) < best[1]:
                    best = (label, statistics.median(values))
        verdict = ""
        if row.also and best is not None:  # rows with several metrics say where the model stands
            below = statistics.median(model) <= best[1]
            verdict = f" ({'at or below' if below else 'above'} {best[0]})"
        cells.append(f"{metric} {spread(model, scale)}{verdict}")
    command = row.shown or " ".join(row.overrides) or "(default)"
    return (
        f"| `{command}` | {row.target} | {'; '.join(cells)} | {'; '.join(baselines)} | "
        f"{len(metrics)} | {statistics.median(times):.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    every_ucr_set = ucr_rows()
    every_csv_series = csv_rows("logs/quality/series")  # the names; rebuilt below under --out
    parser.add_argument(
        "--rows",
        nargs="+",
        default=list(ROWS),
        choices=[*ROWS, *every_ucr_set, "ucr_all", *every_csv_series, "csv_all"],
        help="rows to run; ucr_<Name>: one UCR/UEA set aeon ships, ucr_all: every one; csv_<name>: "
        "one public series of scripts/public_series.py with the data=csv defaults, csv_all: every one",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per row")
    parser.add_argument("--out", default="logs/quality")
    parser.add_argument("--write", help="also write the table, with the command that made it, to this file")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    series_folder = Path(args.out) / "series"
    if any(name.startswith("csv_") for name in args.rows):
        from public_series import write_series

        written = write_series(series_folder)
        every_csv_series = {k: v for k, v in csv_rows(series_folder).items() if k[4:] in written}
    known = {**ROWS, **every_ucr_set, **every_csv_series}
    rows = {}
    for name in args.rows:
        if name == "ucr_all":
            rows.update(every_ucr_set)
        elif name == "csv_all":
            rows.update(every_csv_series)
        elif name in known:
            rows[name] = known[name]
    lines = [
        "| run | target | model: median [min, max] | baselines | seeds | wall time per run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        lines.append(run_row(name, row, list(range(args.seeds)), args.out, args.overrides))
        print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.write:
        command = "python scripts/quality_table.py " + " ".join(sys.argv[1:])
        Path(args.write).write_text(
            f"<!-- written by: {command} -->\n\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
