"""Next-step forecasting data: windows over series, split by time, scaled, with naive baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset
from rnnkit.data.series import SEASONS, SOURCES, Series


class TimeSeriesDataModule(SequenceDataModule):
    r"""Windows of a series for :class:`~rnnkit.tasks.NextStep`.

    Every series is split by time: the last ``test_size`` steps are the test targets, the
    ``val_size`` before them validation targets, the rest training. Values are (optionally logged
    and) standardized with training statistics only. Input step s of a window carries the three
    kinds of recurrent input of the lecture notes:

    - the series' own value v_s (during a rollout: the model's previous output) -- ``feedback``;
    - known covariates of the step being predicted (month of year for monthly data);
    - static features, constant over the sequence (the mixture frequencies of ``sine``).

    The target of step s is v_{s+1}. A window of ``window`` steps ends at target tau; with
    ``horizon = h`` the evaluated forecast of v_tau is made from v_{tau-h} and earlier (the task
    rolls out the last h-1 steps on its own predictions).

    Baselines (on the same test targets): seasonal naive v_{tau - m ceil(h/m)} when the series has
    a season m, and last value v_{tau-h}.

    Args:
        source: ``"airline"``, ``"sine"``, ``"mackey_glass"``, ``"radar"``, or ``"csv"`` (your own file:
            ``source_kwargs={"path": ..., "columns": [...]}``).
        window: input steps per window.
        horizon: forecast horizon h of the evaluated predictions.
        val_size, test_size: time steps at the end of each series for validation and test targets.
        log: model log-values (for multiplicative series such as airline).
        covariates, static: include the known covariates / static features in the inputs.
        source_kwargs: passed to the generator (``length``, ``num_series``, ``noise`` ...).
        season: the seasonal period m (default: 12 for airline, else 1).
    """

    def __init__(
        self,
        source: str = "airline",
        window: int = 36,
        horizon: int = 1,
        val_size: int = 12,
        test_size: int = 24,
        log: bool = False,
        covariates: bool = True,
        static: bool = True,
        source_kwargs: dict | None = None,
        season: int | None = None,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
        for name, value in (("window", window), ("horizon", horizon), ("test_size", test_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if horizon > window:
            raise ValueError(f"horizon ({horizon}) must not exceed window ({window})")
        self.source = source
        self.window = window
        self.horizon = horizon
        self.val_size = val_size
        self.test_size = test_size
        self.log = log
        self.use_covariates = covariates
        self.use_static = static
        self.source_kwargs = dict(source_kwargs or {})
        self.season = season if season is not None else SEASONS.get(source, 1)
        if self.season < 1:
            raise ValueError(f"season must be a positive integer, got {self.season}")
        seasonal_lag = self.season * math.ceil(horizon / self.season)
        if self.season > 1 and seasonal_lag > window:
            raise ValueError(
                f"window ({window}) must cover the seasonal naive lag m*ceil(h/m) = {seasonal_lag} "
                f"(season {self.season}, horizon {horizon})"
            )

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        series = SOURCES[self.source](seed=self.seed, **self.source_kwargs)
        n = len(series[0].values)
        self.train_end = n - self.val_size - self.test_size
        if self.train_end - self.window < 1:
            raise ValueError(
                f"{self.source}: {n} steps leave {self.train_end} for training, too few for window "
                f"{self.window}: lower window, val_size or test_size"
            )
        transformed = [self._forward_transform(s.values) for s in series]
        train = np.concatenate([v[: self.train_end] for v in transformed])
        self.mean = train.mean(0)
        self.std = train.std(0) + 1e-8
        self.series = series
        outputs = series[0].values.shape[1]
        m = self.season
        diffs = np.concatenate(
            [np.abs(s.values[m : self.train_end] - s.values[: self.train_end - m]) for s in series]
        )
        covs = series[0].covariates.shape[1] if self.use_covariates else 0
        statics = series[0].static.shape[0] if self.use_static else 0
        self.spec = DataSpec(
            input_size=outputs + covs + statics,
            output_size=outputs,
            feedback=list(range(outputs)),
            season=m,
            horizon=self.horizon,
            mase_scale=float(diffs.mean()),
            names=[f"{self.source}[{k}]" for k in range(outputs)],
        )
        ranges = {
            "train": (self.window, self.train_end),
            "val": (self.train_end, n - self.test_size),
            "test": (n - self.test_size, n),
        }
        self.splits = {}
        self.targets_index: dict[str, Tensor] = {}
        for split, (lo, hi) in ranges.items():
            xs, ys, where = [], [], []
            for k, (s, v) in enumerate(zip(series, transformed, strict=True)):
                feats, targets = self._features(s, v)
                for tau in range(max(lo, self.window), hi):
                    xs.append(feats[tau - self.window : tau])
                    ys.append(targets[tau - self.window : tau])
                    where.append((k, tau))
            if not xs:
                raise ValueError(f"{self.source}: the {split} split has no windows; check sizes")
            self.splits[split] = TensorDictDataset(
                x=torch.tensor(np.stack(xs), dtype=torch.float32),
                y=torch.tensor(np.stack(ys), dtype=torch.float32),
            )
            self.targets_index[split] = torch.tensor(where)

    def _forward_transform(self, values: np.ndarray) -> np.ndarray:
        if self.log:
            if (values <= 0).any():
                raise ValueError(f"{self.source}: log=True needs positive values")
            return np.log(values)
        return values

    def _features(self, s: Series, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs for steps 0..N-2 and their targets v_{s+1}, both scaled."""
        z = (v - self.mean) / self.std  # (N, O)
        parts = [z[:-1]]
        if self.use_covariates and s.covariates.shape[1]:
            parts.append(s.covariates[1:])  # covariates of the step being predicted
        if self.use_static and s.static.shape[0]:
            parts.append(np.broadcast_to(s.static, (len(z) - 1, s.static.shape[0])))
        return np.concatenate(parts, axis=1), z[1:]

    # ------------------------------------------------------------------ task hooks
    def inverse_target(self, y: Tensor) -> Tensor:
        mean = torch.as_tensor(self.mean, dtype=y.dtype, device=y.device)
        std = torch.as_tensor(self.std, dtype=y.dtype, device=y.device)
        out = y * std + mean
        return out.exp() if self.log else out

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Naive forecasts of the last target of each window, scaled like the targets."""
        x = batch["x"]  # (B, W, F)
        outputs = self.spec.output_size
        last = x[:, self.window - self.horizon, :outputs]  # v_{tau-h}
        if self.season > 1:
            lag = self.season * math.ceil(self.horizon / self.season)
            return {"seasonal_naive": x[:, self.window - lag, :outputs], "last_value": last}
        return {"last_value": last}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        """Forecasts of the test targets against the truth, for up to three series."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        where = self.targets_index["test"][: len(predictions)]  # a limited test run covers a prefix
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
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
