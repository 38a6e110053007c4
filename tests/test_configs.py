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
        "scheduler",
    )
}
TASK_DATA = {
    "timeseries": ["airline", "sine", "mackey_glass", "radar"],
    "classify": ["digits", "adding", "ucr"],
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
    assert set(GROUPS["scheduler"]) == {"plateau", "cosine"}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_each_option_composes_and_passes_the_schema_check(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "data":  # with the task it is for (data=ucr configures the classifier)
        overrides += [f"task={t}" for t, ds in TASK_DATA.items() if option in ds]
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


@pytest.mark.parametrize(
    ("data", "local_level", "seasonal_lag"),
    [("airline", True, False), ("panel", True, False), ("sine", True, False), ("csv", False, "auto")],
)
def test_each_forecasting_data_config_sets_its_level_handling(data, local_level, seasonal_lag, tmp_path):
    """model.local_level comes from the data config (the task's would override it): the bundled
    series keep it, your own file (data=csv) runs without it and with the seasonal lag where it fits."""
    cfg = compose_config([f"data={data}"], tmp_path)
    assert cfg.model._target_ == "rnnkit.tasks.NextStep"
    assert cfg.model.local_level is local_level
    assert cfg.data.get("seasonal_lag", False) == seasonal_lag


README_CELL = ["imports=[mypkg.cells]", "model.encoder.cell=mgu"]  # the README's command line


def _readme_cell_module(tmp_path, monkeypatch) -> None:
    """The README's MinimalGatedUnit block, registered as "mgu", as the user's module ``mypkg.cells``."""
    import re
    import sys

    from rnnkit.cells.registry import _CELLS

    readme = (Path(CONFIG_DIR).parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    block = next(b for b in blocks if "class MinimalGatedUnit" in b)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "cells.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mypkg.cells", "mypkg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delitem(_CELLS, "mgu", raising=False)  # and removed again afterwards
    monkeypatch.setitem(_CELLS, "mgu", None)
    del _CELLS["mgu"]


def test_the_readmes_own_cell_trains_from_the_command_line(tmp_path, monkeypatch):
    """README: ``python train.py imports=[mypkg.cells] model.encoder.cell=mgu``. The cell config's
    zoneout and recurrent_dropout (0 by default) are options of RecurrentCell that the README's cell
    does not take: the layer applies zoneout itself and drops a zero recurrent dropout."""
    from hydra.utils import instantiate

    _readme_cell_module(tmp_path, monkeypatch)
    metrics = run_train([*README_CELL, "trainer.max_epochs=1"], tmp_path / "run")
    assert "test/mae" in metrics
    cfg = compose_config([*README_CELL, "model.encoder.zoneout=0.1"])
    check_config(cfg)  # zoneout is the layer's option for this cell
    layer = instantiate(cfg.model.encoder)(input_size=3, hidden_size=4)
    assert type(layer.cells[0]).__name__ == "MinimalGatedUnit" and layer.cells[0].zoneout == 0.1
    cfg = compose_config([*README_CELL, "model.encoder.recurrent_dropout=0.2"])
    check_config(cfg)
    with pytest.raises(
        ValueError,
        match=r"recurrent_dropout=0.2: MinimalGatedUnit's constructor does not take it.*"
        r"self.recurrent_input\(h\) in step",
    ):
        instantiate(cfg.model.encoder)(input_size=3, hidden_size=4)


@pytest.mark.parametrize(
    ("content", "columns", "expected"),
    [
        ("value\n1\n2\n3\n4\n", None, [[1.0], [2.0], [3.0], [4.0]]),  # one column of values
        ("date,sales\n2020-01,1\n2020-02,2\n2020-03,3\n", None, [[1.0], [2.0], [3.0]]),  # dates skipped
        ("t,y\n0,5\n1,6\n2,7\n", None, [[5.0], [6.0], [7.0]]),  # a step column, named like one
        ("a,b\n1,10\n2,20\n3,30\n", None, [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]),  # all values
        ("date,sales,price\n2020-01,1,9\n2020-02,2,8\n2020-03,3,7\n", ["price"], [[9.0], [8.0], [7.0]]),
    ],
    ids=["one_column", "date_and_value", "step_and_value", "no_time_column", "named_column"],
)
def test_csv_files_read_as_a_user_expects(tmp_path, content, columns, expected):
    from rnnkit.data.series import csv_file

    path = tmp_path / "series.csv"
    path.write_text(content)
    assert csv_file(str(path), columns)[0].values.tolist() == expected


def test_data_path_names_the_csv_file_like_every_other_dataset(tmp_path):
    from hydra.utils import instantiate

    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(str(10 + (t % 7)) for t in range(80)) + "\n")
    for key in ("data.path", "data.source_kwargs.path"):  # the former key still works
        cfg = compose_config(["data=csv", f"{key}={path}"], tmp_path)
        check_config(cfg)
        data = instantiate(cfg.data)
        data.setup("fit")
        assert data.source_kwargs["path"] == str(path)
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match=r"data.path: data=csv reads your own file"):
        instantiate(compose_config(["data=csv"], tmp_path).data)
