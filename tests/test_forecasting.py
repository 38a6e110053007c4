"""Forecasting as a forecaster judges it: from an origin, against classical baselines, with intervals,
over many series read from a long CSV, and backtested over several origins."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnkit.nn as rnn
from rnnkit.data import DataSpec, TimeSeriesDataModule
from rnnkit.data.baselines import ets_paths, forecast_baselines, seasonal_naive, seasonal_naive_drift
from rnnkit.data.series import airline_passengers, panel_file
from rnnkit.tasks import NextStep
from rnnkit.tasks.metrics import IntervalCoverage, SampleCRPS

ROOT = Path(__file__).resolve().parents[1]
ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
D = torch.float64


def encoder(**kw):
    return functools.partial(rnn.Recurrent, cell="lstm", hidden_size=8, **kw)


# ---------------------------------------------------------------------- baselines
def test_seasonal_naive_repeats_the_last_season_and_drift_adds_the_mean_slope():
    history = np.arange(1.0, 13.0)  # 1..12, slope 1 per step
    assert seasonal_naive(history, 6, 4).tolist() == [9, 10, 11, 12, 9, 10]
    assert seasonal_naive(history, 3, 1).tolist() == [12, 12, 12]
    # drift: the lag m*ceil(k/m) times the slope (v_N - v_1)/(N-1) = 1: a straight line continues
    assert seasonal_naive_drift(history, 6, 1).tolist() == [13, 14, 15, 16, 17, 18]
    assert seasonal_naive_drift(history, 6, 4).tolist() == [13, 14, 15, 16, 17, 18]


def test_classical_baselines_reproduce_the_statsmodels_figures_on_airline():
    """Issue 8's measurements: 24 months from the 1958-12 origin (MAE)."""
    y = airline_passengers()[:, None]
    history, truth = y[:120], y[120:]
    forecasts = forecast_baselines(
        ["seasonal_naive", "seasonal_naive_drift", "holt_winters", "ets"], history, 24, 12
    )
    mae = {name: float(np.abs(f - truth).mean()) for name, f in forecasts.items()}
    assert mae["seasonal_naive"] == pytest.approx(71.25, abs=0.01)
    assert mae["seasonal_naive_drift"] == pytest.approx(37.44, abs=0.01)
    assert mae["holt_winters"] == pytest.approx(29.0, abs=0.1)
    assert mae["ets"] == pytest.approx(48.4, abs=0.1)


def test_ets_sample_paths_center_on_its_forecast_spread_with_the_horizon_and_follow_the_seed():
    y = airline_passengers().astype(np.float64)[:120]
    paths = ets_paths(y, 24, 12, samples=400, seed=0)
    assert paths.shape == (400, 24)
    np.testing.assert_array_equal(paths, ets_paths(y, 24, 12, samples=400, seed=0))
    assert not np.array_equal(paths, ets_paths(y, 24, 12, samples=400, seed=1))
    forecast = forecast_baselines(["ets"], y[:, None], 24, 12)["ets"][:, 0]
    np.testing.assert_allclose(paths.mean(0), forecast, rtol=0.03)  # the point forecast is its mean
    spread = paths.std(0)
    assert spread[-1] > 2 * spread[0]  # uncertainty grows with the horizon


def test_ets_paths_are_scored_only_when_asked_and_bad_counts_are_refused():
    data = TimeSeriesDataModule("airline", window=24, horizon=24, log=True, baseline_samples=50)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert data.baseline_paths(batch)["ets"].shape == (50, 1, 24, 1)  # (S, B, h, O)
    quiet = TimeSeriesDataModule("airline", window=24, horizon=24, baseline_samples=0)
    quiet.setup("test")
    assert quiet.baseline_paths(batch) == {}
    for bad, message in ((-1, "a non-negative integer, got -1"), (1, "at least 2 sample paths")):
        with pytest.raises(ValueError, match=f"baseline_samples.*{message}"):
            TimeSeriesDataModule("airline", baseline_samples=bad)


