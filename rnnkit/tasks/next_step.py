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

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        pred, _ = self(batch["x"])
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
