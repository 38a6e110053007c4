"""Next-step prediction: series forecasting and symbol-sequence (language) modelling."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from rnnkit.cells.base import State
from rnnkit.data.base import DataSpec
from rnnkit.tasks.base import Factory, OptimizerFactory, SchedulerFactory, SequenceTask, encoder_width
from rnnkit.tasks.metrics import series_metrics, symbol_metrics


class NextStep(SequenceTask):
    r"""Predict step t+1 from steps up to t (the lecture's "sequence prediction").

    Training uses teacher forcing: input step t carries the true v_t. Validation and test forecast
    the last target of each window ``horizon`` steps ahead: the encoder reads the known part, then
    the model feeds its own predictions back into the ``feedback`` input features (an
    autoregressive rollout), with the known covariates still read from the data.

    Series (regression): y^_{t+1} = head(h_t) (+ v_t with ``residual``: the head predicts the change),
    MSE loss, metrics MAE, RMSE, sMAPE, MASE in original units.
    Symbols (classification): logits of the next symbol, cross-entropy loss, metrics cross-entropy,
    perplexity, next-symbol accuracy and the legal-set string accuracy.

    Batches: ``x (B, T, F)``, ``y (B, T, O)`` (series) or ``y (B, T, 1 + V)`` long (symbols: the next
    symbol or -100, then the legal next symbols).

    Args (besides :class:`SequenceTask`'s):
        residual: series only; predict v_{t+1} - v_t and add v_t back.
        teacher_forcing: series only; the probability, drawn per time step of a training batch, that
            input step t carries the true v_t. Otherwise it carries the model's own prediction of
            v_t made at step t-1 (closed loop, seed 001's "use the dx from the previous step"), and
            the gradient flows through that fed-back prediction into the steps that made it. 1.0
            (default) is plain teacher forcing in one parallel pass; 0.0 trains fully closed-loop.
        teacher_forcing_end: if set, the probability moves linearly from ``teacher_forcing`` at the
            first epoch to this value at the last (``trainer.max_epochs``): scheduled sampling.
    """

    def __init__(
        self,
        spec: DataSpec,
        encoder: Factory,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        tbptt_steps: int = 0,
        gradient_clip_val: float = 0.0,
        nonfinite: str = "stop",
        residual: bool = True,
        teacher_forcing: float = 1.0,
        teacher_forcing_end: float | None = None,
    ) -> None:
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        self.encoder = self.build_encoder(spec.input_size)
        if getattr(self.encoder, "num_directions", 1) != 1:
            raise ValueError(
                "NextStep predicts from the past only: model.encoder.bidirectional must be false"
            )
        self.head = nn.Linear(encoder_width(self.encoder), spec.output_size)
        self.residual = residual and not spec.classification
        if self.residual and len(spec.feedback) != spec.output_size:
            raise ValueError(
                f"residual=True needs one feedback feature per output: got {len(spec.feedback)} feedback "
                f"features for {spec.output_size} outputs"
            )
        self.register_buffer(
            "feedback_index", torch.tensor(spec.feedback, dtype=torch.long), persistent=False
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

    def metrics(self) -> MetricCollection:
        return symbol_metrics() if self.spec.classification else series_metrics(self.spec.mase_scale)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x (B, T, F)`` -> predictions for steps 1..T ``(B, T, O)`` and the final state."""
        out, state = self.encoder(x, state)
        pred = self.head(out)
        if self.residual:
            pred = pred + x.index_select(-1, self.feedback_index)
        return pred, state

    def forecast(self, x: Tensor, horizon: int) -> Tensor:
        """Forecast the target of the last step of each window, ``horizon`` steps ahead: ``(B, O)``."""
        known = x.shape[1] - horizon + 1
        pred, state = self(x[:, :known])
        last = pred[:, -1]  # (B, O)
        for t in range(known, x.shape[1]):
            step = x[:, t : t + 1].clone()  # (B, 1, F) known covariates of step t
            step[..., self.feedback_index] = last.unsqueeze(1).to(step.dtype)  # own output fed back
            pred, state = self(step, state)
            last = pred[:, -1]
        return last

    def _step_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.spec.classification:
            return F.cross_entropy(pred.flatten(0, 1), y[..., 0].flatten(), ignore_index=-100)
        return F.mse_loss(pred, y)

    def closed_loop(self, x: Tensor, teacher_forcing: float) -> Tensor:
        """Predictions ``(B, T, O)`` where each input step t > 0 carries, with probability
        ``1 - teacher_forcing``, the model's own prediction of v_t instead of v_t (gradient kept)."""
        state, preds, previous = None, [], None
        for t in range(x.shape[1]):
            step = x[:, t : t + 1]  # (B, 1, F)
            if previous is not None and not bool(torch.rand(()) < teacher_forcing):
                own = previous.unsqueeze(1).to(step.dtype)  # (B, 1, O): the prediction of v_t
                step = step.index_copy(-1, self.feedback_index, own)  # out of place: differentiable
            pred, state = self(step, state)
            previous = pred[:, 0]
            preds.append(previous)
        return torch.stack(preds, dim=1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        teacher_forcing = self.current_teacher_forcing()
        if teacher_forcing >= 1:
            pred, _ = self(batch["x"])
        else:
            pred = self.closed_loop(batch["x"], teacher_forcing)
        return self._step_loss(pred, batch["y"])

    def time_chunks(self, batch: dict[str, Tensor], steps: int) -> Iterator[dict[str, Tensor]]:
        for start in range(0, batch["x"].shape[1], steps):
            yield {"x": batch["x"][:, start : start + steps], "y": batch["y"][:, start : start + steps]}

    def chunk_loss(self, chunk: dict[str, Tensor], state: State | None) -> tuple[Tensor | None, State]:
        pred, state = self(chunk["x"], state)
        if self.spec.classification and bool((chunk["y"][..., 0] == -100).all()):
            return None, state  # only padding in this chunk
        return self._step_loss(pred, chunk["y"]), state

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if self.spec.classification:
            logits, _ = self(batch["x"])  # (B, T, V)
            return self._step_loss(logits, batch["y"]), logits, batch["y"]
        horizon = getattr(self.spec, "horizon", 1)
        forecast = self.forecast(batch["x"], horizon)  # (B, O), scaled
        target = batch["y"][:, -1]
        loss = F.mse_loss(forecast, target)
        inverse = self._inverse
        return loss, inverse(forecast), inverse(target)

    def baseline_prediction(self, batch: dict[str, Tensor], raw: Tensor) -> Tensor:
        return raw if self.spec.classification else self._inverse(raw)

    def _inverse(self, y: Tensor) -> Tensor:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return y if datamodule is None else datamodule.inverse_target(y)