def test_unknown_baseline_is_refused_by_name():
    with pytest.raises(ValueError, match=r"baselines: unknown \['arima'\]"):
        TimeSeriesDataModule("airline", baselines=["seasonal_naive", "arima"])


# ---------------------------------------------------------------------- data from an origin
def test_origin_windows_hold_the_context_then_the_whole_horizon_and_nothing_observed_after_it():
    dm = TimeSeriesDataModule(
        "airline", window=36, horizon=24, val_size=12, log=True, baselines=["seasonal_naive"]
    )
    dm.setup()
    y = airline_passengers()
    test = dm.splits["test"][0]
    assert test["x"].shape == (36 + 24 - 1, 3) and test["y"].shape == (59, 1)
    observed = dm.inverse_target(test["x"][:36, :1]).flatten()  # the context: v_84 .. v_119
    np.testing.assert_allclose(observed.numpy(), y[84:120], rtol=1e-5)
    targets = dm.inverse_target(test["y"][35:]).flatten()  # evaluated targets: v_120 .. v_143
    np.testing.assert_allclose(targets.numpy(), y[120:], rtol=1e-5)
    assert dm.items["test"] == [(0, 120)] and dm.series[0].date(119) == "1958-12"
    # validation: the 12 months before the test origin, from its own origin; training ends before it
    val = dm.splits["val"][0]
    np.testing.assert_allclose(dm.inverse_target(val["y"][35:]).flatten().numpy(), y[108:120], rtol=1e-5)
    last_train_target = dm.inverse_target(dm.splits["train"][len(dm.splits["train"]) - 1]["y"][-1])
    assert float(last_train_target) == pytest.approx(y[107], rel=1e-5)
    # the seasonal naive of the run is the textbook one
    np.testing.assert_allclose(
        dm.baseline_forecasts["seasonal_naive"][0, :, 0].numpy(), seasonal_naive(y[:120], 24, 12)
    )


