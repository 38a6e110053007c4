"""Classical forecasts from an origin: the yardsticks a forecaster judges a model against.

Each baseline maps a history ``(N,)`` in original units to a forecast of the next ``h`` steps.
Exponential smoothing comes from statsmodels (never written by hand here); the naive methods are
the textbook formulas (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 5.2):

- seasonal naive: v^_{N+k} = v_{N+k-m(floor((k-1)/m)+1)}, the last observed season repeated
  (the naive forecast v_N when m = 1);
- seasonal naive with drift: the seasonal naive plus the mean slope b = (v_N - v_1)/(N-1) carried over
  the seasonal lag, v^_{N+k} = v_{N+k-m j} + m j b with j = floor((k-1)/m)+1;
- Holt-Winters: additive trend and multiplicative season (additive when the history is not positive,
  no season when m = 1), fitted by maximum likelihood;
- ETS: the statsmodels state-space model with the smallest AIC among errors {A, M}, trends
  {none, A, A damped} and seasons {none, A, M} (multiplicative parts only for positive series).

ETS is a statistical model with a likelihood, so it also gives a forecast distribution:
:func:`ets_paths` draws sample paths from the fitted model (statsmodels' ``simulate``), which the
forecasting task scores with the same interval coverage and CRPS as its own paths. The interval a
practitioner would otherwise quote comes with its yardstick.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np

BASELINES = ("seasonal_naive", "seasonal_naive_drift", "holt_winters", "ets")
STATSMODELS = ("holt_winters", "ets")


def _lags(h: int, m: int) -> np.ndarray:
    """m * ceil(k/m) for k = 1..h: how far back the seasonal naive reads step k."""
    k = np.arange(1, h + 1)
    return m * ((k - 1) // m + 1)


def seasonal_naive(history: np.ndarray, h: int, m: int) -> np.ndarray:
    n = len(history)
    return history[n + np.arange(h) - _lags(h, m)]


def seasonal_naive_drift(history: np.ndarray, h: int, m: int) -> np.ndarray:
    n = len(history)
    slope = (history[-1] - history[0]) / max(n - 1, 1)
    return seasonal_naive(history, h, m) + _lags(h, m) * slope


def _quiet(fit: Callable[[], object]) -> object:
    """statsmodels warns about convergence and index frequency on short series: the fit still counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit()


def holt_winters(history: np.ndarray, h: int, m: int) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = None
    if m > 1 and len(history) >= 2 * m:
        seasonal = "mul" if (history > 0).all() else "add"
    model = ExponentialSmoothing(
        history, trend="add", seasonal=seasonal, seasonal_periods=m if seasonal else None
    )
    return np.asarray(_quiet(model.fit).forecast(h))


def _best_ets(history: np.ndarray, m: int):
    """The fitted ETS model of smallest AIC (see the module docstring); the forecast and the sample
    paths of one history share one search."""
    return _best_ets_of(history.astype(np.float64).tobytes(), m)


@functools.lru_cache(maxsize=8)
def _best_ets_of(history_bytes: bytes, m: int):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    history = np.frombuffer(history_bytes, dtype=np.float64)
    positive = bool((history > 0).all())
    seasons = [None]
    if m > 1 and len(history) >= 2 * m:
        seasons += ["add", "mul"] if positive else ["add"]
    best, best_aic = None, np.inf
    for error in ("add", "mul") if positive else ("add",):
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            for seasonal in seasons:
                model = ETSModel(
                    history,
                    error=error,
                    trend=trend,
                    damped_trend=damped,
                    seasonal=seasonal,
                    seasonal_periods=m if seasonal else None,
                )
                try:
                    fitted = _quiet(lambda model=model: model.fit(disp=False))
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if np.isfinite(fitted.aic) and fitted.aic < best_aic:
                    best, best_aic = fitted, fitted.aic
    if best is None:
        raise RuntimeError(f"ETS: no model could be fitted to a history of {len(history)} steps")
    return best


def ets(history: np.ndarray, h: int, m: int) -> np.ndarray:
    return np.asarray(_best_ets(history, m).forecast(h))


def ets_paths(history: np.ndarray, h: int, m: int, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` sample paths ``(samples, h)`` of the next ``h`` steps from the AIC-best ETS model,
    simulated from the end of the history with the model's Gaussian errors at their fitted variance
    (reproducible by ``seed``)."""
    fitted = _best_ets(history, m)
    paths = _quiet(
        lambda: fitted.simulate(h, anchor="end", repetitions=samples, rng=np.random.default_rng(seed))
    )
    return np.asarray(paths, dtype=np.float64).reshape(h, samples).T


FORECASTERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "seasonal_naive": seasonal_naive,
    "seasonal_naive_drift": seasonal_naive_drift,
    "holt_winters": holt_winters,
    "ets": ets,
}


def check_baselines(names: list[str] | tuple[str, ...]) -> None:
    """Unknown names, and statsmodels missing for the exponential-smoothing ones, fail early."""
    unknown = [n for n in names if n not in FORECASTERS]
    if unknown:
        raise ValueError(f"baselines: unknown {unknown}; choose from {list(FORECASTERS)}")
    if any(n in STATSMODELS for n in names):
        try:
            import statsmodels  # noqa: F401
        except ImportError as error:  # pragma: no cover - statsmodels is a dependency
            raise ImportError(
                f"baselines {[n for n in names if n in STATSMODELS]} need statsmodels: "
                "pip install statsmodels"
            ) from error


def baseline_paths(history: np.ndarray, h: int, m: int, samples: int, seed: int = 0) -> np.ndarray:
    """ETS sample paths ``(samples, h, O)`` of a history ``(N, O)``, one output at a time."""
    columns = [
        ets_paths(history[:, j].astype(np.float64), h, m, samples, seed) for j in range(history.shape[1])
    ]
    return np.stack(columns, axis=-1)


def forecast_baselines(names: list[str] | tuple[str, ...], history: np.ndarray, h: int, m: int) -> dict:
    """Each named baseline's forecast ``(h, O)`` of a history ``(N, O)``, one output at a time."""
    out = {}
    for name in names:
        columns = [FORECASTERS[name](history[:, j].astype(np.float64), h, m) for j in range(history.shape[1])]
        out[name] = np.stack(columns, axis=1)
    return out
