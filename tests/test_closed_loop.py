"""Training through fed-back outputs (closed loop) in the next-step task, and its schedule."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from training_helpers import run_train

import rnnkit.nn as rnn
from rnnkit.data import DataSpec
from rnnkit.tasks import NextStep

D = torch.float64
ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
SPEC = DataSpec(input_size=3, output_size=1, feedback=[0])


def model(**kwargs) -> NextStep:
    torch.manual_seed(0)
    encoder = functools.partial(rnn.Recurrent, cell="gru", hidden_size=5)
    return NextStep(SPEC, encoder, ADAM, **kwargs).double()


def unrolled_closed_loop_loss(task: NextStep, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Written independently: feature 0 of step t > 0 is the prediction made at step t-1."""
    state, prev, preds = None, None, []
    for t in range(x.shape[1]):
        inp = x[:, t] if prev is None else torch.cat([prev, x[:, t, 1:]], dim=-1)  # (B, F)
        out, state = task.encoder(inp.unsqueeze(1), state)
        pred = task.head(out[:, 0]) + inp[:, :1]  # residual: the head predicts the change
        preds.append(pred)
        prev = pred
    return F.mse_loss(torch.stack(preds, dim=1), y)


def grads(task: NextStep, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(task.parameters())))


def test_closed_loop_gradient_equals_the_unrolled_feedback():
    task = model(teacher_forcing=0.0)
    x, y = torch.randn(4, 8, 3, dtype=D), torch.randn(4, 8, 1, dtype=D)
    ours = task.loss({"x": x, "y": y})
    expected = unrolled_closed_loop_loss(task, x, y)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=1e-12)
    our_grads = grads(task, ours)
    for a, b in zip(our_grads, grads(task, expected), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    # the gradient does flow through the fed-back predictions: cutting it changes the gradient
    original = task.closed_loop

    def detached(x, p):
        state, prev, preds = None, None, []
        for t in range(x.shape[1]):
            step = x[:, t : t + 1]
            if prev is not None:
                step = step.index_copy(-1, task.feedback_index, prev.detach().unsqueeze(1))
            pred, state = task(step, state)
            prev = pred[:, 0]
            preds.append(prev)
        return torch.stack(preds, dim=1), None

    task.closed_loop = detached
    cut = grads(task, task.loss({"x": x, "y": y}))
    task.closed_loop = original
    assert any(not torch.allclose(a, b) for a, b in zip(cut, our_grads, strict=True))


def test_teacher_forcing_one_is_the_parallel_pass_and_the_true_values_are_ignored_when_closed():
    x, y = torch.randn(2, 6, 3, dtype=D), torch.randn(2, 6, 1, dtype=D)
    forced = model(teacher_forcing=1.0)
    torch.testing.assert_close(forced.loss({"x": x, "y": y}), F.mse_loss(forced(x)[0], y))
    closed = model(teacher_forcing=0.0)
    changed = x.clone()
    changed[:, 1:, 0] = 1e3  # true values after the first step are never read in closed loop
    torch.testing.assert_close(closed.loss({"x": changed, "y": y}), closed.loss({"x": x, "y": y}))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"teacher_forcing must lie in \[0, 1\], got 1.5"):
        model(teacher_forcing=1.5)
    encoder = functools.partial(rnn.Recurrent, cell="gru", hidden_size=5)
    symbols = DataSpec(input_size=4, output_size=4, classification=True)
    with pytest.raises(ValueError, match="needs a series task with feedback features"):
        NextStep(symbols, encoder, ADAM, teacher_forcing=0.5)
    with pytest.raises(ValueError, match="set tbptt_steps to 0"):
        NextStep(SPEC, encoder, ADAM, teacher_forcing=0.5, tbptt_steps=4)


def test_scheduled_teacher_forcing_trains_from_the_command_line(tmp_path):
    run_train(
        ["model.teacher_forcing=1.0", "model.teacher_forcing_end=0.0", "trainer.max_epochs=3"],
        tmp_path,
    )
    text = "".join(p.read_text() for p in Path(tmp_path).rglob("metrics.csv"))
    assert "train/teacher_forcing" in text


@pytest.mark.parametrize("task_name", ["next_step", "one_to_many"])
def test_teacher_forcing_schedule_is_linear_over_the_epochs(task_name):
    import types

    from rnnkit.tasks import OneToMany

    if task_name == "next_step":
        task = model(teacher_forcing=1.0, teacher_forcing_end=0.2)
    else:
        encoder = functools.partial(rnn.Recurrent, cell="gru", hidden_size=5)
        task = OneToMany(DataSpec(input_size=2, output_size=1), encoder, ADAM, teacher_forcing_end=0.2)
    seen = []
    for epoch in range(5):
        object.__setattr__(task, "_trainer", types.SimpleNamespace(max_epochs=5, current_epoch=epoch))
        seen.append(task.current_teacher_forcing())
    assert seen == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