def test_seasonal_lag_feeds_the_value_one_season_before_each_predicted_step_all_observed():
    dm = TimeSeriesDataModule(
        "airline", window=24, horizon=12, log=True, seasonal_lag=True, baselines=["seasonal_naive"]
    )
    dm.setup()
    y = airline_passengers()
    assert dm.spec.input_size == 4  # value, its seasonal lag, 2 month features
    assert dm.spec.feedback == [0] and dm.spec.seasonal_lags == [1]
    test = dm.splits["test"][0]  # input rows carry v_108 .. v_142 and predict v_109 .. v_143
    lags = dm.inverse_target(test["x"][:, 1:2]).flatten().numpy()
    np.testing.assert_allclose(lags, y[97 : 97 + 35], rtol=1e-5)  # v_(s+1-12) for each row
    assert dm.items["test"] == [(0, 132)]  # origin 1959-12: the horizon's lags are v_120 .. v_131
    # the series' first 11 steps have no value a season earlier: no window reads them
    first = dm.splits["train"][0]
    np.testing.assert_allclose(dm.inverse_target(first["x"][:, :1]).flatten(), y[11 : 11 + 35], rtol=1e-5)
    np.testing.assert_allclose(dm.inverse_target(first["x"][:, 1:2]).flatten(), y[:35], rtol=1e-5)
    assert len(dm.splits["train"]) == 120 - 35 - 11  # windows end before the validation origin 120


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 24}, r"seasonal_lag reads v_\(t\+1-m\).*horizon=24, val_size=12; use horizon"),
        ({"horizon": 12, "val_size": 18}, r"val_size=18"),
        ({"horizon": 3, "evaluation": "rolling", "window": 12, "season": 2}, r"horizon=3; use horizon"),
    ],
)
def test_seasonal_lag_is_refused_where_the_lag_would_lie_in_the_forecast_period(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimeSeriesDataModule("airline", seasonal_lag=True, **kwargs)
    with pytest.raises(ValueError, match=r"needs a season m >= 2 \(source 'sine' has m=1\)"):
        TimeSeriesDataModule("sine", seasonal_lag=True, horizon=1)


@pytest.mark.parametrize(
    ("kwargs", "on"),
    [
        ({"source": "airline", "horizon": 12}, True),  # m = 12, forecasts reach 12 steps
        ({"source": "airline", "horizon": 24}, False),  # the test horizon reaches past one season
        ({"source": "airline", "horizon": 6, "val_size": 18}, False),  # so does validation
        ({"source": "sine", "horizon": 12}, False),  # m = 1: no season
        ({"source": "airline", "horizon": 3, "evaluation": "rolling", "window": 12, "season": 4}, True),
    ],
)
def test_seasonal_lag_auto_is_on_exactly_where_the_lag_can_be_read(kwargs, on):
    dm = TimeSeriesDataModule(seasonal_lag="auto", baselines=["seasonal_naive"], **kwargs)
    assert dm.seasonal_lag is on
    dm.setup()
    assert dm.spec.seasonal_lags == ([1] if on else [])
    with pytest.raises(ValueError, match=r"seasonal_lag must be true, false or 'auto', got 'yes'"):
        TimeSeriesDataModule("airline", seasonal_lag="yes")


def test_a_series_too_short_once_its_unlagged_first_season_is_left_out_is_refused_saying_so():
    kwargs = {"window": 100, "horizon": 12, "baselines": ["seasonal_naive"]}
    TimeSeriesDataModule("airline", **kwargs).setup()  # 144 > 111 + 12 + 12 steps: fits without the lag
    with pytest.raises(ValueError, match=r"without their seasonal lag = 111 \+ 12 \+ 12 \+ 11 steps"):
        TimeSeriesDataModule("airline", seasonal_lag=True, **kwargs).setup()


def test_seasonal_lag_trains_from_the_command_line(tmp_path):
    out = tmp_path / "lag"
    run(
        "train.py",
        *QUICK,
        "data.horizon=12",
        "data.seasonal_lag=true",
        "data.baselines=[seasonal_naive]",
        "data.baseline_samples=0",
        f"hydra.run.dir={out}",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["test/mae_by_step"]) == 12 and math.isfinite(metrics["test/mae"])


def test_training_on_the_validation_period_extends_the_windows_up_to_the_test_origin():
    kwargs = {"window": 24, "horizon": 12, "val_size": 12, "log": True, "baselines": ["seasonal_naive"]}
    plain, refit = (
        TimeSeriesDataModule("airline", **kwargs),
        TimeSeriesDataModule("airline", train_on_validation=True, **kwargs),
    )
    plain.setup()
    refit.setup()
    y = airline_passengers()

    def last_target(dm):
        return float(dm.inverse_target(dm.splits["train"][len(dm.splits["train"]) - 1]["y"][-1]))

    assert last_target(plain) == pytest.approx(y[119], rel=1e-5)  # before the validation origin 1959-01
    assert last_target(refit) == pytest.approx(y[131], rel=1e-5)  # through validation, up to 1960-01
    assert len(refit.splits["train"]) == len(plain.splits["train"]) + 12
    for split in ("val", "test"):  # evaluation and normalization unchanged
        torch.testing.assert_close(refit.splits[split][0]["x"], plain.splits[split][0]["x"])


def test_origin_forecast_reads_nothing_after_the_origin_but_the_known_covariates():
    spec = DataSpec(
        input_size=3, output_size=1, feedback=[0], season=12, evaluation="origin", context=10, horizon=5
    )
    model = NextStep(spec, encoder(), ADAM).double().eval()
    x = torch.randn(2, 14, 3, dtype=D)
    batch = {"x": x, "y": torch.randn(2, 14, 1, dtype=D)}
    _, forecast, target = model.evaluate(batch)
    assert forecast.shape == (2, 5, 1) and torch.equal(target, batch["y"][:, 9:])
    changed = x.clone()
    changed[:, 10:, 0] = 1e3  # the series' own values after the origin
    torch.testing.assert_close(model.evaluate({**batch, "x": changed})[1], forecast)
    covariates = x.clone()
    covariates[:, 12:, 1] += 1.0  # a known covariate of the horizon does matter
    assert not torch.allclose(model.evaluate({**batch, "x": covariates})[1], forecast)


def test_local_level_makes_the_forecast_move_with_the_series_level():
    spec = DataSpec(input_size=2, output_size=1, feedback=[0], season=4, evaluation="origin", context=8)
    model = NextStep(spec, encoder(), ADAM, local_level=True).double().eval()
    x = torch.randn(3, 12, 2, dtype=D)
    shifted = x.clone()
    shifted[..., 0] += 5.0
    torch.testing.assert_close(model.rollout(shifted, 8), model.rollout(x, 8) + 5.0)
    batch = {"x": x, "y": torch.randn(3, 12, 1, dtype=D)}
    moved = {"x": shifted, "y": batch["y"] + 5.0}
    torch.testing.assert_close(model.loss(moved), model.loss(batch))


def test_local_level_shifts_the_seasonal_lags_with_the_fed_back_values():
    spec = DataSpec(
        input_size=3, output_size=1, feedback=[0], seasonal_lags=[1], season=4, evaluation="origin", context=8
    )
    model = NextStep(spec, encoder(), ADAM, local_level=True, residual="seasonal").double().eval()
    x = torch.randn(3, 12, 3, dtype=D)
    shifted = x.clone()
    shifted[..., :2] += 5.0  # the value and its seasonal lag are in the same units
    torch.testing.assert_close(model.rollout(shifted, 8), model.rollout(x, 8) + 5.0)
    batch = {"x": x, "y": torch.randn(3, 12, 1, dtype=D)}
    torch.testing.assert_close(model.loss({"x": shifted, "y": batch["y"] + 5.0}), model.loss(batch))


@pytest.mark.parametrize("local_level", [False, True])
def test_a_seasonal_residual_head_that_outputs_zero_forecasts_the_seasonal_naive(local_level):
    dm = TimeSeriesDataModule(
        "airline", window=24, horizon=12, log=True, seasonal_lag=True, baselines=["seasonal_naive"]
    )
    dm.setup()
    model = NextStep(dm.spec, encoder(), ADAM, residual="seasonal", local_level=local_level).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    batch = dm.splits["test"][0:1]
    with torch.no_grad():
        _, forecast, _ = model.evaluate(batch)  # (1, 12, 1) scaled: no trainer to invert it
    naive = seasonal_naive(airline_passengers()[:132], 12, 12)  # 1959 repeated for 1960
    np.testing.assert_allclose(dm.inverse_target(forecast).flatten().numpy(), naive, rtol=1e-5)


def test_residual_names_its_reference_and_a_seasonal_one_needs_the_lag_inputs():
    spec = DataSpec(input_size=2, output_size=1, feedback=[0], season=12, evaluation="origin", context=8)
    with pytest.raises(ValueError, match=r"residual='seasonal' .* set data.seasonal_lag=true"):
        NextStep(spec, encoder(), ADAM, residual="seasonal")
    with pytest.raises(ValueError, match=r"residual must be true, false, 'last' or 'seasonal', got 'yearly'"):
        NextStep(spec, encoder(), ADAM, residual="yearly")
    assert NextStep(spec, encoder(), ADAM, residual=True).residual == "last"
    assert NextStep(spec, encoder(), ADAM, residual=False).residual is None


# ---------------------------------------------------------------------- probabilistic head
def test_gaussian_head_is_trained_by_its_negative_log_likelihood_and_samples_reproducibly():
    spec = DataSpec(input_size=2, output_size=1, feedback=[0], evaluation="origin", context=6)
    model = NextStep(spec, encoder(), ADAM, distribution="normal", samples=50, nll_beta=0.0).double().eval()
    x, y = torch.randn(4, 9, 2, dtype=D), torch.randn(4, 9, 1, dtype=D)
    mean, scale, _ = model.predict_distribution(x)
    nll = 0.5 * torch.log(2 * math.pi * scale**2) + (y - mean) ** 2 / (2 * scale**2)
    torch.testing.assert_close(model.loss({"x": x, "y": y}), nll.mean())
    # beta-NLL: weighted by sigma^2beta held constant; with beta = 1 the mean gets the squared
    # error's gradient, (mean - y) / n, whatever sigma
    model.nll_beta = 1.0
    loss = model.loss({"x": x, "y": y})
    torch.testing.assert_close(loss, (nll * scale.detach() ** 2).mean())
    pred = mean.detach().requires_grad_()
    (grad,) = torch.autograd.grad(model._step_loss(pred, y, scale.detach()), pred)
    torch.testing.assert_close(grad, (pred - y).detach() / y.numel())
    with torch.no_grad():
        paths = model.sample_paths(x, 6, seed=3)
    assert paths.shape == (50, 4, 4, 1)
    torch.testing.assert_close(model.sample_paths(x, 6, seed=3), paths)
    assert not torch.allclose(model.sample_paths(x, 6, seed=4), paths)
    # the first step's draws follow the predicted N(mean, scale)
    with torch.no_grad():
        first_mean, first_scale, _ = model.predict_distribution(x[:, :6])
    z = (paths[:, :, 0] - first_mean[:, -1]) / first_scale[:, -1]
    assert abs(float(z.mean())) < 0.25 and abs(float(z.std()) - 1) < 0.2


def test_calibration_shrinks_paths_three_times_too_wide_by_about_three(monkeypatch):
    """Paths N(0, 3^2) around targets N(0, 1): the validation CRPS is smallest near c = 1/3, and the
    test's paths are scaled by it around their median."""
    spec = DataSpec(input_size=1, output_size=1, feedback=[0], evaluation="origin", context=2)
    model = NextStep(spec, encoder(), ADAM, distribution="normal", samples=400, calibrate=True).double()
    generator = torch.Generator().manual_seed(0)
    targets = torch.randn(8, 30, 1, generator=generator, dtype=D)  # 8 windows, 29 evaluated steps each

    def wide_paths(x, known, seed=0):
        noise = torch.randn(
            400, *targets[: x.shape[0], 1:].shape, generator=torch.Generator().manual_seed(seed)
        )
        return 3.0 * noise.to(D)

    class Windows:
        train_on_validation = False

        def val_dataloader(self):
            return [{"x": targets[k : k + 1], "y": targets[k : k + 1]} for k in range(8)]

        def inverse_target(self, y):
            return y

    monkeypatch.setattr(model, "sample_paths", wide_paths)
    model._trainer = type("Trainer", (), {"datamodule": Windows()})()
    factor = model.fit_spread_factor()
    assert 0.25 < factor < 0.45
    model.spread_factor = factor
    paths, _ = model._scored_paths({"x": targets[:1], "y": targets[:1]}, seed=1)
    assert float(paths.std()) == pytest.approx(3.0 * factor, rel=0.1)
    with pytest.raises(ValueError, match="calibrate scales the sample paths of a distribution"):
        NextStep(spec, encoder(), ADAM, distribution=None, calibrate=True)
    Windows.train_on_validation = True
    with pytest.raises(RuntimeError, match="validation period is held out of training"):
        model.fit_spread_factor()


def test_crps_of_a_point_forecast_is_its_absolute_error_and_of_a_gaussian_its_closed_form():
    crps = SampleCRPS()
    target = torch.tensor([1.0, -2.0])
    crps.update(torch.tensor([[3.0, 0.0]]).repeat(10, 1), target)
    assert float(crps.compute()) == pytest.approx(2.0)
    crps = SampleCRPS()
    samples = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    crps.update(samples, torch.zeros(1, dtype=D))
    closed_form = 2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)  # N(0,1) at y = 0
    assert float(crps.compute()) == pytest.approx(closed_form, abs=0.01)


