"""Rolling-origin evaluation (expanding window) behind ``backtest.py``.

Origin i of N is the test origin of ``train.py`` moved back by (N-1-i) * ``step`` steps: the data of
each run are the series cut there (``data.cutoff``), so every run trains on all the history before its
own validation period and forecasts the horizon after its origin, as a forecaster backtests. The model
and the classical baselines are scored on the same origins; the table gives each origin and the mean.
Methods with intervals (the model with ``model.distribution``, ETS with ``data.baseline_samples``) get
a second table: their 80% and 95% coverage and CRPS per origin and the mean, so the calibration of
the intervals is judged over every origin's horizon rather than one.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import statistics
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnkit.training.checkpoint import atomic_write_text
from rnnkit.training.run import train

log = logging.getLogger(__name__)

METRICS = ("mae", "mape", "mase")
INTERVAL_METRICS = ("coverage80", "coverage95", "crps")


def _methods(metrics: dict) -> dict[str, str]:
    """Display name -> metric prefix, the model first, then the baselines in the run's order."""
    methods = {"model": "test/"}
    for key in metrics:
        if key.startswith("baseline") and key.endswith("/mae"):
            prefix = key[: -len("mae")]
            name = prefix.strip("/").removeprefix("baseline").lstrip("_") or "seasonal_naive"
            methods[name] = prefix
    return methods


def backtest(cfg: DictConfig) -> list[dict]:
    """Train and test once per origin; write ``backtest.csv``, ``backtest.md``, ``backtest.png`` and
    ``metrics.json`` (the means) into the output directory. Returns one row per origin."""
    if cfg.data.get("evaluation", "origin") != "origin":
        raise ValueError("backtest.py forecasts from origins: set data.evaluation=origin")
    origins = cfg.get("origins", 4)
    if not isinstance(origins, int) or origins < 1:
        raise ValueError(f"origins must be a positive integer, got {origins!r}")
    step = cfg.get("step") or cfg.data.horizon
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    out = Path(cfg.paths.output_dir)
    base_cutoff = cfg.data.get("cutoff", 0) or 0
    rows: list[dict] = []
    for i in range(origins):
        back = (origins - 1 - i) * step
        run_cfg = copy.deepcopy(cfg)  # unresolved: ${paths.output_dir} follows the override below
        OmegaConf.set_struct(run_cfg, False)
        run_cfg.data.cutoff = base_cutoff + back
        run_cfg.paths.output_dir = str(out / f"origin_{i}")
        for key in ("origins", "step"):
            run_cfg.pop(key, None)
        log.info("backtest origin %d/%d: the last %d steps cut", i + 1, origins, base_cutoff + back)
        metrics = train(run_cfg)
        row = {"origin": ", ".join(metrics.get("test/origins", [])) or f"-{back}"}
        for name, prefix in _methods(metrics).items():
            for metric in METRICS:
                row[f"{name}_{metric}"] = metrics.get(f"{prefix}{metric}")
            for metric in INTERVAL_METRICS:  # only for methods with sample paths
                if f"{prefix}{metric}" in metrics:
                    row[f"{name}_{metric}"] = metrics[f"{prefix}{metric}"]
        rows.append(row)
    mean = {"origin": "mean"}
    for key in rows[0]:
        if key != "origin":
            mean[key] = statistics.fmean(r[key] for r in rows if r.get(key) is not None)
    table = [*rows, mean]
    _write(out, table)
    return rows


def _write(out: Path, table: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(table[0])
    with (out / "backtest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    methods = [k[: -len("_mape")] for k in keys if k.endswith("_mape")]
    lines = [
        "| origin | " + " | ".join(f"{m} MAE / MAPE / MASE" for m in methods) + " |",
        "| --- |" + " --- |" * len(methods),
    ]
    for row in table:
        cells = [
            f"{row[f'{m}_mae']:.2f} / {100 * row[f'{m}_mape']:.1f}% / {row[f'{m}_mase']:.2f}" for m in methods
        ]
        lines.append(f"| {row['origin']} | " + " | ".join(cells) + " |")
    sampled = [m for m in methods if f"{m}_crps" in keys]
    if sampled:
        lines += [
            "",
            "| origin | " + " | ".join(f"{m} coverage 80% / 95% / CRPS" for m in sampled) + " |",
            "| --- |" + " --- |" * len(sampled),
        ]
        for row in table:
            cells = [
                f"{row[f'{m}_coverage80']:.2f} / {row[f'{m}_coverage95']:.2f} / {row[f'{m}_crps']:.2f}"
                for m in sampled
            ]
            lines.append(f"| {row['origin']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "backtest.md", text)
    atomic_write_text(out / "metrics.json", json.dumps(table[-1], indent=2) + "\n")
    print(text, flush=True)
    _plot(out / "backtest.png", table[:-1], methods)


def _plot(path: Path, rows: list[dict], methods: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    positions = list(range(len(rows)))
    for k, method in enumerate(methods):
        values = [100 * r[f"{method}_mape"] for r in rows]
        style = {"lw": 2.2, "color": "C3"} if method == "model" else {"lw": 1.2, "ls": "--", "color": f"C{k}"}
        ax.plot(positions, values, marker="o", label=method, **style)
    ax.set_xticks(positions, [r["origin"] for r in rows])
    ax.set_xlabel("forecast origin")
    ax.set_ylabel("MAPE over the horizon (%)")
    ax.set_title("Rolling-origin backtest")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
