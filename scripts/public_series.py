"""Public series for checking the ``data=csv`` forecasting defaults on data nobody tuned them for
(issue 29): each written as a CSV that ``python train.py data=csv data.path=...`` reads, from
packages that ship them (no network).

=========  =========================================  =======  =====  ==========================
name       what                                       steps    m      from
=========  =========================================  =======  =====  ==========================
co2        Mauna Loa CO2 (ppm), weekly -> monthly     526      12     statsmodels (co2)
           means, 5 missing months interpolated
elnino     Pacific sea surface temperature (C)        732      12     statsmodels (elnino)
airline    Box & Jenkins airline passengers           144      12     rnnkit's bundled copy
nile       Nile flow at Aswan, annual                 100      1      statsmodels (nile)
sunspots   Wolf's sunspot numbers, annual             309      1      statsmodels (sunspots)
lynx       Canadian lynx trappings, annual            114      1      aeon (load_lynx), if installed
=========  =========================================  =======  =====  ==========================

``airline`` here runs with the csv defaults (no log, 12 months), not with ``data=airline``'s.
Left out: aeon's ``shampoo_sales`` (36 months: shorter than the default window, validation and
horizon together, 24 + 12 + 12) and ``PBS_dataset`` (intermittent counts, mostly zero: MAPE is
undefined).

    python scripts/public_series.py logs/series     # write the CSVs and print the train.py overrides
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PublicSeries:
    name: str
    column: str
    season: int
    description: str

    def overrides(self, folder: Path) -> list[str]:
        """The ``train.py`` overrides that forecast this series with the ``data=csv`` defaults."""
        path = (Path(folder) / f"{self.name}.csv").resolve()
        columns = f"data.source_kwargs.columns=[{self.column}]"
        return ["data=csv", f"data.path={path}", columns, f"data.season={self.season}"]


SERIES = {
    "co2": PublicSeries("co2", "co2", 12, "Mauna Loa CO2, monthly"),
    "elnino": PublicSeries("elnino", "sst", 12, "El Nino sea surface temperature, monthly"),
    "airline": PublicSeries("airline", "passengers", 12, "airline passengers, csv defaults"),
    "nile": PublicSeries("nile", "volume", 1, "Nile flow, annual"),
    "sunspots": PublicSeries("sunspots", "activity", 1, "sunspot numbers, annual"),
    "lynx": PublicSeries("lynx", "lynx", 1, "lynx trappings, annual"),
}


def _frame(name: str) -> pd.DataFrame | None:
    """One series as a frame (a leading time column, then its value column), or None where the
    package that ships it is missing."""
    import statsmodels.api as sm

    if name == "co2":
        weekly = sm.datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate()
        return pd.DataFrame({"month": monthly.index.strftime("%Y-%m"), "co2": monthly.to_numpy()})
    if name == "elnino":
        table = sm.datasets.elnino.load_pandas().data  # a row per year, a column per month
        values = table.drop(columns="YEAR").to_numpy().ravel()
        months = pd.date_range(f"{int(table['YEAR'].iloc[0])}-01", periods=len(values), freq="MS")
        return pd.DataFrame({"month": months.strftime("%Y-%m"), "sst": values})
    if name == "airline":
        from rnnkit.data.series import airline_passengers

        values = airline_passengers()
        months = pd.date_range("1949-01", periods=len(values), freq="MS")
        return pd.DataFrame({"month": months.strftime("%Y-%m"), "passengers": values})
    if name == "nile":
        table = sm.datasets.nile.load_pandas().data
        return pd.DataFrame({"year": table["year"].astype(int), "volume": table["volume"]})
    if name == "sunspots":
        table = sm.datasets.sunspots.load_pandas().data
        return pd.DataFrame({"year": table["YEAR"].astype(int), "activity": table["SUNACTIVITY"]})
    if name == "lynx":
        try:
            from aeon.datasets import load_lynx
        except ImportError:
            return None
        values = np.asarray(load_lynx(), dtype=float)
        return pd.DataFrame({"year": np.arange(1821, 1821 + len(values)), "lynx": values})
    raise ValueError(f"unknown series {name!r}; known: {list(SERIES)}")


def write_series(folder: str | Path, names: list[str] | None = None) -> dict[str, PublicSeries]:
    """Write each series (all by default) to ``folder/<name>.csv``; returns those written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names or list(SERIES):
        frame = _frame(name)
        if frame is None:
            print(f"{name}: skipped (its package is not installed)", file=sys.stderr)
            continue
        frame.to_csv(folder / f"{name}.csv", index=False)
        written[name] = SERIES[name]
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/series")
    for series in write_series(target).values():
        print(f"python train.py {' '.join(series.overrides(target))}")