def test_interval_coverage_of_calibrated_samples_is_their_level():
    generator = torch.Generator().manual_seed(1)
    samples = torch.randn(400, 2000, generator=generator)
    truth = torch.randn(2000, generator=generator)
    for level in (0.8, 0.95):
        coverage = IntervalCoverage(level)
        coverage.update(samples, truth)
        assert float(coverage.compute()) == pytest.approx(level, abs=0.03)


# ---------------------------------------------------------------------- panels
def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_bundled_panel_is_eight_quarterly_series_with_known_and_static_features():
    series = panel_file(known=["quarter"], static=["kind"])
    assert [s.name for s in series][:2] == ["cpi", "m1"] and len(series) == 8
    gdp = next(s for s in series if s.name == "realgdp")
    assert gdp.values.shape == (203, 1) and gdp.dates[0] == "1959-03-31" and gdp.dates[-1] == "2009-09-30"
    assert gdp.covariates[:4, 0].tolist() == [1, 2, 3, 4]
    assert gdp.static.tolist() == [0, 0, 0, 1]  # kind one-hot: money, population, price, real


def test_panel_series_of_different_lengths_train_one_model(tmp_path):
    rows = ["unique_id,ds,y,promo,size"]
    for name, n, size in (("a", 60, 1.0), ("b", 45, 3.0)):
        for t in range(n):
            rows.append(f"{name},{t},{10 + size * math.sin(t / 3) + 0.1 * t},{t % 2},{size}")
    path = write(tmp_path / "panel.csv", "\n".join(rows) + "\n")
    dm = TimeSeriesDataModule(
        "panel",
        window=12,
        horizon=6,
        val_size=6,
        source_kwargs={"path": path, "known": ["promo"], "static": ["size"]},
        baselines=["seasonal_naive"],
    )
    dm.setup()
    assert dm.spec.input_size == 3 and len(dm.splits["test"]) == 2
    assert dm.items["test"] == [(0, 54), (1, 39)]


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        (
            "unique_id,ds,y\na,2024-01-01,1\na,2024-02-01,\na,2024-03-01,3\na,2024-04-01,4\n",
            {},
            r"series 'a' has 1 missing value\(s\) or absent step\(s\) at \['2024-02-01'\].*interpolate",
        ),
        ("unique_id,ds,y\na,0,1\na,1,2\na,3,4\na,4,5\n", {}, r"series 'a' has 1 .* at \['2'\]"),
        ("unique_id,ds,y\na,0,1\na,1,oops\n", {}, r"line 3: column 'y' must be numeric, got 'oops'"),
        ("unique_id,ds,y\na,0,1\na,0,2\n", {}, r"line 2: series 'a' has more than one row for ds=0"),
        (
            "unique_id,ds,value\na,0,1\n",
            {},
            r"columns \['y'\] not found; the header has \['unique_id', 'ds', 'value'\]",
        ),
        (
            "unique_id,ds,y,s\na,0,1,1\na,1,2,2\n",
            {"static": ["s"]},
            r"static column 's' changes within series \['a'\]",
        ),
        (
            "unique_id,ds,y\na,0,1\na,yesterday,2\n",
            {},
            r"line 3: the time column must hold dates or integer steps",
        ),
        (
            "unique_id,ds,y\na,0,\na,1,2\na,2,3\n",
            {"missing": "interpolate"},
            r"at its start or end \(\['0'\]\)",
        ),
    ],
)
def test_bad_panels_fail_naming_the_series_line_or_column(tmp_path, body, kwargs, message):
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(ValueError, match=message):
        panel_file(path, **kwargs)


