"""The gradient-flow measurement against autograd on an unrolled tiny model, and the callback's run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from training_helpers import run_train

import rnnkit.nn as rnn
from rnnkit.nn.probe import StateGradientProbe
from rnnkit.training.callbacks import GradientFlow

D = torch.float64


class TinyTask(nn.Module):
    """Duck-typed task: ``loss(batch)`` of a one-layer Elman RNN read at its last step."""

    def __init__(self, backend: str = "auto"):
        super().__init__()
        self.encoder = rnn.Recurrent("rnn", 2, 3, batch_first=True, dtype=D, backend=backend)

    def loss(self, batch):
        out, _ = self.encoder(batch["x"])
        return out[:, -1].pow(2).sum() + 0.1 * out.sum()


def unrolled_gradients(task: TinyTask, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """dL/dh_t and dL/dx_t with retain_grad on a hand-unrolled copy of the same RNN."""
    cell = task.encoder.cells[0]
    x = x.detach().requires_grad_()
    h = torch.zeros(x.shape[0], 3, dtype=D)
    states = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ cell.weight_ih.t() + cell.bias_ih + h @ cell.weight_hh.t() + cell.bias_hh)
        h.retain_grad()
        states.append(h)
    out = torch.stack(states, 1)
    (out[:, -1].pow(2).sum() + 0.1 * out.sum()).backward()
    state = np.array([s.grad.norm(dim=-1).mean().item() for s in states])
    return state, x.grad.norm(dim=-1).mean(0).numpy()


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_measured_norms_equal_autograd_on_the_unrolled_model(backend):
    task = TinyTask(backend)
    x = torch.randn(4, 7, 2, dtype=D)
    measured = GradientFlow.measure(task, {"x": x})
    state, inputs = unrolled_gradients(task, x)
    np.testing.assert_allclose(measured["state"], state, rtol=1e-10)
    np.testing.assert_allclose(measured["input"], inputs, rtol=1e-10)
    assert task.training  # the module's mode is restored


def test_probe_leaves_the_forward_unchanged():
    layer = rnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=D)
    x = torch.randn(5, 2, 2, dtype=D)
    plain, _ = layer(x)
    with StateGradientProbe() as probe:
        probed, _ = layer(x)
    torch.testing.assert_close(probed, plain, atol=1e-12, rtol=1e-12)  # fused vs reference loop
    assert len(probe.taps) == 4 and all(len(taps) == 5 for taps in probe.taps)


@pytest.mark.slow
def test_callback_logs_and_draws_during_a_run(tmp_path):
    run_train(
        ["task=classify", "data=adding", "data.length=20", "data.train_size=256", "data.val_size=64",
         "data.test_size=64", "trainer.max_epochs=2", "callbacks=gradient_flow"],
        tmp_path,
    )  # fmt: skip
    assert (tmp_path / "gradient_flow.png").exists()
    saved = np.load(tmp_path / "gradient_flow.npz")
    assert saved["state"].shape == (2, 20) and saved["input"].shape == (2, 20)
    text = "".join(p.read_text() for p in Path(tmp_path).rglob("metrics.csv"))
    assert (
        "gradient_flow/dL_dh_first_step" in text
        and "gradient_flow/sigma_max/encoder.cells.0.weight_hh" in text
    )
