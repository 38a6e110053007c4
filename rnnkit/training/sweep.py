"""The summary of a sweep (``python train.py -m ...``): one table of the runs' overrides and test
metrics, best first, written to ``<sweep dir>/summary.csv`` and printed when the sweep ends."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnkit.training.tables import text_table

log = logging.getLogger(__name__)


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per finished run of the sweep: ``run`` (its folder), its overrides, its metrics."""
    rows = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: _run_order(p.parent.name)):
        run = metrics_file.parent
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        metrics = json.loads(metrics_file.read_text())
        row: dict[str, Any] = {"run": run.name}
        for override in overrides or []:
            key, _, value = str(override).partition("=")
            if not key.startswith(("hydra.", "+hydra.")):
                row[key.lstrip("+~")] = value
        row.update(
            {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
        rows.append(row)
    return rows


def _run_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def rank(rows: list[dict[str, Any]], metric: str | None, maximize: bool = False) -> list[dict[str, Any]]:
    """Rows best first by ``metric`` (its ``_best`` value where the run has one); runs without it last."""
    if not metric:
        return rows

    def score(row: dict[str, Any]) -> float | None:
        value = row.get(f"{metric}_best", row.get(metric))
        return float(value) if isinstance(value, int | float) else None

    scored = [r for r in rows if score(r) is not None]
    unscored = [r for r in rows if score(r) is None]
    return sorted(scored, key=lambda r: score(r), reverse=maximize) + unscored  # type: ignore[arg-type,return-value]


def summary_columns(rows: list[dict[str, Any]], metric: str | None) -> list[str]:
    """``run``, the overrides, the optimized metric, then the test metrics (model first)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    overrides = [k for k in keys if k != "run" and "/" not in k and k not in ("refit_epochs",)]
    optimized = [k for k in (f"{metric}_best", metric) if metric and k in keys][:1]
    tests = [k for k in keys if k.startswith("test/")]
    baselines = [k for k in keys if k.startswith("baseline") and "/" in k]
    return ["run", *overrides, *optimized, *tests, *baselines]


def write_summary(sweep_dir: Path, metric: str | None, maximize: bool = False) -> str:
    """Write ``summary.csv`` (every numeric metric) into ``sweep_dir``; return the printed table (the
    overrides, the optimized metric and the test metrics of the model)."""
    rows = rank(sweep_rows(sweep_dir), metric, maximize)
    if not rows:
        return ""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    (sweep_dir / "summary.csv").write_text(buffer.getvalue())
    shown = [c for c in summary_columns(rows, metric) if not c.startswith("baseline")][:12]
    return text_table(shown, [[row.get(c) for c in shown] for row in rows])


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, ``summary.csv`` and its table, best first by the
    config's ``optimized_metric`` (maximized when the Optuna sweeper's direction says so)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        metric = config.get("optimized_metric")
        direction = str(config.hydra.sweeper.get("direction", "minimize"))
        table = write_summary(sweep_dir, metric, maximize=direction == "maximize")
        if table:
            log.info("sweep summary, best %s first (%s):\n%s", metric, sweep_dir / "summary.csv", table)
