"""Next-step forecasting data: windows over series, split by time, scaled, with naive baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset, baseline_prefix
from rnnkit.data.baselines import BASELINES, baseline_paths, check_baselines, forecast_baselines
from rnnkit.data.series import SEASONS, SOURCES, Series
from rnnkit.files import atomic_write_text


class TimeSeriesDataModule(SequenceDataModule):
    r"""Windows of a series for :class:`~rnnkit.tasks.NextStep`.

    Input step s of a window carries the three kinds of recurrent input of the lecture notes:

    - the series' own value v_s (during a rollout: the model's previous output) -- ``feedback``;
    - known covariates of the step being predicted (month of year for monthly data);
    - static features, constant over the sequence (the mixture frequencies of ``sine``).

    The target of step s is v_{s+1}. Values and known covariates are (values optionally logged and)
    standardized with training statistics only; static features across the series.

    **Evaluation from an origin** (``evaluation="origin"``, the default): each series of N steps is
    cut at the test origin N - h (h = ``horizon``): the test forecasts v_{N-h}..v_{N-1}, all h steps,
    from the ``window`` observed steps before the origin and nothing observed after it (the task rolls
    out on its own predictions; only known covariates are read from the data). Validation does the
    same from the origin ``val_size`` steps earlier, over ``val_size`` steps; training windows end
    before the validation origin. Metrics cover every step of the horizon; the classical
    ``baselines`` (:mod:`rnnkit.data.baselines`) forecast the same steps from the same history.

    **Rolling evaluation** (``evaluation="rolling"``): every step of the last ``test_size`` steps is a
    test target, forecast ``horizon`` steps ahead from a window that ends h steps before it (with h = 1:
    the one-step forecast with the actual values fed in). Baselines: seasonal naive v_{tau - m
    ceil(h/m)} and last value v_{tau-h}.

    Args:
        source: ``"airline"``, ``"sine"``, ``"mackey_glass"``, ``"radar"``, ``"csv"`` (your own file:
            ``source_kwargs={"path": ..., "columns": [...]}``) or ``"panel"`` (many series in a long CSV,
            see :func:`~rnnkit.data.series.panel_file`).
        window: input steps before a forecast origin (and per training window).
        train_window: steps per training window; default: as long as an evaluated window
            (``window + horizon - 1`` from an origin, ``window`` rolling).
        horizon: forecast horizon h.
        evaluation: ``"origin"`` or ``"rolling"`` (above).
        val_size: validation steps at the end of the history before the test period (default 12).
        test_size: rolling evaluation only: test targets at the end of each series (default 24); from
            an origin the test period is the horizon.
        cutoff: drop the last ``cutoff`` steps of every series first (a backtest's earlier origins).
        log: model log-values (for multiplicative series such as airline).
        covariates, static: include the known covariates / static features in the inputs.
        seasonal_lag: add, per output, the (scaled) value one season before the step being predicted,
            v_{s+1-m}, to input step s: a known input while every forecast reaches at most one season
            past its origin (``horizon`` and, from an origin, ``val_size`` <= m, else refused: the lag
            would lie in the forecast period). Windows begin at step m - 1, the first one whose lag
            the series holds. The spec names these inputs (``seasonal_lags``): ``local_level`` shifts
            them with the fed-back values, and the task's ``residual="seasonal"`` predicts the change
            from them.
            ``"auto"``: on exactly where it can be (m >= 2 and those reaches <= m), off elsewhere
            (what ``data=csv`` uses: monthly files with ``season=12`` get it, annual ones run without).
        source_kwargs: passed to the generator or reader (``length``, ``num_series``, ``columns`` ...).
        path: the file of the ``csv`` and ``panel`` sources (``source_kwargs.path`` also works).
        season: the seasonal period m (default: 12 for airline, from the file for panels, else 1).
        baselines: origin evaluation: which classical forecasts to compute (the first is ``baseline/``).
        baseline_samples: origin evaluation with ``ets`` among the baselines: sample paths drawn from
            the fitted ETS model (:func:`rnnkit.data.baselines.ets_paths`), scored with the model's
            interval metrics (``baseline_ets/coverage80``, ``coverage95``, ``crps``); 0 for none.
        train_on_validation: training windows run up to the test period, through the validation
            steps (whose metrics are then in-sample); normalization statistics are unchanged. What
            ``refit=true`` (``rnnkit.training.run``) trains its final model on.
    """

    def __init__(
        self,
        source: str = "airline",
        window: int = 36,
        train_window: int | None = None,
        horizon: int = 24,
        evaluation: str = "origin",
        val_size: int = 12,
        test_size: int | None = None,
        cutoff: int = 0,
        log: bool = False,
        covariates: bool = True,
        static: bool = True,
        seasonal_lag: bool | str = False,
        source_kwargs: dict | None = None,
        path: str | None = None,
        season: int | None = None,
        baselines: list[str] | tuple[str, ...] = BASELINES,
        baseline_samples: int = 200,
        train_on_validation: bool = False,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
        if evaluation not in ("origin", "rolling"):
            raise ValueError(f"evaluation must be 'origin' or 'rolling', got {evaluation!r}")
        if test_size is None:
            test_size = horizon if evaluation == "origin" else 24
        elif evaluation == "origin" and test_size != horizon:
            raise ValueError(
                f"test_size ({test_size}) must equal horizon ({horizon}) with evaluation='origin': the test "
                "period is the horizon from the origin (leave test_size unset)"
            )
        if train_window is None:
            train_window = window + horizon - 1 if evaluation == "origin" else window
        for name, value in (
            ("window", window),
            ("train_window", train_window),
            ("horizon", horizon),
            ("test_size", test_size),
            ("val_size", val_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(cutoff, int) or cutoff < 0:
            raise ValueError(f"cutoff must be a non-negative integer, got {cutoff!r}")
        if evaluation == "rolling" and horizon > window:
            raise ValueError(
                f"horizon ({horizon}) must not exceed window ({window}) with evaluation='rolling'"
            )
        self.baseline_names = tuple(baselines) if evaluation == "origin" else ()
        check_baselines(self.baseline_names)
        if (
            not isinstance(baseline_samples, int)
            or isinstance(baseline_samples, bool)
            or baseline_samples < 0
        ):
            raise ValueError(f"baseline_samples must be a non-negative integer, got {baseline_samples!r}")
        if baseline_samples == 1:
            raise ValueError("baseline_samples: an interval needs at least 2 sample paths (0: none), got 1")
        self.baseline_samples = baseline_samples
        self.source = source
        self.window = window
        self.train_window = train_window
        self.horizon = horizon
        self.evaluation = evaluation
        self.val_size = val_size
        self.test_size = test_size
        self.train_on_validation = bool(train_on_validation)
        self.cutoff = cutoff
        self.log = log
        self.use_covariates = covariates
        self.use_static = static
        self.source_kwargs = dict(source_kwargs or {})
        if path is not None:  # the file of the csv and panel sources, as every other data config names it
            given = self.source_kwargs.get("path")
            if given is not None and str(given) != str(path):
                raise ValueError(
                    f"data.path={path!r} and data.source_kwargs.path={given!r}: give one of them"
                )
            self.source_kwargs["path"] = path
        if source == "csv" and self.source_kwargs.get("path") is None:
            raise ValueError(
                "data.path: data=csv reads your own file: python train.py data=csv data.path=my.csv"
            )
        if season is not None and season < 1:
            raise ValueError(f"season must be a positive integer, got {season}")
        self.season = season if season is not None else SEASONS.get(source, 1)
        m = self.season
        reach = max(horizon, val_size) if evaluation == "origin" else horizon
        if isinstance(seasonal_lag, str):
            if seasonal_lag != "auto":
                raise ValueError(f"seasonal_lag must be true, false or 'auto', got {seasonal_lag!r}")
            seasonal_lag = m >= 2 and reach <= m
        self.seasonal_lag = bool(seasonal_lag)
        if self.seasonal_lag:
            if m < 2:
                raise ValueError(
                    f"seasonal_lag needs a season m >= 2 (source {source!r} has m={m}): pass season"
                )
            if reach > m:
                raise ValueError(
                    "seasonal_lag reads v_(t+1-m), which lies in the forecast period when a forecast "
                    f"reaches more than one season (m={m}) past its origin: got horizon={horizon}"
                    + (f", val_size={val_size}" if evaluation == "origin" else "")
                    + f"; use horizon (and val_size) <= {m}"
                )
        if evaluation == "rolling":
            naive_lag = m * math.ceil(horizon / m)
            if m > 1 and naive_lag > window:
                raise ValueError(
                    f"window ({window}) must cover the seasonal naive lag m*ceil(h/m) = {naive_lag} "
                    f"(season {m}, horizon {horizon})"
                )

    # ------------------------------------------------------------------ build
    def _load(self) -> list[Series]:
        series = SOURCES[self.source](seed=self.seed, **self.source_kwargs)
        for k, s in enumerate(series):
            s.name = s.name or f"{self.source}{k}"
        if self.cutoff:
            short = [s.name for s in series if len(s.values) <= self.cutoff]
            if short:
                raise ValueError(f"cutoff={self.cutoff} removes every step of series {short}")
            series = [
                Series(
                    s.values[: -self.cutoff],
                    s.covariates[: -self.cutoff],
                    s.static,
                    s.start,
                    s.name,
                    None if s.dates is None else s.dates[: -self.cutoff],
                )
                for s in series
            ]
        return series

    def build(self) -> None:
        series = self._load()
        held_out = self.val_size + self.test_size
        longest = max(self.window, self.train_window)
        first = self._first_input()
        too_short = [
            f"{s.name} ({len(s.values)} steps)"
            for s in series
            if len(s.values) - held_out - longest - first < 1
        ]
        if too_short:
            unlagged = f" + {first} steps without their seasonal lag" if first else ""
            raise ValueError(
                f"{self.source}: series {too_short[:5]}{' ...' if len(too_short) > 5 else ''} need more than "
                f"window + val_size + test_size{unlagged} = {longest} + {self.val_size} + {self.test_size}"
                f"{f' + {first}' if first else ''} steps: lower window, val_size or horizon, or leave those "
                "series out"
            )
        self.train_ends = [len(s.values) - held_out for s in series]
        transformed = [self._forward_transform(s) for s in series]
        train = np.concatenate([v[:end] for v, end in zip(transformed, self.train_ends, strict=True)])
        self.mean = train.mean(0)
        self.std = train.std(0) + 1e-8
        known = np.concatenate([s.covariates[:end] for s, end in zip(series, self.train_ends, strict=True)])
        self.covariate_mean, self.covariate_std = _moments(known)
        self.static_mean, self.static_std = _moments(np.stack([s.static for s in series]))
        self.series = series
        outputs = series[0].values.shape[1]
        m = self.season
        diffs = np.concatenate(
            [
                np.abs(s.values[m:end] - s.values[: end - m])
                for s, end in zip(series, self.train_ends, strict=True)
            ]
        )
        covs = series[0].covariates.shape[1] if self.use_covariates else 0
        statics = series[0].static.shape[0] if self.use_static else 0
        self.spec = DataSpec(
            input_size=outputs * (2 if self.seasonal_lag else 1) + covs + statics,
            output_size=outputs,
            feedback=list(range(outputs)),
            seasonal_lags=list(range(outputs, 2 * outputs)) if self.seasonal_lag else [],
            season=m,
            horizon=self.horizon,
            mase_scale=float(diffs.mean()) or 1.0,
            names=[f"{self.source}[{k}]" for k in range(outputs)],
            evaluation=self.evaluation,
            context=self.window,
        )
        self.splits = {}
        self.items: dict[str, list[tuple[int, int]]] = {}  # split -> (series, first target step)
        self.baseline_forecasts: dict[str, Tensor] = {}
        self.baseline_sample_paths: dict[str, Tensor] = {}
        for split in ("train", "val", "test"):
            xs, ys, where = [], [], []
            for k, (s, v) in enumerate(zip(series, transformed, strict=True)):
                feats, targets = self._features(s, v)
                for start, stop, step in self._windows(split, len(s.values), self.train_ends[k]):
                    xs.append(feats[start:stop])  # inputs of steps start..stop-1
                    ys.append(targets[start:stop])  # their targets v_{start+1}..v_stop
                    where.append((k, step))
            if not xs:
                raise ValueError(f"{self.source}: the {split} split has no windows; check sizes")
            self.splits[split] = TensorDictDataset(
                x=torch.tensor(np.stack(xs), dtype=torch.float32),
                y=torch.tensor(np.stack(ys), dtype=torch.float32),
                item=torch.arange(len(xs)),
            )
            self.items[split] = where
        if self.evaluation == "origin" and self.baseline_names:
            sampled = "ets" in self.baseline_names and self.baseline_samples > 0
            per_item, paths = [], []
            for i, (k, origin) in enumerate(self.items["test"]):
                history = self.series[k].values[:origin]
                per_item.append(forecast_baselines(self.baseline_names, history, self.horizon, m))
                if sampled:  # right after its forecast: the fitted ETS model is reused
                    paths.append(baseline_paths(history, self.horizon, m, self.baseline_samples, seed=i))
            for name in self.baseline_names:
                stacked = np.stack([f[name] for f in per_item])  # (N, h, O)
                self.baseline_forecasts[name] = torch.tensor(stacked, dtype=torch.float32)
            if sampled:
                self.baseline_sample_paths["ets"] = torch.tensor(np.stack(paths), dtype=torch.float32)

    def _windows(self, split: str, n: int, train_end: int) -> list[tuple[int, int, int]]:
        """``(start, stop, step)`` per window of a split: its inputs are steps start..stop-1, and
        ``step`` labels it in reports (the first forecast step from an origin, else the last target)."""
        first = self._first_input()
        if split == "train":
            length = self.train_window
            end = train_end + self.val_size if self.train_on_validation else train_end
            return [(tau - length, tau, tau) for tau in range(length + first, end)]
        if self.evaluation == "origin":
            origin = train_end if split == "val" else n - self.test_size
            steps = self.val_size if split == "val" else self.test_size
            return [(origin - self.window, origin + steps - 1, origin)]
        lo, hi = (train_end, n - self.test_size) if split == "val" else (n - self.test_size, n)
        return [(tau - self.window, tau, tau) for tau in range(max(lo, self.window + first), hi)]

    def _first_input(self) -> int:
        """The first step that may begin a window: m - 1 with ``seasonal_lag`` (the first step whose
        v_{s+1-m} the series holds), else 0."""
        return self.season - 1 if self.seasonal_lag else 0

    def _forward_transform(self, s: Series) -> np.ndarray:
        if self.log:
            if (s.values <= 0).any():
                raise ValueError(
                    f"{self.source}: log=True needs positive values; series {s.name} has some <= 0"
                )
            return np.log(s.values)
        return s.values

    def _features(self, s: Series, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs for steps 0..N-2 and their targets v_{s+1}, both scaled."""
        z = (v - self.mean) / self.std  # (N, O)
        parts = [z[:-1]]
        if self.seasonal_lag:  # v_{s+1-m} of the step being predicted (no window reads the first m-1)
            m = self.season
            lag = np.zeros_like(z[:-1])
            lag[m - 1 :] = z[: len(z) - m]
            parts.append(lag)
        if self.use_covariates and s.covariates.shape[1]:
            known = (s.covariates[1:] - self.covariate_mean) / self.covariate_std
            parts.append(known)  # covariates of the step being predicted
        if self.use_static and s.static.shape[0]:
            static = (s.static - self.static_mean) / self.static_std
            parts.append(np.broadcast_to(static, (len(z) - 1, s.static.shape[0])))
        return np.concatenate(parts, axis=1), z[1:]

    # ------------------------------------------------------------------ task hooks
    def inverse_target(self, y: Tensor) -> Tensor:
        mean = torch.as_tensor(self.mean, dtype=y.dtype, device=y.device)
        std = torch.as_tensor(self.std, dtype=y.dtype, device=y.device)
        out = y * std + mean
        return out.exp() if self.log else out

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The baselines' forecasts of a test batch in original units, shaped like the model's:
        ``(B, h, O)`` from an origin, ``(B, O)`` (the last target of each window) when rolling."""
        if self.evaluation == "origin":
            items = batch["item"].cpu()
            return {name: f[items].to(batch["x"].device) for name, f in self.baseline_forecasts.items()}
        x = batch["x"]  # (B, W, F)
        outputs = self.spec.output_size
        last = self.inverse_target(x[:, self.window - self.horizon, :outputs])  # v_{tau-h}
        if self.season > 1:
            lag = self.season * math.ceil(self.horizon / self.season)
            seasonal = self.inverse_target(x[:, self.window - lag, :outputs])
            return {"seasonal_naive": seasonal, "last_value": last}
        return {"last_value": last}

    def baseline_paths(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sample paths of the baselines that have a distribution (ETS), for a test batch in original
        units: ``(S, B, h, O)``, sample-major like the model's."""
        if not self.baseline_sample_paths:
            return {}
        items = batch["item"].cpu()
        return {
            name: paths[items].movedim(1, 0).to(batch["x"].device)  # (N, S, h, O) -> (S, B, h, O)
            for name, paths in self.baseline_sample_paths.items()
        }

    def _test_truth(self, count: int) -> Tensor:
        """The test targets of the first ``count`` items in original units, ``(count, h, O)``."""
        items = self.items["test"][:count]
        rows = [self.series[k].values[first : first + self.test_size] for k, first in items]
        return torch.tensor(np.stack(rows), dtype=torch.float32)

    def forecast_report(self, predictions: Tensor) -> dict[str, list]:
        """MAE per horizon step (1..h) of the model and every baseline over the test items, and the
        forecast origins (the last observed dates)."""
        if self.evaluation != "origin":
            return {}
        truth = self._test_truth(len(predictions))
        report: dict[str, list] = {"test/mae_by_step": (predictions - truth).abs().mean((0, 2)).tolist()}
        origins = {self.series[k].date(first - 1) for k, first in self.items["test"][: len(predictions)]}
        report["test/origins"] = sorted(origins)
        for index, (name, forecast) in enumerate(self.baseline_forecasts.items()):
            error = (forecast[: len(truth)] - truth).abs().mean((0, 2))
            report[f"{baseline_prefix(index, name)}mae_by_step"] = error.tolist()
        return report

    def write_forecasts(self, predictions: Tensor, quantiles: dict[float, Tensor], path: Path) -> None:
        """One CSV row per (series, forecast step, output): date, truth, the model's forecast, its
        quantiles and every baseline's forecast."""
        if self.evaluation != "origin":
            return
        truth = self._test_truth(len(predictions))
        header = ["series", "date", "step", "output", "truth", "forecast"]
        header += [f"q{level:g}" for level in quantiles] + list(self.baseline_forecasts)
        lines = [",".join(header)]
        for i, (k, first) in enumerate(self.items["test"][: len(predictions)]):
            s = self.series[k]
            for step in range(self.test_size):
                for o in range(truth.shape[2]):
                    row = [s.name, s.date(first + step), str(step + 1), str(o)]
                    row += [f"{float(truth[i, step, o]):.6g}", f"{float(predictions[i, step, o]):.6g}"]
                    row += [f"{float(q[i, step, o]):.6g}" for q in quantiles.values()]
                    row += [f"{float(f[i, step, o]):.6g}" for f in self.baseline_forecasts.values()]
                    lines.append(",".join(row))
        atomic_write_text(path, "\n".join(lines) + "\n")

    def plot_test(
        self, predictions: Tensor, path: Path, quantiles: dict[float, Tensor] | None = None
    ) -> None:
        """The test forecasts against the truth, for up to four series: from an origin, the recent
        history, the model's forecast with its 80% and 95% intervals (when it has them) and the
        ETS forecast; rolling, the h-step-ahead forecast of every test step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if self.evaluation == "origin":
            fig = self._plot_origin(plt, predictions, quantiles or {})
        else:
            fig = self._plot_rolling(plt, predictions)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def _plot_origin(self, plt, predictions: Tensor, quantiles: dict[float, Tensor]):
        shown = list(range(min(4, len(predictions))))
        fig, axes = plt.subplots(len(shown), 1, figsize=(10, 3.4 * len(shown)), squeeze=False)
        reference = next((n for n in ("ets", "holt_winters") if n in self.baseline_forecasts), None)
        for ax, i in zip(axes[:, 0], shown, strict=True):
            k, origin = self.items["test"][i]
            s = self.series[k]
            h = self.test_size
            begin = max(0, origin - max(3 * h, 4 * self.season))
            past = np.arange(begin, origin)
            future = np.arange(origin, origin + h)
            ax.plot(past, s.values[begin:origin, 0], color="0.3", lw=1.2, label="history")
            ax.plot(future, s.values[origin : origin + h, 0], color="0.3", lw=1.2, ls=":", label="truth")
            for (lo, hi), alpha in (((0.025, 0.975), 0.15), ((0.1, 0.9), 0.3)):
                if lo in quantiles and hi in quantiles:
                    band = (quantiles[lo][i, :, 0].numpy(), quantiles[hi][i, :, 0].numpy())
                    label = f"{hi - lo:.0%} interval"
                    ax.fill_between(future, *band, color="C3", alpha=alpha, lw=0, label=label)
            ax.plot(future, predictions[i, :, 0].numpy(), color="C3", lw=1.6, label="rnnkit forecast")
            if reference is not None:
                forecast = self.baseline_forecasts[reference][i, :, 0].numpy()
                label = reference.upper().replace("_", "-")
                ax.plot(future, forecast, color="C0", lw=1.2, ls="--", label=label)
            ticks = np.linspace(begin, origin + h - 1, 6).round().astype(int)
            ax.set_xticks(ticks, [s.date(int(t)) for t in ticks])
            ax.axvline(origin - 0.5, color="0.6", lw=0.8)
            ax.set_title(f"{s.name}: {h}-step forecast from the origin {s.date(origin - 1)}")
            ax.legend(loc="upper left", fontsize=8)
        return fig

    def _plot_rolling(self, plt, predictions: Tensor):
        where = torch.tensor(self.items["test"][: len(predictions)])  # a limited test run covers a prefix
        shown = sorted(set(where[:, 0].tolist()))[:3]
        fig, axes = plt.subplots(len(shown), 1, figsize=(10, 3.2 * len(shown)), squeeze=False)
        for ax, k in zip(axes[:, 0], shown, strict=True):
            rows = (where[:, 0] == k).nonzero().flatten()
            taus = where[rows, 1].numpy()
            truth = self.series[k].values
            if truth.shape[1] == 2:  # planar track: draw it in the plane
                ax.plot(truth[:, 0], truth[:, 1], color="0.6", lw=1, label="observed track")
                ax.plot(*predictions[rows].T.numpy(), "o", ms=3, color="C3", label="forecast")
                ax.set_aspect("equal", adjustable="datalim")
            else:
                ax.plot(np.arange(len(truth)), truth[:, 0], color="0.3", lw=1, label="truth")
                ax.plot(taus, predictions[rows, 0].numpy(), "o-", ms=3, color="C3", label="forecast")
                ax.axvspan(taus.min() - 0.5, taus.max() + 0.5, color="C0", alpha=0.08, label="test")
            ax.set_title(f"{self.source} series {k}: {self.horizon}-step-ahead test forecasts")
            ax.legend(loc="upper left")
        return fig


def _moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column (1 where a column is constant)."""
    if features.size == 0:
        return np.zeros(features.shape[1:]), np.ones(features.shape[1:])
    std = features.std(0)
    return features.mean(0), np.where(std > 1e-12, std, 1.0)
