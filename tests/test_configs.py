"""Every config composes; bad keys and values stop a run before training, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from training_helpers import CONFIG_DIR, compose_config, run_train

from rnnkit.training.config_check import ConfigError, check_config

GROUPS = {
    group: sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
    for group in (
        "task",
        "cell",
        "model",
        "optimizer",
        "trainer",
        "callbacks",
        "logger",
        "data",
        "debug",
        "experiment",
    )
}
TASK_DATA = {
    "timeseries": ["airline", "sine", "mackey_glass", "radar"],
    "classify": ["digits", "adding"],
    "seq2seq": ["addition", "reversal", "echo"],
    "generate": ["waveform", "digit_names"],
    "language": ["reber"],
}


def test_every_group_has_its_options():
    assert set(GROUPS["task"]) == set(TASK_DATA)
    assert set(GROUPS["cell"]) == {
        "rnn",
        "jordan",
        "lstm",
        "gru",
        "tdnn",
        "layernorm_lstm",
        "layernorm_gru",
        "peephole_lstm",
    }
    assert set(GROUPS["trainer"]) >= {"default", "cpu", "gpu", "ddp", "ddp_sim"}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_each_option_composes_and_passes_the_schema_check(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if (group, option) == ("data", "csv"):
        overrides.append("data.source_kwargs.path=x.csv")
    cfg = compose_config(overrides, tmp_path)
    check_config(cfg)
    assert cfg.model._target_.startswith("rnnkit.tasks.")


@pytest.mark.parametrize(("task", "data"), [(t, d) for t, ds in TASK_DATA.items() for d in ds])
def test_task_data_pairs_compose(task, data, tmp_path):
    cfg = compose_config([f"task={task}", f"data={data}"], tmp_path)
    check_config(cfg)


def test_default_is_timeseries_lstm_on_airline(tmp_path):
    cfg = compose_config([], tmp_path)
    assert cfg.model._target_ == "rnnkit.tasks.NextStep"
    assert cfg.model.encoder.cell == "lstm"
    assert cfg.data.source == "airline"


def test_hparams_search_and_launcher_compose(tmp_path):
    cfg = compose_config(["hparams_search=optuna"], tmp_path)
    assert cfg.hydra.sweeper.n_trials == 20
    cfg = compose_config(["launcher=slurm", "trainer=ddp"], tmp_path)
    assert cfg.hydra.launcher.tasks_per_node == -1 or cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices


def test_misspelt_override_is_refused_by_hydra(tmp_path):
    with pytest.raises(ConfigCompositionException, match="hiden_size"):
        compose_config(["model.encoder.hiden_size=3"], tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.encoder.hiden_size=3",
            r"model\.encoder\.hiden_size: 'hiden_size' is not an argument of LSTMCell "
            r"\(did you mean 'hidden_size'\?\)",
        ),
        ("model.encoder.hidden_size=big", r"model\.encoder\.hidden_size: expected int, got str 'big'"),
        ("trainer.max_epochs=ten", r"trainer\.max_epochs: expected int, got str 'ten'"),
        ("+model.learning_rate=0.1", r"model\.learning_rate: 'learning_rate' is not an argument of NextStep"),
        (
            "+data.windw=3",
            r"data\.windw: 'windw' is not an argument of TimeSeriesDataModule \(did you mean 'window'\?\)",
        ),
        ("data.log=maybe", r"data\.log: expected bool, got str 'maybe'"),
        ("model.encoder.cell=elman", r"model\.encoder\.cell: Unknown cell 'elman'"),
    ],
)
def test_bad_config_stops_before_training_naming_the_key(override, message, tmp_path):
    with pytest.raises((ConfigError, KeyError), match=message):
        run_train([override], tmp_path)
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained


def test_a_backend_that_cannot_run_on_the_trainer_device_stops_the_run_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises((RuntimeError, ValueError), match="cannot run here|no kernel for"):
        run_train(
            ["model.encoder.backend=triton"] if _has_triton() else ["cell=rnn", "model.encoder.backend=cpu"],
            tmp_path,
        )
    assert not (tmp_path / "checkpoints").exists()


def _has_triton() -> bool:
    from rnnkit.kernels.triton.common import triton

    return triton is not None


def test_bad_data_files_give_clear_errors(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="no CSV file at .*nope.csv"):
        run_train(["data=csv", f"data.source_kwargs.path={missing}"], tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("month,sales\n2020-01,10\n2020-02,eleven\n2020-03,12\n")
    with pytest.raises(
        ValueError, match=r"line 3: expected numbers in \['sales'\], got \{'sales': 'eleven'\}"
    ):
        run_train(["data=csv", f"data.source_kwargs.path={bad}"], tmp_path)
    with pytest.raises(
        ValueError, match=r"columns \['revenue'\] not found; the header has \['month', 'sales'\]"
    ):
        run_train(
            ["data=csv", f"data.source_kwargs.path={bad}", "data.source_kwargs.columns=[revenue]"], tmp_path
        )


def test_user_csv_trains_end_to_end(tmp_path):
    import math

    path = tmp_path / "series.csv"
    rows = [f"{t},{10 + math.sin(t / 3):.5f}" for t in range(120)]
    path.write_text("t,value\n" + "\n".join(rows) + "\n")
    metrics = run_train(["data=csv", f"data.source_kwargs.path={path}", "trainer.max_epochs=2"], tmp_path)
    assert "test/mae" in metrics and "baseline/mae" in metrics


def test_the_airline12_experiment_is_the_h12_split_with_the_seasonal_lag_and_a_refit(tmp_path):
    cfg = compose_config(["experiment=airline12"], tmp_path)
    check_config(cfg)
    data = cfg.data
    assert (data.source, data.horizon, data.seasonal_lag, cfg.refit) == ("airline", 12, True, True)
    assert cfg.model._target_ == "rnnkit.tasks.NextStep" and cfg.model.local_level
