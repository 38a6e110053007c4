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


def last_valid_step(out: Tensor, lengths: Tensor | None, num_directions: int) -> Tensor:
    """The summary of each sequence from a ``(B, T, D*O)`` output: the forward direction's output at
    its last valid step (``lengths - 1``), and the reverse direction's at step 0 (where it ends)."""
    batch = out.shape[0]
    if lengths is None:
        forward = out[:, -1]
    else:
        forward = out[torch.arange(batch, device=out.device), lengths.to(out.device) - 1]  # (B, D*O)
    if num_directions == 1:
        return forward
    width = out.shape[-1] // num_directions
    return torch.cat([forward[:, :width], out[:, 0, width:]], dim=-1)


class ManyToOne(SequenceTask):
    r"""Sequence classification or regression (the lecture's "sequence classification").

    The encoder reads x_1..x_T (padded batches carry ``lengths``); the head reads the output at the
    last *valid* step of each sequence (both ends for a bidirectional encoder):
    y^ = head(h_{len}). Cross-entropy for classes (metrics accuracy, macro F1), MSE for values
    (metrics MSE, MAE).

    Batches: ``x (B, T, F)``, ``y (B,)`` class ids or ``(B, O)`` values, optional ``lengths (B,)``.

    Args (besides :class:`SequenceTask`'s):
        head_hidden: width of a hidden layer in the head (0: a linear head).
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
    ) -> None:
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        self.encoder = self.build_encoder(spec.input_size)
        self.num_directions = getattr(self.encoder, "num_directions", 1)
        width = encoder_width(self.encoder)
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
        out, _ = self.encoder(x, lengths=lengths)
        return self.head(last_valid_step(out, lengths, self.num_directions))

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
        return self._loss(self.head(out[:, -1]), chunk["y"]), state
