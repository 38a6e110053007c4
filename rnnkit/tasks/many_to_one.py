"""Many-to-one: a sequence to one class or value."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from rnnkit.cells.base import State
from rnnkit.data.base import DataSpec
from rnnkit.tasks.base import Factory, OptimizerFactory, SchedulerFactory, SequenceTask, encoder_width
from rnnkit.tasks.metrics import class_metrics, regression_metrics
from rnnkit.tasks.summary import POOLS, last_valid_step, pool_over_time

__all__ = ["ManyToOne", "last_valid_step"]


class ManyToOne(SequenceTask):
    r"""Sequence classification or regression (the lecture's "sequence classification").

    The encoder reads x_1..x_T (padded batches carry ``lengths``); its outputs are pooled over each
    sequence's *valid* steps into one summary s, by default the output at the last valid step (both
    ends for a bidirectional encoder): s = h_{len}; the head maps it to the prediction: y^ = head(s).
    With a convolutional branch c (:class:`~rnnkit.tasks.summary.ConvBranch`) read beside the
    encoder, the head reads both: y^ = head([s ; c(x)]) (LSTM-FCN's layout, with any cell).
    Cross-entropy for classes (metrics accuracy, macro F1), MSE for values (metrics MSE, MAE).

    Batches: ``x (B, T, F)``, ``y (B,)`` class ids or ``(B, O)`` values, optional ``lengths (B,)``.

    Args (besides :class:`SequenceTask`'s):
        head_hidden: width of a hidden layer in the head (0: a linear head).
        pool: how the encoder's outputs become s: ``"last"`` (the last valid step), ``"mean"`` or
            ``"max"`` over the valid steps.
        conv: factory of a convolutional branch, called with ``input_size`` (``_partial_`` in
            configs; None: none): a module ``(x (B, T, F), lengths) -> (B, output_size)``.
        summary_dropout: dropout on the recurrent summary s before the head (LSTM-FCN uses 0.8).
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
        head_hidden: int = 0,
        pool: str = "last",
        conv: Factory | None = None,
        summary_dropout: float = 0.0,
    ) -> None:
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}, got {pool!r}")
        if not 0 <= summary_dropout < 1:
            raise ValueError(f"summary_dropout must lie in [0, 1), got {summary_dropout}")
        if tbptt_steps and (pool != "last" or conv is not None):
            raise ValueError(
                f"tbptt_steps needs pool='last' and no conv branch (they read the whole sequence at once), "
                f"got pool={pool!r}, conv={'set' if conv is not None else None}"
            )
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        self.encoder = self.build_encoder(spec.input_size)
        self.num_directions = getattr(self.encoder, "num_directions", 1)
        self.pool = pool
        self.conv = None if conv is None else conv(input_size=spec.input_size)
        self.summary_dropout = nn.Dropout(summary_dropout)
        width = encoder_width(self.encoder) + (0 if self.conv is None else self.conv.output_size)
        if head_hidden:
            self.head = nn.Sequential(
                nn.Linear(width, head_hidden), nn.Tanh(), nn.Linear(head_hidden, spec.output_size)
            )
        else:
            self.head = nn.Linear(width, spec.output_size)

    def metrics(self) -> MetricCollection:
        return class_metrics(self.spec.output_size) if self.spec.classification else regression_metrics()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x (B, T, F)`` -> logits or values ``(B, O)``."""
        out, _ = self.encoder(x, lengths=lengths)  # (B, T, D*H)
        summary = self.summary_dropout(pool_over_time(out, lengths, self.pool, self.num_directions))
        if self.conv is not None:
            summary = torch.cat([summary, self.conv(x, lengths)], dim=-1)  # (B, D*H + C)
        return self.head(summary)

    def _loss(self, pred: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(pred, y) if self.spec.classification else F.mse_loss(pred, y)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self._loss(self(batch["x"], batch.get("lengths")), batch["y"])

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        pred = self(batch["x"], batch.get("lengths"))
        return self._loss(pred, batch["y"]), pred, batch["y"]

    def time_chunks(self, batch: dict[str, Tensor], steps: int) -> Iterator[dict[str, Tensor]]:
        lengths = batch.get("lengths")
        if lengths is not None and bool((lengths != lengths[0]).any()):
            raise ValueError("ManyToOne with tbptt_steps needs sequences of one length; got varying lengths")
        if self.num_directions != 1:
            raise ValueError("tbptt_steps needs a one-way encoder: model.encoder.bidirectional must be false")
        total = batch["x"].shape[1]
        for start in range(0, total, steps):
            yield {"x": batch["x"][:, start : start + steps], "y": batch["y"], "last": start + steps >= total}

    def chunk_loss(self, chunk: dict[str, Tensor], state: State | None) -> tuple[Tensor | None, State]:
        out, state = self.encoder(chunk["x"], state)
        if not chunk["last"]:
            return None, state
        return self._loss(self.head(self.summary_dropout(out[:, -1])), chunk["y"]), state
