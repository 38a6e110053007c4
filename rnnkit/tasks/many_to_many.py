"""Many-to-many: aligned tagging, and encoder-decoder sequence-to-sequence."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from rnnkit.cells.base import State
from rnnkit.data.base import DataSpec
from rnnkit.data.tokens import BOS, PAD
from rnnkit.tasks.base import (
    Factory,
    OptimizerFactory,
    SchedulerFactory,
    SequenceTask,
    encoder_width,
    merge_directions,
)
from rnnkit.tasks.decoding import feedback_decode
from rnnkit.tasks.metrics import token_metrics


class ManyToMany(SequenceTask):
    r"""Sequence to sequence, in the two layouts of the lecture notes' many-to-many.

    **Aligned tagging** (``spec.seq2seq`` false): one label per input step,
    y^_t = head(h_t); the encoder may be bidirectional. Batches ``x (B, T, F)``, ``y (B, T)`` class
    ids (-100 where padded), optional ``lengths``.

    **Encoder-decoder** (``spec.seq2seq`` true): the encoder reads the embedded source; its final
    state (directions summed) starts a one-way decoder of the same cell, which reads <bos> and then
    the previous target token: the true one in training (teacher forcing, or the model's own with
    probability ``1 - teacher_forcing``), its own greedy choice at evaluation. Batches ``src (B, S)``,
    ``src_lengths (B,)``, ``tgt (B, U)`` token ids ending with <eos>, <pad>-filled.

    Metrics: token accuracy and exact sequence match (every target position right, <eos> included).
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
        embedding_dim: int = 32,
        teacher_forcing: float = 1.0,
    ) -> None:
        super().__init__(
            spec, encoder, optimizer, scheduler, tbptt_steps, gradient_clip_val, nonfinite=nonfinite
        )
        if not 0 <= teacher_forcing <= 1:
            raise ValueError(f"teacher_forcing must lie in [0, 1], got {teacher_forcing}")
        self.teacher_forcing = teacher_forcing
        self.seq2seq = bool(getattr(spec, "seq2seq", False))
        if self.seq2seq:
            if not spec.vocab:
                raise ValueError("ManyToMany in seq2seq mode needs spec.vocab")
            self.embedding = nn.Embedding(len(spec.vocab), embedding_dim, padding_idx=PAD)
            self.encoder = self.build_encoder(embedding_dim)
            self.decoder = self.build_encoder(embedding_dim, bidirectional=False, dropout=0.0)
            self.head = nn.Linear(encoder_width(self.decoder), len(spec.vocab))
        else:
            self.encoder = self.build_encoder(spec.input_size)
            self.head = nn.Linear(encoder_width(self.encoder), spec.output_size)
        self.num_directions = getattr(self.encoder, "num_directions", 1)

    def metrics(self) -> MetricCollection:
        return token_metrics()

    # ------------------------------------------------------------------ seq2seq
    def encode(self, src: Tensor, src_lengths: Tensor | None) -> State:
        _, state = self.encoder(self.embedding(src), lengths=src_lengths)
        return merge_directions(state, self.num_directions)

    def teacher_forced(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits ``(B, U, V)`` reading the true previous target tokens."""
        state = self.encode(batch["src"], batch.get("src_lengths"))
        tgt = batch["tgt"]
        previous = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)  # (B, U)
        if self.training and self.teacher_forcing < 1:
            return self._decode_stepwise(state, tgt.shape[1], teacher=tgt)
        out, _ = self.decoder(self.embedding(previous), state)  # one call for all steps
        return self.head(out)

    def greedy(self, src: Tensor, src_lengths: Tensor | None, steps: int) -> Tensor:
        """Logits ``(B, steps, V)`` feeding back the model's own argmax tokens."""
        return self._decode_stepwise(self.encode(src, src_lengths), steps)

    def _decode_stepwise(self, state: State, steps: int, teacher: Tensor | None = None) -> Tensor:
        batch = teacher.shape[0] if teacher is not None else next(iter(_leaves(state))).shape[1]
        bos = torch.full((batch,), BOS, dtype=torch.long, device=self.device)

        def make_input(prev: Tensor | None, t: int) -> Tensor:
            return self.embedding(bos if prev is None else prev).unsqueeze(1)

        return feedback_decode(
            self.decoder,
            self.head,
            state,
            steps,
            make_input,
            lambda logits: logits.argmax(-1),
            teacher=teacher,
            teacher_forcing=self.teacher_forcing if teacher is not None else 0.0,
        )

    # ------------------------------------------------------------------ shared
    def _targets(self, batch: dict[str, Tensor]) -> Tensor:
        if self.seq2seq:
            return batch["tgt"].masked_fill(batch["tgt"] == PAD, -100)
        return batch["y"]

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if self.seq2seq:
            return self.teacher_forced(batch)
        out, _ = self.encoder(batch["x"], lengths=batch.get("lengths"))
        return self.head(out)  # (B, T, C)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        logits = self(batch)
        return F.cross_entropy(logits.flatten(0, 1), self._targets(batch).flatten(), ignore_index=-100)

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        target = self._targets(batch)
        if self.seq2seq:
            logits = self.greedy(batch["src"], batch.get("src_lengths"), target.shape[1])
        else:
            logits = self(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        return loss, logits.argmax(-1), target

    def baseline_prediction(self, batch: dict[str, Tensor], raw: Tensor) -> Tensor:
        return raw.argmax(-1) if raw.is_floating_point() else raw

    def time_chunks(self, batch: dict[str, Tensor], steps: int) -> Iterator[dict[str, Tensor]]:
        if self.seq2seq:
            raise ValueError("tbptt_steps applies to aligned tagging, not to encoder-decoder ManyToMany")
        if self.num_directions != 1:
            raise ValueError("tbptt_steps needs a one-way encoder: model.encoder.bidirectional must be false")
        for start in range(0, batch["x"].shape[1], steps):
            yield {"x": batch["x"][:, start : start + steps], "y": batch["y"][:, start : start + steps]}

    def chunk_loss(self, chunk: dict[str, Tensor], state: State | None) -> tuple[Tensor | None, State]:
        out, state = self.encoder(chunk["x"], state)
        if bool((chunk["y"] == -100).all()):
            return None, state
        logits = self.head(out)
        return F.cross_entropy(logits.flatten(0, 1), chunk["y"].flatten(), ignore_index=-100), state


def _leaves(state: State):
    return (state,) if isinstance(state, Tensor) else state
