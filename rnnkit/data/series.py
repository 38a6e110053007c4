"""Series sources for next-step forecasting: the bundled airline data and offline generators.

Every source returns a list of :class:`Series` (one per independent sequence), all seeded.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np


@dataclass
class Series:
    """One sequence: values ``(N, O)``, known covariates ``(N, C)``, static features ``(P,)``."""

    values: np.ndarray
    covariates: np.ndarray
    static: np.ndarray
    start: int = 0  # calendar index of step 0 (months since Jan of year 0, for monthly data)
    name: str = ""
    dates: list[str] | None = None  # a label per step (the file's dates), for reports and errors

    def date(self, step: int) -> str:
        """The label of a step: its date where the source has dates, else its index."""
        if self.dates is not None and 0 <= step < len(self.dates):
            return self.dates[step]
        return str(step)


def airline_passengers() -> np.ndarray:
    """Box & Jenkins series G: monthly international airline passengers (thousands), Jan 1949 - Dec 1960."""
    path = resources.files("rnnkit.data") / "assets" / "airline_passengers.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 144 or "passengers" not in rows[0]:
        raise ValueError(f"{path}: expected 144 rows with a 'passengers' column, got {len(rows)} rows")
    return np.array([float(r["passengers"]) for r in rows])


def month_covariates(start: int, n: int) -> np.ndarray:
    """Month of year as (sin, cos) on the unit circle, ``(n, 2)``: a covariate known in advance."""
    month = (start + np.arange(n)) % 12
    angle = 2 * math.pi * month / 12
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)


def airline(seed: int = 0) -> list[Series]:
    values = airline_passengers()[:, None]
    start = 1949 * 12
    dates = [f"{(start + k) // 12}-{(start + k) % 12 + 1:02d}" for k in range(len(values))]
    return [Series(values, month_covariates(start, len(values)), np.zeros(0), start, "airline", dates)]


def sine_mixture(
    length: int = 400, num_series: int = 16, components: int = 2, noise: float = 0.05, seed: int = 0
) -> list[Series]:
    """Sums of sines with random frequencies (0.02-0.1 cycles/step), amplitudes and phases, plus
    noise. The frequencies are the static features: constant over the sequence, known to the model."""
    rng = np.random.default_rng(seed)
    out = []
    t = np.arange(length)
    for _ in range(num_series):
        freqs = rng.uniform(0.02, 0.1, components)
        amps = rng.uniform(0.5, 1.5, components)
        phases = rng.uniform(0, 2 * math.pi, components)
        v = (amps[:, None] * np.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        v = v + noise * rng.standard_normal(length)
        out.append(Series(v[:, None], np.zeros((length, 0)), np.sort(freqs) * 10, name=f"sine{len(out)}"))
    return out


def mackey_glass(
    length: int = 1500, tau: int = 17, beta: float = 0.2, gamma: float = 0.1, n: int = 10, seed: int = 0
) -> list[Series]:
    """The Mackey-Glass delay equation dx/dt = beta x(t-tau) / (1 + x(t-tau)^n) - gamma x(t),
    integrated with 10 Euler sub-steps per unit time, sampled every unit, after a 300-step burn-in."""
    rng = np.random.default_rng(seed)
    sub = 10
    dt = 1.0 / sub
    lag = tau * sub
    total = (length + 300) * sub
    x = np.empty(total + lag)
    x[: lag + 1] = 1.2 + 0.1 * rng.standard_normal(lag + 1)
    for k in range(lag, total + lag - 1):
        delayed = x[k - lag]
        x[k + 1] = x[k] + dt * (beta * delayed / (1 + delayed**n) - gamma * x[k])
    values = x[lag::sub][300 : 300 + length]
    return [Series(values[:, None], np.zeros((length, 0)), np.zeros(0), name="mackey_glass")]


def radar_tracks(length: int = 200, num_series: int = 32, noise: float = 0.05, seed: int = 0) -> list[Series]:
    """2-D radar points of manoeuvring targets: constant speed, heading turning at a rate that
    changes every 20-60 steps; observations are positions plus Gaussian noise (``(N, 2)``)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_series):
        speed = rng.uniform(0.5, 1.5)
        heading = rng.uniform(0, 2 * math.pi)
        pos = rng.uniform(-10, 10, 2)
        points = np.empty((length, 2))
        turn = 0.0
        next_change = 0
        for t in range(length):
            if t == next_change:
                turn = rng.choice([0.0, rng.uniform(-0.15, 0.15)])
                next_change = t + int(rng.integers(20, 60))
            heading += turn
            pos = pos + speed * np.array([math.cos(heading), math.sin(heading)])
            points[t] = pos
        observed = points + noise * speed * rng.standard_normal((length, 2)) * 4
        out.append(Series(observed, np.zeros((length, 0)), np.zeros(0), name=f"track{len(out)}"))
    return out


def csv_file(path: str, columns: list[str] | None = None, seed: int = 0) -> list[Series]:
    """Your own series from a CSV file with a header row: ``columns`` (default: every column but the
    first) become the values ``(N, O)``. Missing files, columns and non-numbers are reported by name."""
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.source_kwargs.path: no CSV file at {file}")
    with file.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if not header:
            raise ValueError(f"{file}: empty file or no header row")
        wanted = list(columns) if columns else header[1:]
        missing = [c for c in wanted if c not in header]
        if missing or not wanted:
            raise ValueError(f"{file}: columns {missing or wanted} not found; the header has {header}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append([float(row[c]) for c in wanted])
            except (TypeError, ValueError):
                bad = {c: row[c] for c in wanted}
                raise ValueError(f"{file}, line {line}: expected numbers in {wanted}, got {bad}") from None
    if len(rows) < 3:
        raise ValueError(f"{file}: expected at least 3 data rows, got {len(rows)}")
    values = np.array(rows)
    return [Series(values, np.zeros((len(values), 0)), np.zeros(0), name=file.stem)]


SOURCES = {
    "airline": airline,
    "sine": sine_mixture,
    "mackey_glass": mackey_glass,
    "radar": radar_tracks,
    "csv": csv_file,
}
SEASONS = {"airline": 12}
