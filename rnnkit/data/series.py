"""Series sources for next-step forecasting: the bundled airline data and offline generators.

Every source returns a list of :class:`Series` (one per independent sequence), all seeded.
"""

from __future__ import annotations

import csv
import math
import warnings
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


TIME_COLUMNS = {"date", "time", "ds", "t", "timestamp", "datetime", "index", "step", "month", "period"}


def value_columns(header: list[str], first_row: dict[str, str]) -> list[str]:
    """The columns to forecast when none are named: every column but a leading time column (one
    named like ``date``/``ds``/``t``, or holding something that is not a number, such as a date)."""
    if not header:
        return []
    first = header[0]
    try:
        float(first_row.get(first, ""))
        numeric = True
    except (TypeError, ValueError):
        numeric = False
    is_time = first.strip().lower() in TIME_COLUMNS or not numeric
    return header[1:] if is_time else list(header)


def csv_file(path: str, columns: list[str] | None = None, seed: int = 0) -> list[Series]:
    """Your own series from a CSV file with a header row: ``columns`` become the values ``(N, O)``;
    by default every column but a leading time column (:func:`value_columns`), so a file of one
    column of values reads as it is. Missing files, columns and non-numbers are reported by name."""
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.path or data.source_kwargs.path: no CSV file at {file}")
    with file.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if not header:
            raise ValueError(f"{file}: empty file or no header row")
        rows_read = list(reader)
    wanted = list(columns) if columns else value_columns(header, rows_read[0] if rows_read else {})
    missing = [c for c in wanted if c not in header]
    if missing or not wanted:
        raise ValueError(
            f"{file}: columns {missing or wanted} not found; the header has {header} "
            "(name the value columns with data.source_kwargs.columns=[...])"
        )
    rows = []
    for line, row in enumerate(rows_read, start=2):
        try:
            rows.append([float(row[c]) for c in wanted])
        except (TypeError, ValueError):
            bad = {c: row[c] for c in wanted}
            raise ValueError(f"{file}, line {line}: expected numbers in {wanted}, got {bad}") from None
    if len(rows) < 3:
        raise ValueError(f"{file}: expected at least 3 data rows, got {len(rows)}")
    values = np.array(rows)
    return [Series(values, np.zeros((len(values), 0)), np.zeros(0), name=file.stem)]


MACRO_SOURCE = (
    "US quarterly macroeconomic series 1959Q1-2009Q3 (public domain: FRED, Federal Reserve Bank of "
    "St. Louis, as compiled in statsmodels.datasets.macrodata)"
)


def panel_file(
    path: str | None = None,
    id_column: str = "unique_id",
    time_column: str = "ds",
    target: str = "y",
    known: list[str] | None = None,
    static: list[str] | None = None,
    missing: str = "error",
    seed: int = 0,
) -> list[Series]:
    """Many series from one long-format CSV, one row per series and time step, as practitioners hold
    them (the layout of Nixtla's and darts' panels)::

        unique_id,ds,y,promo,store_size
        store_1,2024-01-01,120.0,0,large
        store_1,2024-01-08,135.5,1,large
        ...

    Args:
        path: the CSV (default: the bundled :data:`MACRO_SOURCE` panel, 8 quarterly series).
        id_column, time_column, target: the series id, the time stamp (dates, or integer steps) and
            the value to forecast.
        known: columns known in advance for every step, the horizon included (prices, promotions,
            holidays, calendar): inputs of the step being predicted. Numeric.
        static: columns constant within a series (store size, category): numeric, or text one-hot
            encoded over the file's categories.
        missing: what a gap does: ``"error"`` (default) raises naming the series and the dates; a gap
            is an empty or NaN target, or a step absent from a regular series (dates are checked
            against the frequency pandas infers, integer steps against a step of 1).
            ``"interpolate"`` fills missing targets and absent steps linearly in time (known columns
            too); leading or trailing gaps, which cannot be interpolated, still raise.

    Every series is sorted by time; series may have different lengths and start dates.
    """
    import pandas as pd

    if missing not in ("error", "interpolate"):
        raise ValueError(f"data.source_kwargs.missing must be 'error' or 'interpolate', got {missing!r}")
    if path is None:
        file = resources.files("rnnkit.data") / "assets" / "us_macro_quarterly.csv"
    else:
        from pathlib import Path

        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"data.path or data.source_kwargs.path: no CSV file at {file}")
    known, static = list(known or []), list(static or [])
    with file.open() as f:
        frame = pd.read_csv(f, dtype={id_column: str}, keep_default_na=True)
    wanted = [id_column, time_column, target, *known, *static]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ValueError(f"{file}: columns {absent} not found; the header has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{file}: no data rows")
    frame["_line"] = frame.index + 2  # the file's line numbers, for messages
    for column in [target, *known]:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[numbers.isna() & frame[column].notna()]
        if len(bad):
            row = bad.iloc[0]
            raise ValueError(
                f"{file}, line {row['_line']}: column {column!r} must be numeric, got {row[column]!r}"
            )
        frame[column] = numbers
    times = _parse_times(frame[time_column], file, frame["_line"])
    frame[time_column] = times
    duplicated = frame[frame.duplicated([id_column, time_column], keep=False)]
    if len(duplicated):
        row = duplicated.iloc[0]
        raise ValueError(
            f"{file}, line {row['_line']}: series {row[id_column]!r} has more than one row for "
            f"{time_column}={row[time_column]}"
        )
    statics = _static_features(frame, id_column, static, file)
    out = []
    for name, rows in frame.sort_values([id_column, time_column]).groupby(id_column, sort=False):
        rows = _regular(rows, name, time_column, [target, *known], missing, file)
        values = rows[target].to_numpy(dtype=np.float64)[:, None]
        covariates = rows[known].to_numpy(dtype=np.float64).reshape(len(rows), len(known))
        dates = [_label(t) for t in rows[time_column]]
        out.append(Series(values, covariates, statics[name], name=str(name), dates=dates))
    return out