def test_missing_values_are_interpolated_when_asked(tmp_path):
    path = write(tmp_path / "gaps.csv", "unique_id,ds,y\na,0,1\na,1,\na,3,7\na,4,9\n")
    (series,) = panel_file(path, missing="interpolate")
    assert series.values[:, 0].tolist() == [1, 3, 5, 7, 9] and series.dates == ["0", "1", "2", "3", "4"]


def test_a_missing_panel_file_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source_kwargs.path: no CSV file at"):
        panel_file(str(tmp_path / "nope.csv"))


# ---------------------------------------------------------------------- command line
def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


QUICK = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=csv"]


def test_default_run_reports_the_horizon_beside_the_classical_baselines_and_draws_intervals(tmp_path):
    out = tmp_path / "run"
    run("train.py", *QUICK, "model.distribution=normal", "model.samples=20", f"hydra.run.dir={out}")
    metrics = json.loads((out / "metrics.json").read_text())
    for prefix in (
        "test/",
        "baseline/",
        "baseline_seasonal_naive_drift/",
        "baseline_holt_winters/",
        "baseline_ets/",
    ):
        assert {f"{prefix}mae", f"{prefix}mape"} <= set(metrics), prefix
    assert len(metrics["test/mae_by_step"]) == 24 and len(metrics["baseline_ets/mae_by_step"]) == 24
    assert metrics["test/origins"] == ["1958-12"]
    assert 0 <= metrics["test/coverage80"] <= metrics["test/coverage95"] <= 1 and metrics["test/crps"] > 0
    # ETS's own intervals, from its sample paths, scored alike (values of the seeded paths)
    assert metrics["baseline_ets/coverage80"] == pytest.approx(10 / 24, abs=1e-6)
    assert metrics["baseline_ets/coverage95"] == pytest.approx(23 / 24, abs=1e-6)
    assert metrics["baseline_ets/crps"] == pytest.approx(35.5, abs=0.1)
    lines = (out / "forecasts.csv").read_text().splitlines()
    assert lines[0] == "series,date,step,output,truth,forecast,q0.025,q0.1,q0.5,q0.9,q0.975," + (
        "seasonal_naive,seasonal_naive_drift,holt_winters,ets"
    )
    assert len(lines) == 25 and lines[1].startswith("airline,1959-01,1,0,360,")
    assert (out / "test_predictions.png").stat().st_size > 10_000


