"""Every task runs with every cell (fast_dev_run); each task learns; interrupted runs resume exactly."""

from __future__ import annotations

import pytest
import torch
from training_helpers import run_train

TASKS = ["timeseries", "classify", "seq2seq", "generate", "language"]
CELLS = ["rnn", "jordan", "lstm", "gru", "tdnn"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_every_task_with_every_cell(task, cell, tmp_path):
    metrics = run_train([f"task={task}", f"cell={cell}", "debug=fdr"], tmp_path)
    assert any(k.startswith("test/") for k in metrics)
    assert any(k.startswith("baseline/") for k in metrics)
    assert all(v == v for v in metrics.values() if isinstance(v, float))  # no NaN
    assert (tmp_path / "test_predictions.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "extra",
    [
        ["task=timeseries", "model.tbptt_steps=12"],
        ["task=classify", "model.tbptt_steps=3"],
        ["task=seq2seq", "data=echo", "model.tbptt_steps=5"],
        ["task=language", "model.tbptt_steps=6"],
        ["task=seq2seq", "model.teacher_forcing=0.5"],
        ["task=generate", "model.teacher_forcing=0.0"],
        [
            "task=classify",
            "data=adding",
            "data.length=30",
            "data.min_length=10",
            "model.encoder.bidirectional=true",
        ],
        ["task=timeseries", "data=sine", "data.horizon=5", "model.scheduler.patience=0"],
        ["task=timeseries", "model.tbptt_steps=12", "model.scheduler=null"],
    ],
    ids=[
        "tbptt_next_step",
        "tbptt_many_to_one",
        "tbptt_tagging",
        "tbptt_language",
        "seq2seq_scheduled_sampling",
        "generate_free_running",
        "adding_variable_lengths_bidirectional",
        "sine_horizon5_scheduler",
        "tbptt_no_scheduler",
    ],
)
def test_task_options_run(extra, tmp_path):
    metrics = run_train([*extra, "debug=default"], tmp_path)
    assert "test/loss" in metrics


# ---------------------------------------------------------------------------------------- learning
LEARNING = {
    # each beats its naive baseline on the held-out test split after a short CPU run
    "timeseries": (["task=timeseries", "trainer.max_epochs=40"], "test/mae", "baseline/mae", "lower"),
    "classify": (["task=classify", "trainer.max_epochs=6"], "test/acc", "baseline/acc", "higher"),
    "seq2seq": (
        ["task=seq2seq", "data=echo", "trainer.max_epochs=4"],
        "test/token_acc",
        "baseline/token_acc",
        "higher",
    ),
    "generate": (
        ["task=generate", "data.train_size=2000", "trainer.max_epochs=6"],
        "test/mse",
        "baseline/mse",
        "lower",
    ),
    "language": (
        ["task=language", "data.train_size=1000", "trainer.max_epochs=6"],
        "test/cross_entropy",
        "baseline/cross_entropy",
        "lower",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(LEARNING))
def test_each_task_beats_its_naive_baseline(task, tmp_path):
    overrides, model_key, baseline_key, better = LEARNING[task]
    metrics = run_train([*overrides, "callbacks.early_stopping=null"], tmp_path)
    model, baseline = metrics[model_key], metrics[baseline_key]
    if better == "lower":
        assert model < 0.8 * baseline, f"{model_key}={model:.4f} vs {baseline_key}={baseline:.4f}"
    else:
        assert model > baseline + 0.2, f"{model_key}={model:.4f} vs {baseline_key}={baseline:.4f}"


# ---------------------------------------------------------------------------------------- resume
def _last(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def _final_weights(run_dir) -> dict[str, torch.Tensor]:
    return _last(run_dir)["state_dict"]


def test_resume_from_last_checkpoint_reaches_the_same_weights(tmp_path):
    common = [
        "task=timeseries",
        "model.encoder.num_layers=2",
        "model.encoder.dropout=0.3",
        "callbacks.early_stopping=null",
        "test=false",
    ]
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    run_train([*common, "trainer.max_epochs=4"], full)
    run_train([*common, "trainer.max_epochs=2"], part)  # "interrupted" after epoch 2
    run_train([*common, "trainer.max_epochs=4", f"ckpt_path={part / 'checkpoints' / 'last.ckpt'}"], resumed)
    a, b = _final_weights(full), _final_weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # the optimizer and the LR schedule continue too (no scheduler step lost at the interruption)
    assert _last(full)["lr_schedulers"] == _last(resumed)["lr_schedulers"]
    assert _last(full)["lr_schedulers"][0]["last_epoch"] == 4
    # and the interruption mattered: epoch-2 weights differ from the final ones
    assert any(not torch.equal(a[n], _final_weights(part)[n]) for n in a)


def test_checkpoints_are_written_atomically(tmp_path):
    from rnnkit.training.checkpoint import atomic_torch_save

    target = tmp_path / "model.ckpt"
    atomic_torch_save({"step": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=False) == {"step": 1}  # the old file survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # no temporary left behind
