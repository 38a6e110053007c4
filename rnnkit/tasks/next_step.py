"""Next-step prediction: series forecasting and symbol-sequence (language) modelling."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from tqdm.auto import trange

from rnnkit.cells.base import State
from rnnkit.data.base import DataSpec, baseline_prefix
from rnnkit.tasks.base import Factory, OptimizerFactory, SchedulerFactory, SequenceTask, encoder_width
from rnnkit.tasks.metrics import SampleCRPS, interval_metrics, series_metrics, symbol_metrics


class NextStep(SequenceTask):
    r"""Predict step t+1 from steps up to t (the lecture's "sequence prediction").

    Training uses teacher forcing: input step t carries the true v_t. Validation and test forecast
    by autoregressive rollout: the encoder reads the observed part of a window, then the model feeds
    its own predictions back into the ``feedback`` input features, with the known covariates still read
    from the data. From an origin (``spec.evaluation == "origin"``) every step of the horizon is
    evaluated; rolling, the last target of each window, ``horizon`` steps ahead.

    **Probabilistic forecasts** (``distribution="normal"``): the head gives the mean mu_{t+1} and the
    scale sigma_{t+1} of a Gaussian over the next scaled value, trained by its negative
    log-likelihood weighted by sigma^(2 beta), the weight held constant (beta-NLL, Seitzer et al. 2022):
    beta = 0 is the plain NLL, whose gradient for the mean is divided by sigma^2 and lets the mean fit
    badly where the model claims a large spread; beta = 1 (the default) gives the mean the squared
    error's gradient while sigma still converges to the spread of the residuals (the stationary points
    of the NLL are kept). Gaussian because the series are standardized (and logged where multiplicative,
    which makes the interval lognormal in original units), one step's noise is close to normal there,
    and two numbers per step keep the head as cheap as the point head; the shape of a multi-step
    forecast still comes out free, from ``samples`` Monte Carlo paths that feed each sampled value
    back (as DeepAR does). Intervals are the paths' quantiles (80%: q0.1-q0.9, 95%: q0.025-q0.975);
    metrics: their coverage and the CRPS of the paths. The point forecast, which the default metrics
    judge, is the rollout of the means.

    Series (regression): y^_{t+1} = head(h_t) + r_{t+1}, where the head predicts the change from a
    reference r_{t+1} that the input holds (``residual``): v_t, the last value (the default), or
    v_{t+1-m}, the value one season earlier (``"seasonal"``: the head predicts the growth over the
    season, so a head that outputs 0 is the seasonal naive forecast); no reference with
    ``residual=False``. MSE loss, metrics MAE, RMSE, sMAPE, MASE in original units.
    Symbols (classification): logits of the next symbol, cross-entropy loss, metrics cross-entropy,
    perplexity, next-symbol accuracy and the legal-set string accuracy.

    Batches: ``x (B, T, F)``, ``y (B, T, O)`` (series) or ``y (B, T, 1 + V)`` long (symbols: the next
    symbol or -100, then the legal next symbols).

    Args (besides :class:`SequenceTask`'s):
        residual: series only; ``True`` or ``"last"``: predict v_{t+1} - v_t and add v_t back;
            ``"seasonal"``: predict v_{t+1} - v_{t+1-m} and add v_{t+1-m} back, read from the inputs
            that the data names in ``spec.seasonal_lags`` (``data.seasonal_lag=true``); ``False``: the
            head predicts v_{t+1} itself.
        teacher_forcing: series only; the probability, drawn per time step of a training batch, that
            input step t carries the true v_t. Otherwise it carries the model's own prediction of
            v_t made at step t-1 (closed loop, seed 001's "use the dx from the previous step"), and
            the gradient flows through that fed-back prediction into the steps that made it. 1.0
            (default) is plain teacher forcing in one parallel pass; 0.0 trains fully closed-loop.
        teacher_forcing_end: if set, the probability moves linearly from ``teacher_forcing`` at the
            first epoch to this value at the last (``trainer.max_epochs``): scheduled sampling.
        distribution: series only; ``None`` (point forecasts, MSE loss) or ``"normal"`` (above).
        local_level: series only; subtract from the fed-back values (and the seasonal lags, which are
            in the same units) and the targets of each window its level, the mean of its first m
            observed values (m the season, 1 without one), and add it back to the forecasts (a
            reversible instance normalization). The network then sees every window at the same
            level, so a trending series does not push it outside the range of values it was trained
            on.
        samples: sample paths per forecast with a distribution.
        nll_beta: the beta of the beta-NLL loss (above), in [0, 1].
        calibrate: with a distribution, before testing fit one factor c that scales every sample
            path's deviation from the paths' median (in the model's scaled units), v -> m + c (v - m),
            by the smallest CRPS on the validation windows (c on a grid from 1/8 to 8); the test's
            intervals and CRPS use the scaled paths and ``test/spread_factor`` records c. The head's
            scale is fitted to one-step residuals in training, while a forecast compounds many
            steps: one number learnt on data the model did not train on (not with ``refit``).
    """

    QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)

    def __init__(
        self,
        spec: DataSpec,
        encoder: Factory,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        tbptt_steps: int = 0,
        gradient_clip_val: float = 0.0,
        nonfinite: str = "stop",
        residual: bool | str = True,
        teacher_forcing: float = 1.0,
        teacher_forcing_end: float | None = None,
        distribution: str | None = None,
        samples: int = 200,
        local_level: bool = False,
        nll_beta: float = 1.0,
        calibrate: bool = False,
    ) -> None:
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        self.encoder = self.build_encoder(spec.input_size)
        if getattr(self.encoder, "num_directions", 1) != 1:
            raise ValueError(
                "NextStep predicts from the past only: model.encoder.bidirectional must be false"
            )
        if distribution not in (None, "normal"):
            raise ValueError(f"distribution must be null or 'normal', got {distribution!r}")
        if distribution is not None and spec.classification:
            raise ValueError("distribution is for series; symbol tasks already predict a distribution")
        if not isinstance(samples, int) or samples < 2:
            raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
        if not 0 <= nll_beta <= 1:
            raise ValueError(f"nll_beta must lie in [0, 1], got {nll_beta}")
        self.distribution = distribution
        self.samples = samples
        self.nll_beta = nll_beta
        if calibrate and distribution is None:
            raise ValueError("calibrate scales the sample paths of a distribution: set model.distribution")
        self.calibrate = calibrate
        self.spread_factor = 1.0
        if local_level and (spec.classification or not spec.feedback):
            raise ValueError(
                "local_level shifts a series' own values: it needs a series with feedback features"
            )
        self.local_level = local_level
        self.head = nn.Linear(encoder_width(self.encoder), spec.output_size * (2 if distribution else 1))
        if residual not in (True, False, "last", "seasonal"):
            raise ValueError(f"residual must be true, false, 'last' or 'seasonal', got {residual!r}")
        self.residual = {True: "last", False: None}.get(residual, residual)
        if spec.classification:
            self.residual = None
        seasonal_lags = list(getattr(spec, "seasonal_lags", []))
        reference = {"last": spec.feedback, "seasonal": seasonal_lags, None: []}[self.residual]
        if self.residual == "seasonal" and not seasonal_lags:
            raise ValueError(
                "residual='seasonal' adds back v_(t+1-m), which the inputs do not carry: set "
                "data.seasonal_lag=true"
            )
        if self.residual and len(reference) != spec.output_size:
            raise ValueError(
                f"residual={residual!r} needs one reference input per output: got {len(reference)} for "
                f"{spec.output_size} outputs"
            )
        self.register_buffer(
            "feedback_index", torch.tensor(spec.feedback, dtype=torch.long), persistent=False
        )
        self.register_buffer("reference_index", torch.tensor(reference, dtype=torch.long), persistent=False)
        # inputs in the series' own units, which local_level shifts: fed-back values and seasonal lags
        self.register_buffer(
            "level_index", torch.tensor(spec.feedback + seasonal_lags, dtype=torch.long), persistent=False
        )
        for name, value in (
            ("teacher_forcing", teacher_forcing),
            ("teacher_forcing_end", teacher_forcing_end),
        ):
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        closed = teacher_forcing < 1 or (teacher_forcing_end is not None and teacher_forcing_end < 1)
        if closed and (spec.classification or not spec.feedback):
            raise ValueError(
                "teacher_forcing < 1 feeds predictions back into the series' own input features: it needs a "
                "series task with feedback features (symbol tasks and series without feedback cannot)"
            )
        if closed and tbptt_steps:
            raise ValueError("teacher_forcing < 1 runs step by step: set tbptt_steps to 0")
        self.teacher_forcing = teacher_forcing
        self.teacher_forcing_end = teacher_forcing_end
        self.baseline_interval_metrics = nn.ModuleDict()  # baselines with sample paths (ETS), in test

    def metrics(self) -> MetricCollection:
        if self.spec.classification:
            return symbol_metrics(getattr(self.spec, "legal_next", False))
        return series_metrics(self.spec.mase_scale)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.distribution and not hasattr(self, "test_interval_metrics"):
            self.test_interval_metrics = interval_metrics().clone(prefix="test/")

    def predict_distribution(
        self, x: Tensor, state: State | None = None
    ) -> tuple[Tensor, Tensor | None, State]:
        """``x (B, T, F)`` -> the means ``(B, T, O)`` of steps 1..T, their scales ``(B, T, O)`` (None for
        a point head) and the final state."""
        out, state = self.encoder(x, state)
        raw = self.head(out)  # (B, T, O) or (B, T, 2O)
        outputs = self.spec.output_size
        mean, scale = raw[..., :outputs], None
        if self.residual:
            mean = mean + x.index_select(-1, self.reference_index)  # + v_t or v_{t+1-m}
        if self.distribution:
            scale = F.softplus(raw[..., outputs:]) + 1e-4
        return mean, scale, state

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x (B, T, F)`` -> predictions (the means) for steps 1..T ``(B, T, O)`` and the final state."""
        mean, _, state = self.predict_distribution(x, state)
        return mean, state

    def level(self, x: Tensor) -> Tensor | None:
        """A window's level ``(B, 1, O)`` with ``local_level`` (else None): the mean of the fed-back
        values of its first m input steps, all observed in training and evaluation windows alike."""
        if not self.local_level:
            return None
        steps = max(1, min(self.spec.season, x.shape[1]))
        return x[:, :steps].index_select(-1, self.feedback_index).mean(1, keepdim=True)

    def _relative(self, x: Tensor, level: Tensor | None) -> Tensor:
        """``x`` with the level taken off its fed-back features and seasonal lags."""
        if level is None:
            return x
        repeats = len(self.level_index) // len(self.feedback_index)  # 1, or 2 with seasonal lags
        shifted = x.index_select(-1, self.level_index) - level.to(x.dtype).repeat(1, 1, repeats)
        return x.index_copy(-1, self.level_index, shifted)

    def _relative_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """A training batch's inputs and targets relative to each window's level (unchanged without
        ``local_level``)."""
        level = self.level(batch["x"])
        y = batch["y"] if level is None else batch["y"] - level.to(batch["y"].dtype)
        return self._relative(batch["x"], level), y

    def rollout(self, x: Tensor, known: int, generator: torch.Generator | None = None) -> Tensor:
        """Autoregressive forecast (see :meth:`_rollout`), relative to each window's level with
        ``local_level``."""
        level = self.level(x)
        path = self._rollout(self._relative(x, level), known, generator)
        return path if level is None else path + level.to(path.dtype)

    def _rollout(self, x: Tensor, known: int, generator: torch.Generator | None = None) -> Tensor:
        """Autoregressive forecast: read ``x[:, :known]``, then feed each prediction back into the next
        input step's feedback features (the known covariates still come from ``x``). Returns the
        predictions of the targets of steps known-1 .. T-1, ``(B, T - known + 1, O)``. With a
        ``generator`` the fed-back and returned values are draws from the predicted distribution
        (one sample path per row) instead of its means."""
        mean, scale, state = self.predict_distribution(x[:, :known])
        last = self._draw(mean[:, -1], None if scale is None else scale[:, -1], generator)  # (B, O)
        path = [last]
        for t in range(known, x.shape[1]):
            step = x[:, t : t + 1].clone()  # (B, 1, F) known covariates of step t
            step[..., self.feedback_index] = last.unsqueeze(1).to(step.dtype)  # own output fed back
            mean, scale, state = self.predict_distribution(step, state)
            last = self._draw(mean[:, -1], None if scale is None else scale[:, -1], generator)
            path.append(last)
        return torch.stack(path, dim=1)

    @staticmethod
    def _draw(mean: Tensor, scale: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if generator is None or scale is None:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device="cpu").to(mean.device)
        return mean + scale * noise

    def forecast(self, x: Tensor, horizon: int) -> Tensor:
        """Forecast the target of the last step of each window, ``horizon`` steps ahead: ``(B, O)``."""
        return self.rollout(x, x.shape[1] - horizon + 1)[:, -1]

    def sample_paths(self, x: Tensor, known: int, seed: int = 0) -> Tensor:
        """``samples`` Monte Carlo forecast paths per row, ``(S, B, T - known + 1, O)`` (scaled),
        reproducible for a given seed."""
        generator = torch.Generator().manual_seed(seed)
        repeated = x.repeat(self.samples, 1, 1)  # (S*B, T, F), sample-major
        paths = self.rollout(repeated, known, generator)
        return paths.view(self.samples, x.shape[0], *paths.shape[1:])

    @torch.no_grad()
    def generate(
        self,
        prompt: Sequence[int],
        length: int,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
        exclude: Sequence[int] = (),
        progress: bool = False,
    ) -> list[int]:
        """Sample ``length`` symbols after ``prompt`` (symbol ids) from a symbol model: the prompt is
        read, then each drawn symbol is fed back. At every step the next symbol is drawn from
        softmax(logits / ``temperature``) restricted to the ``top_k`` most probable (0: all) and never
        one of ``exclude`` (e.g. the special tokens). Reproducible with a seeded CPU ``generator``.
        Returns the ``length`` drawn ids."""
        if not self.spec.classification:
            raise ValueError("generate samples symbols: the model must be of a symbol task (task=language)")
        vocab_size = self.spec.input_size
        if len(prompt) == 0:
            raise ValueError("prompt: needs at least one symbol to start from")
        bad = [i for i in prompt if not 0 <= int(i) < vocab_size]
        if bad:
            raise ValueError(f"prompt: symbol ids must lie in [0, {vocab_size}), got {bad[:5]}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0: no limit), got {top_k!r}")
        device = self.head.weight.device
        ids = torch.tensor([int(i) for i in prompt], device=device)
        logits, state = self(F.one_hot(ids, vocab_size).float()[None], None)  # (1, P, V)
        banned = torch.zeros(logits.shape[-1], dtype=torch.bool)
        banned[list(exclude)] = True
        drawn: list[int] = []
        for _ in trange(length, desc="sampling", disable=not progress, leave=False):
            scores = (logits[0, -1].float().cpu() / temperature).masked_fill(banned, float("-inf"))  # (V,)
            if 0 < top_k < int((~banned).sum()):
                kth = scores.topk(top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            symbol = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
            drawn.append(symbol)
            step = F.one_hot(torch.tensor([symbol], device=device), vocab_size).float()[None]  # (1, 1, V)
            logits, state = self(step, state)
        return drawn

    def _step_loss(self, pred: Tensor, y: Tensor, scale: Tensor | None = None) -> Tensor:
        if self.spec.classification:
            return F.cross_entropy(pred.flatten(0, 1), y[..., 0].flatten(), ignore_index=-100)
        if scale is not None:
            nll = F.gaussian_nll_loss(pred, y, scale.square(), full=True, reduction="none")
            if self.nll_beta:
                nll = nll * scale.detach() ** (2 * self.nll_beta)
            return nll.mean()
        return F.mse_loss(pred, y)

    def closed_loop(self, x: Tensor, teacher_forcing: float) -> tuple[Tensor, Tensor | None]:
        """Predictions ``(B, T, O)`` (and scales, or None) where each input step t > 0 carries, with
        probability ``1 - teacher_forcing``, the model's own prediction of v_t (its mean) instead of
        v_t, gradient kept."""
        state, preds, scales, previous = None, [], [], None
        for t in range(x.shape[1]):
            step = x[:, t : t + 1]  # (B, 1, F)
            if previous is not None and not bool(torch.rand(()) < teacher_forcing):
                own = previous.unsqueeze(1).to(step.dtype)  # (B, 1, O): the prediction of v_t
                step = step.index_copy(-1, self.feedback_index, own)  # out of place: differentiable
            pred, scale, state = self.predict_distribution(step, state)
            previous = pred[:, 0]
            preds.append(previous)
            scales.append(scale)
        return torch.stack(preds, dim=1), None if self.distribution is None else torch.cat(scales, dim=1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        teacher_forcing = self.current_teacher_forcing()
        x, y = self._relative_batch(batch)
        if teacher_forcing >= 1:
            pred, scale, state = self.predict_distribution(x, self.carried_state("train"))
            self.carry("train", state)
        else:
            pred, scale = self.closed_loop(x, teacher_forcing)
        return self._step_loss(pred, y, scale)

    def time_chunks(self, batch: dict[str, Tensor], steps: int) -> Iterator[dict[str, Tensor]]:
        x, y = self._relative_batch(batch)
        for start in range(0, x.shape[1], steps):
            yield {"x": x[:, start : start + steps], "y": y[:, start : start + steps]}

    def chunk_loss(self, chunk: dict[str, Tensor], state: State | None) -> tuple[Tensor | None, State]:
        pred, scale, state = self.predict_distribution(chunk["x"], state)
        if self.spec.classification and bool((chunk["y"][..., 0] == -100).all()):
            return None, state  # only padding in this chunk
        return self._step_loss(pred, chunk["y"], scale), state

    def _known(self, x: Tensor) -> int:
        """Observed input steps of an evaluation window: the context before the origin, or all but the
        last h-1 when rolling."""
        if getattr(self.spec, "evaluation", "rolling") == "origin":
            return self.spec.context
        return x.shape[1] - getattr(self.spec, "horizon", 1) + 1

    def _evaluated(self, values: Tensor) -> Tensor:
        """The evaluated part of a rollout ``(..., B, steps, O)``: every step from an origin, else the
        last."""
        return values if getattr(self.spec, "evaluation", "rolling") == "origin" else values[..., -1, :]

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if self.spec.classification:
            logits, state = self(batch["x"], self.carried_state("eval"))  # (B, T, V)
            self.carry("eval", state)
            return self._step_loss(logits, batch["y"]), logits, batch["y"]
        known = self._known(batch["x"])
        forecast = self._evaluated(self.rollout(batch["x"], known))  # (B, h, O) or (B, O), scaled
        target = self._evaluated(batch["y"][:, known - 1 :])
        loss = F.mse_loss(forecast, target)
        inverse = self._inverse
        return loss, inverse(forecast), inverse(target)

    # ------------------------------------------------------------------ probabilistic test outputs
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_quantiles: list[Tensor] = []
        self.test_report: dict[str, list[float]] = {}
        if self.calibrate:
            self.spread_factor = self.fit_spread_factor()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._score_baseline_paths(batch)
        if not self.distribution:
            return
        paths, target = self._scored_paths(batch, seed=batch_idx)
        self.test_interval_metrics.update(paths, target)
        levels = torch.tensor(self.QUANTILES, dtype=paths.dtype, device=paths.device)
        self.test_quantiles.append(torch.quantile(paths, levels, dim=0).movedim(0, -1).cpu())  # (..., Q)

    def _paths_and_target(self, batch: dict[str, Tensor], seed: int) -> tuple[Tensor, Tensor]:
        """Sample paths ``(S, B, ..., O)`` of a batch's evaluated steps in the model's scaled units,
        and the targets in original units."""
        known = self._known(batch["x"])
        paths = self._evaluated(self.sample_paths(batch["x"], known, seed=seed))
        return paths, self._inverse(self._evaluated(batch["y"][:, known - 1 :]))

    def _scored_paths(self, batch: dict[str, Tensor], seed: int) -> tuple[Tensor, Tensor]:
        """The paths the test scores, their spread scaled by :attr:`spread_factor`, and the targets,
        both in original units."""
        paths, target = self._paths_and_target(batch, seed)
        return self._inverse(self._spread(paths, self.spread_factor)), target

    @staticmethod
    def _spread(paths: Tensor, factor: float) -> Tensor:
        """Sample paths ``(S, ...)`` with their deviation from the median scaled by ``factor``."""
        if factor == 1.0:
            return paths
        median = paths.median(dim=0, keepdim=True).values
        return median + factor * (paths - median)

    @torch.no_grad()
    def fit_spread_factor(self) -> float:
        """The factor of ``calibrate`` (see the class docstring): the smallest validation CRPS."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "train_on_validation", False):
            raise RuntimeError(
                "calibrate fits its factor on the validation windows: it needs a data module whose "
                "validation period is held out of training (not refit=true)"
            )
        batches = [{k: v.to(self.device) for k, v in batch.items()} for batch in datamodule.val_dataloader()]
        scored = [self._paths_and_target(b, seed=10_000 + i) for i, b in enumerate(batches)]
        best, best_crps = 1.0, float("inf")
        for factor in torch.logspace(-3, 3, 49, base=2).tolist():
            crps = SampleCRPS().to(self.device)
            for paths, target in scored:
                crps.update(self._inverse(self._spread(paths, factor)), target)
            value = float(crps.compute())
            if value < best_crps:
                best, best_crps = factor, value
        return best

    def _score_baseline_paths(self, batch: dict[str, Tensor]) -> None:
        """The interval metrics of the data's baselines that come with sample paths (ETS), beside
        their point metrics: ``baseline_<name>/coverage80``, ``coverage95``, ``crps``."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "baseline_paths"):
            return
        known = self._known(batch["x"])
        target = self._inverse(self._evaluated(batch["y"][:, known - 1 :]))
        for name, paths in datamodule.baseline_paths(batch).items():
            if name not in self.baseline_interval_metrics:
                prefix = baseline_prefix(list(datamodule.baseline_names).index(name), name)
                self.baseline_interval_metrics[name] = interval_metrics().clone(prefix=prefix).to(self.device)
            self.baseline_interval_metrics[name].update(self._evaluated(paths.to(target.dtype)), target)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        for collection in self.baseline_interval_metrics.values():
            self.log_dict(collection.compute())
        self.baseline_interval_metrics.clear()
        if self.calibrate:
            self.log("test/spread_factor", self.spread_factor)
        if self.distribution:
            self.log_dict(self.test_interval_metrics.compute())
            self.test_interval_metrics.reset()
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "forecast_report") and self.test_predictions:
            self.test_report = datamodule.forecast_report(torch.cat(self.test_predictions))

    def test_quantile_forecasts(self) -> dict[float, Tensor]:
        """The last test run's forecast quantiles in original units, by level (empty without a
        distribution)."""
        if not getattr(self, "test_quantiles", None):
            return {}
        stacked = torch.cat(self.test_quantiles)
        return {level: stacked[..., q] for q, level in enumerate(self.QUANTILES)}

    def baseline_prediction(self, batch: dict[str, Tensor], raw: Tensor) -> Tensor:
        """The series DataModule hands its baselines over in original units already."""
        return raw

    def _inverse(self, y: Tensor) -> Tensor:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return y if datamodule is None else datamodule.inverse_target(y)
