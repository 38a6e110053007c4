"""What a trained task computes at inference, as plain modules that export (issue 31).

A task (:mod:`rnnkit.tasks`) is a LightningModule built for training: losses, metrics, batches as
dicts, rollouts that read their settings from the data. Serving needs one tensor function per task
shape, with fixed inputs and outputs; these modules wrap a trained task's own methods (no second
implementation of the model) so that ``torch.jit.trace``, ``torch.export`` and ``torch.onnx.export``
see only tensors:

- :class:`Forecaster`: a series window -> the autoregressive forecast with its predictions fed back
  (:meth:`NextStep.rollout <rnnkit.tasks.next_step.NextStep.rollout>`), in the series' original units;
- :class:`SequenceScorer`: a sequence -> the logits (classes) or values of a many-to-one task, or
  per-step logits of a tagger (many-to-many);
- :class:`Stepper`: streaming, one chunk (down to one step) at a time with the recurrent state carried
  by the caller: next-step predictions of a series or the next-symbol logits of a language model.
  Running a sequence chunk by chunk gives the whole-sequence run's outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.tasks.many_to_many import ManyToMany
from rnnkit.tasks.many_to_one import ManyToOne
from rnnkit.tasks.next_step import NextStep


class Forecaster(nn.Module):
    """``x (B, T, F)`` -> ``forecast (B, T - known + 1, O)``: the forecast of the targets of steps
    known-1 .. T-1, in original units.

    The window is laid out as the run's data builds it: its first ``known`` steps observed, the rest
    carrying only the known covariates (calendar features, seasonal lags), whose series features the
    rollout overwrites with its own predictions v^_{t+1} fed back as v_t. ``inverse`` maps the model's
    scaled units back to the series' (the data module's ``inverse_target``); the identity if None.
    The time loop of the rollout is unrolled on export: T is the traced window length.
    """

    def __init__(self, task: NextStep, known: int, inverse: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if task.spec.classification or not task.spec.feedback:
            raise ValueError(
                "Forecaster: the task must forecast a series (next-step, with feedback features)"
            )
        if known < 1:
            raise ValueError(f"Forecaster: known must be >= 1, got {known}")
        self.task = task
        self.known = known
        self.inverse = inverse

    def forward(self, x: Tensor) -> Tensor:
        path = self.task.rollout(x, self.known)  # (B, T - known + 1, O), scaled
        return path if self.inverse is None else self.inverse(path)


class SequenceScorer(nn.Module):
    """``x (B, T, F)`` -> ``(B, O)`` logits or values of a many-to-one task (every sequence T steps
    long), or ``(B, T, C)`` per-step logits of a many-to-many tagger. Tokens arrive one-hot, as in
    training; batch and length are free."""

    def __init__(self, task: ManyToOne | ManyToMany) -> None:
        super().__init__()
        if isinstance(task, ManyToMany) and task.seq2seq:
            raise ValueError(
                "SequenceScorer: an encoder-decoder (seq2seq) decodes step by step; it is not exported yet"
            )
        if not isinstance(task, ManyToOne | ManyToMany):
            raise ValueError(
                f"SequenceScorer: takes a many-to-one or many-to-many task, got {type(task).__name__}"
            )
        self.task = task

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.task, ManyToOne):
            return self.task(x)  # (B, O)
        return self.task({"x": x})  # (B, T, C)


class Stepper(nn.Module):
    """Streaming inference with the state carried by the caller:
    ``(x, *state) -> (predictions, *new_state)``, or ``(x, level, *state)`` for a series model trained
    with ``local_level``.

    ``x`` is ``(B, T, F)`` features of a series task, or ``(B, T)`` symbol ids (long) of a symbol task,
    one-hot encoded inside; T may be 1 (one step at a time) or a whole chunk. ``predictions`` are the
    next-step means ``(B, T, O)`` of a series (in the model's scaled units) or the next-symbol logits
    ``(B, T, V)``. ``state`` is the encoder's: ``h`` ``(L, B, H)`` (and ``c`` for an LSTM), zeros at a
    sequence's start (:meth:`initial_state`). Feeding a sequence in chunks, each chunk with the state
    the previous one returned, gives the whole-sequence outputs. ``level`` ``(B, 1, O)``, for a model
    trained with ``local_level``: the level the model reads the series against (its inputs and
    predictions in the series' scaled units, the level taken off and added back), the mean of the
    series' first m observed values (m its season; :meth:`level`), fixed for the whole stream.
    """

    def __init__(self, task: NextStep) -> None:
        super().__init__()
        if not isinstance(task, NextStep):
            raise ValueError(f"Stepper: takes a next-step task, got {type(task).__name__}")
        self.task = task
        self.symbols = bool(task.spec.classification)
        self.levels = bool(task.local_level)

    def level(self, x: Tensor) -> Tensor:
        """The ``level`` input of a ``local_level`` model for a stream starting with ``x (B, T, F)``:
        ``(B, 1, O)``, from its first m steps."""
        if not self.levels:
            raise ValueError("Stepper.level: the model was not trained with local_level")
        return self.task.level(x)

    def state_parts(self) -> int:
        """How many tensors the state has: 2 for an LSTM (h, c), else 1."""
        return len(self.initial_state(1))

    def initial_state(self, batch: int) -> tuple[Tensor, ...]:
        """The state at a sequence's start: zeros, one ``(L, B, H)`` tensor per part."""
        encoder = self.task.encoder
        weight = next(encoder.parameters())
        x = torch.zeros(batch, 1, self.task.spec.input_size, dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            _, state = encoder(x)  # the state's layout, from the encoder itself
        parts = state if isinstance(state, tuple) else (state,)
        return tuple(torch.zeros_like(p) for p in parts)

    def forward(self, x: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        level, state = (inputs[0], inputs[1:]) if self.levels else (None, inputs)
        if self.symbols:
            x = F.one_hot(x, self.task.spec.input_size).to(self.task.head.weight.dtype)  # (B, T, V)
        elif level is not None:
            x = self.task._relative(x, level)  # the level off the series' own features
        carried = state[0] if len(state) == 1 else tuple(state)
        predictions, new = self.task(x, carried)  # (B, T, O or V)
        if level is not None:
            predictions = predictions + level.to(predictions.dtype)
        return (predictions, *(new if isinstance(new, tuple) else (new,)))
