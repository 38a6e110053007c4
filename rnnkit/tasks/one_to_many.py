"""One-to-many: one vector to a sequence, the decoder feeding back its own output."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from rnnkit.data.base import DataSpec
from rnnkit.data.tokens import BOS, PAD
from rnnkit.tasks.base import Factory, OptimizerFactory, SchedulerFactory, SequenceTask, encoder_width
from rnnkit.tasks.decoding import feedback_decode
from rnnkit.tasks.metrics import regression_metrics, token_metrics


class OneToMany(SequenceTask):
    r"""Sequence generation from one observation (the lecture's "sequence generation").

    Step t of the decoder reads [v, f(y_{t-1})]: the conditioning vector v at every step (an input
    constant over the sequence) and what the decoder produced at t-1 (its own output fed back; the
    true one under teacher forcing in training). f is the value itself for real-valued outputs and
    an embedding of the token for symbols; y_0 is zeros / <bos>.

    Batches: ``v (B, F)`` and ``y (B, U, O)`` values or ``y (B, U)`` token ids ending in <eos>.
    Values: MSE loss, metrics MSE and MAE of free-running generation. Tokens: cross-entropy, token
    accuracy and exact match of greedy generation.

    Args (besides :class:`SequenceTask`'s):
        teacher_forcing: probability, per training batch step, of feeding the true previous output;
            1.0 trains in one parallel pass, lower values train on the model's own outputs too.
        embedding_dim: token embedding width (symbol outputs).
        teacher_forcing_end: if set, the probability moves linearly from ``teacher_forcing`` at the
            first epoch to this value at the last (scheduled sampling). Fed-back values keep their
            gradient (training through the outputs); fed-back tokens are argmax ids (no gradient).
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
        teacher_forcing: float = 1.0,
        embedding_dim: int = 16,
        teacher_forcing_end: float | None = None,
    ) -> None:
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        if tbptt_steps:
            raise ValueError("OneToMany generates from one vector: tbptt_steps is not supported, set it to 0")
        for name, value in (
            ("teacher_forcing", teacher_forcing),
            ("teacher_forcing_end", teacher_forcing_end),
        ):
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        self.teacher_forcing = teacher_forcing
        self.teacher_forcing_end = teacher_forcing_end
        if spec.classification:
            self.embedding = nn.Embedding(len(spec.vocab), embedding_dim, padding_idx=PAD)
            feedback, outputs = embedding_dim, len(spec.vocab)
        else:
            self.embedding = None
            feedback, outputs = spec.output_size, spec.output_size
        self.decoder = self.build_encoder(spec.input_size + feedback, bidirectional=False)
        self.head = nn.Linear(encoder_width(self.decoder), outputs)

    def metrics(self) -> MetricCollection:
        return token_metrics() if self.spec.classification else regression_metrics()

    def _feedback(self, y: Tensor) -> Tensor:
        """What is fed back for outputs ``y`` (token ids or values)."""
        return self.embedding(y) if self.embedding is not None else y

    def _start(self, v: Tensor) -> Tensor:
        if self.embedding is not None:
            return torch.full((v.shape[0],), BOS, dtype=torch.long, device=v.device)
        return v.new_zeros(v.shape[0], self.spec.output_size)

    def generate(self, v: Tensor, steps: int, teacher: Tensor | None = None) -> Tensor:
        """Free-running (or partly teacher-forced) generation: ``(B, steps, O or V)``."""
        start = self._start(v)

        def make_input(prev: Tensor | None, t: int) -> Tensor:
            fed = self._feedback(start if prev is None else prev)
            return torch.cat([v, fed], dim=-1).unsqueeze(1)  # (B, 1, F + feedback)

        def own(pred: Tensor) -> Tensor:
            return pred.argmax(-1) if self.embedding is not None else pred

        return feedback_decode(
            self.decoder,
            self.head,
            None,
            steps,
            make_input,
            own,
            teacher=teacher,
            teacher_forcing=self.current_teacher_forcing() if teacher is not None else 0.0,
        )

    def forward(self, v: Tensor, y: Tensor) -> Tensor:
        """Teacher-forced outputs for targets ``y``: one pass over all steps."""
        start = self._start(v).unsqueeze(1)
        previous = torch.cat([start, y[:, :-1]], dim=1)  # (B, U[, O])
        fed = self._feedback(previous)  # (B, U, feedback)
        inputs = torch.cat([v.unsqueeze(1).expand(-1, y.shape[1], -1), fed], dim=-1)
        out, _ = self.decoder(inputs)
        return self.head(out)

    def _loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.embedding is not None:
            target = y.masked_fill(y == PAD, -100)
            return F.cross_entropy(pred.flatten(0, 1), target.flatten(), ignore_index=-100)
        return F.mse_loss(pred, y)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        v, y = batch["v"], batch["y"]
        # one parallel pass under full teacher forcing, else step by step
        forced = self.current_teacher_forcing() >= 1
        pred = self(v, y) if forced else self.generate(v, y.shape[1], teacher=y)
        return self._loss(pred, y)

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        v, y = batch["v"], batch["y"]
        pred = self.generate(v, y.shape[1])
        loss = self._loss(pred, y)
        if self.embedding is not None:
            return loss, pred.argmax(-1), y.masked_fill(y == PAD, -100)
        return loss, pred, y

    def baseline_prediction(self, batch: dict[str, Tensor], raw: Tensor) -> Tensor:
        return raw