def test_refit_retrains_on_train_and_validation_for_the_best_epochs_and_tests_that_model(tmp_path):
    out = tmp_path / "refit"
    run("train.py", *QUICK, "trainer.max_epochs=3", "refit=true", "model.samples=20", f"hydra.run.dir={out}")
    metrics = json.loads((out / "metrics.json").read_text())
    best = sorted((out / "checkpoints").glob("epoch_*.ckpt"))[-1]
    assert metrics["refit_epochs"] == int(best.stem.split("_")[1]) + 1  # the first fit's best epoch count
    assert metrics["best_checkpoint"] is None and "test/mae" in metrics  # the refit model, as trained
    assert (out / "refit" / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(out / "refit" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] + 1 == metrics["refit_epochs"]
    assert (out / "test_predictions.png").is_file()  # the final forecast's plot, beside the run's


def test_refit_with_a_data_module_that_cannot_train_on_validation_fails_before_training(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "task=classify", "refit=true", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "refit=true needs a data module that can train on its validation period" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_backtest_runs_one_training_per_origin_and_tabulates_them(tmp_path):
    out = tmp_path / "bt"
    proc = run("backtest.py", "origins=2", *QUICK, "data.baselines=[seasonal_naive]", f"hydra.run.dir={out}")
    assert "| 1956-12 |" in proc.stdout and "| 1958-12 |" in proc.stdout and "| mean |" in proc.stdout
    table = (out / "backtest.csv").read_text().splitlines()
    assert table[0] == (
        "origin,model_mae,model_mape,model_mase,model_coverage80,model_coverage95,model_crps,"
        "seasonal_naive_mae,seasonal_naive_mape,seasonal_naive_mase"
    )
    assert [line.split(",")[0] for line in table[1:]] == ["1956-12", "1958-12", "mean"]
    # the Gaussian head's intervals are judged at every origin: coverage in [0, 1], CRPS > 0
    coverages = [[float(v) for v in line.split(",")[4:6]] for line in table[1:]]
    assert all(0 <= c80 <= c95 <= 1 for c80, c95 in coverages)
    assert all(float(line.split(",")[6]) > 0 for line in table[1:])
    assert "| origin | model coverage 80% / 95% / CRPS |" in proc.stdout
    for i in range(2):
        assert (out / f"origin_{i}" / "metrics.json").is_file()
    assert (out / "backtest.png").is_file()


@pytest.mark.slow
def test_variants_table_gives_each_metric_over_seeds_for_train_and_backtest_runs(tmp_path):
    common = ["--common", *QUICK, "data.baselines=[seasonal_naive]", "model.samples=20"]
    proc = run(
        "scripts/variants_table.py", "--seeds", "0", "1", "--out", str(tmp_path / "t"), "--variant", "h12",
        "data.horizon=12", "--metric", "mae", "coverage80", *common,
    )  # fmt: skip
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| h12 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "`data.horizon=12`" and cells[4] == "2"  # both seeds ran
    runs = [json.loads((tmp_path / "t" / "h12" / f"{s}" / "metrics.json").read_text()) for s in (0, 1)]
    for cell, key in zip(cells[2:4], ("test/mae", "test/coverage80"), strict=True):
        values = sorted(r[key] for r in runs)  # each seed's run in its own folder
        assert cell == f"{sum(values) / 2:.4f} [{values[0]:.4f}, {values[1]:.4f}]"
    proc = run(
        "scripts/variants_table.py", "--script", "backtest.py", "--seeds", "0", "--out", str(tmp_path / "b"),
        "--variant", "bt", "origins=2", "--metric", "model_coverage95", "seasonal_naive_mape", *common,
    )  # fmt: skip
    assert "| model_coverage95: median [min, max] | seasonal_naive_mape: median [min, max] |" in proc.stdout


def test_panel_trains_from_the_command_line(tmp_path):
    out = tmp_path / "panel"
    run("train.py", "data=panel", *QUICK, "data.baselines=[seasonal_naive]", f"hydra.run.dir={out}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/origins"] == ["2007-09-30"] and len(metrics["test/mae_by_step"]) == 8
    assert len((out / "forecasts.csv").read_text().splitlines()) == 1 + 8 * 8


@pytest.mark.slow
def test_airline_forecast_from_the_origin_beats_the_seasonal_naive(tmp_path):
    out = tmp_path / "airline"
    run(
        "train.py",
        "trainer.enable_progress_bar=false",
        "data.baselines=[seasonal_naive]",
        f"hydra.run.dir={out}",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/mape"] < metrics["baseline/mape"]


def test_the_public_series_of_the_forecasting_table_load_with_the_csv_defaults(tmp_path):
    """scripts/public_series.py writes each series the csv reader takes as one value column with the
    season it names, long enough for the data=csv defaults (window 24, validation 12, horizon 12)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from public_series import SERIES, write_series

    written = write_series(tmp_path)
    assert set(written) >= {"co2", "elnino", "airline", "nile", "sunspots"}  # lynx needs aeon
    for name, series in written.items():
        data = TimeSeriesDataModule(
            source="csv",
            path=str(tmp_path / f"{name}.csv"),
            source_kwargs={"columns": [series.column]},
            season=series.season,
            window=24,
            horizon=12,
            val_size=12,
            baselines=["seasonal_naive"],  # the table's runs fit the others
        )
        data.setup("fit")
        assert data.spec.output_size == 1, name
        assert len(data.train_dataloader().dataset) > 0, name
    assert SERIES["co2"].overrides(tmp_path)[:2] == [
        "data=csv",
        f"data.path={(tmp_path / 'co2.csv').resolve()}",
    ]