def _parse_times(column, file, lines):
    """Integer steps when every stamp is an integer, else dates (pandas' parser)."""
    import pandas as pd

    as_int = pd.to_numeric(column, errors="coerce")
    if as_int.notna().all() and (as_int == as_int.round()).all():
        return as_int.astype("int64")
    if as_int.notna().any():  # integer steps with a stray stamp: name the stray one
        first = as_int.isna().to_numpy().nonzero()[0][0]
        raise ValueError(
            f"{file}, line {lines.iloc[first]}: the time column must hold dates or integer steps, "
            f"got {column.iloc[first]!r} among integer steps"
        )
    with warnings.catch_warnings():  # pandas warns when it parses element by element
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(column, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"{file}, line {lines.iloc[first]}: the time column must hold dates or integer steps, "
            f"got {column.iloc[first]!r}"
        )
    return parsed


def _label(stamp) -> str:
    return stamp.date().isoformat() if hasattr(stamp, "date") else str(stamp)


def _static_features(frame, id_column: str, static: list[str], file) -> dict[str, np.ndarray]:
    """One vector per series: numeric columns as they are, text columns one-hot."""
    import pandas as pd

    columns = []
    for column in static:
        per_series = frame.groupby(id_column)[column].nunique(dropna=False)
        varying = per_series[per_series > 1]
        if len(varying):
            raise ValueError(
                f"{file}: static column {column!r} changes within series {list(varying.index[:5])}; "
                "a static feature is constant per series (use it as a known column instead)"
            )
        first = frame.groupby(id_column)[column].first()
        if first.isna().any():
            empty = list(first[first.isna()].index)
            raise ValueError(f"{file}: static column {column!r} is empty for series {empty}")
        numbers = pd.to_numeric(first, errors="coerce")
        if numbers.notna().all():
            columns.append(numbers.to_frame(column))
        else:
            columns.append(pd.get_dummies(first.astype(str), prefix=column, dtype=float))
    ids = frame[id_column].unique()
    if not columns:
        return {name: np.zeros(0) for name in ids}
    table = pd.concat(columns, axis=1)
    return {name: table.loc[name].to_numpy(dtype=np.float64) for name in ids}


def _regular(rows, name, time_column: str, columns: list[str], missing: str, file):
    """A series on its regular grid: absent steps and empty values raise, or are interpolated."""
    import pandas as pd

    times = rows[time_column]
    if pd.api.types.is_integer_dtype(times):
        grid = pd.RangeIndex(int(times.iloc[0]), int(times.iloc[-1]) + 1)
    else:
        with warnings.catch_warnings():  # pandas announces a change of infer_freq's return type
            warnings.simplefilter("ignore")
            frequency = pd.infer_freq(times.iloc[: min(len(times), 8)]) if len(times) >= 3 else None
        if frequency is None:
            raise ValueError(
                f"{file}: series {name!r}: cannot infer a regular frequency from its first dates "
                f"{[_label(t) for t in times.iloc[:4]]}; use integer steps in {time_column!r} instead"
            )
        grid = pd.date_range(times.iloc[0], times.iloc[-1], freq=frequency)
    full = rows.set_index(time_column).reindex(grid)
    gaps = full[columns].isna().any(axis=1)
    if gaps.any():
        where = [_label(t) for t in full.index[gaps.to_numpy()]]
        shown = f"{where[:6]}{' ...' if len(where) > 6 else ''}"
        if missing == "error":
            raise ValueError(
                f"{file}: series {name!r} has {len(where)} missing value(s) or absent step(s) at {shown}; "
                "fill them, or pass data.source_kwargs.missing=interpolate"
            )
        if gaps.iloc[0] or gaps.iloc[-1]:
            raise ValueError(
                f"{file}: series {name!r}: missing values at its start or end ({shown}) cannot be "
                "interpolated"
            )
        full[columns] = full[columns].interpolate(method="linear")
    return full.rename_axis(time_column).reset_index()


SOURCES = {
    "airline": airline,
    "sine": sine_mixture,
    "mackey_glass": mackey_glass,
    "radar": radar_tracks,
    "csv": csv_file,
    "panel": panel_file,
}
SEASONS = {"airline": 12}
