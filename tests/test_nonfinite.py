"""A NaN or infinite loss or gradient stops the run naming the step and the last checkpoint, before
any weight is touched; or, with ``model.nonfinite=skip``, that step is skipped and training goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import run_train

from rnnkit.tasks import NextStep, NonFiniteError

FAST = ["trainer.max_epochs=3", "data.baselines=[seasonal_naive]"]


def poison(monkeypatch, at_call: int, kind: str) -> None:
    """Make the task's loss (or only its gradient) non-finite at one training call."""
    original = NextStep.loss
    calls = {"n": 0}

    def loss(self, batch):
        value = original(self, batch)
        calls["n"] += 1
        if calls["n"] != at_call:
            return value
        if kind == "loss":
            return value * float("nan")
        weight = next(self.parameters())
        return value + 0.0 * torch.sqrt(weight.abs() * 0).sum()  # finite value, NaN gradient

    monkeypatch.setattr(NextStep, "loss", loss)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_nonfinite_stops_the_run_naming_the_step_and_checkpoint(kind, monkeypatch, tmp_path):
    poison(monkeypatch, at_call=9, kind=kind)
    with pytest.raises(
        NonFiniteError, match=rf"non-finite {kind} \(.*nan\) at global step 8 \(epoch \d, batch \d+\)"
    ) as err:
        run_train(FAST, tmp_path)
    assert "Last checkpoint:" in str(err.value) and "model.nonfinite=skip" in str(err.value)
    for ckpt in Path(tmp_path).rglob("*.ckpt"):  # whatever was written holds finite weights
        state = torch.load(ckpt, weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_skip_option_skips_the_step_and_trains_on(kind, monkeypatch, tmp_path):
    poison(monkeypatch, at_call=3, kind=kind)
    metrics = run_train([*FAST, "model.nonfinite=skip", "trainer.log_every_n_steps=1"], tmp_path)
    assert torch.isfinite(torch.tensor(metrics["test/mae"]))
    logged = (Path(tmp_path) / "csv").rglob("metrics.csv")
    text = "".join(path.read_text() for path in logged)
    assert "train/skipped_steps" in text and "train/grad_norm" in text


def test_bad_option_is_refused(tmp_path):
    with pytest.raises(Exception, match="nonfinite must be 'stop' or 'skip', got 'ignore'"):
        run_train([*FAST, "model.nonfinite=ignore"], tmp_path)
