"""A misspelt key or group on the command line stops the run before any work, with "did you mean",
with or without Hydra's ``+``; ``++`` adds a key of one's own on purpose."""

from __future__ import annotations

import subprocess
import sys

import pytest
from training_helpers import CONFIG_DIR, ROOT

from rnnkit.training.command_line import CommandLineError, check_overrides, overrides_of


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["cel=lstm"],
            r"cel=lstm: 'cel' is not a config group or key \(did you mean 'cell'\?\).*\+\+cel=lstm",
        ),
        (["+cel=lstm"], r"\+cel=lstm: 'cel' is not a config group or key \(did you mean 'cell'\?\)"),
        (["sed=1"], r"'sed' is not a config group or key \(did you mean 'seed'\?\)"),
        (
            ["model.encoder.hiden_size=32"],
            r"model.encoder.hiden_size=32: 'hiden_size' is not an argument of LSTMCell "
            r"\(did you mean 'hidden_size'\?\)",
        ),
        (["+model.encoder.hiden_size=32"], r"'hiden_size' is not an argument of LSTMCell"),
        (
            ["trainer.max_epoch=3"],
            r"'max_epoch' is not an argument of Trainer \(did you mean 'max_epochs'\?\)",
        ),
        (["model.optimizer.lrr=0.1"], r"'lrr' is not an argument of Adam \(did you mean 'lr'\?\)"),
        (["paths.outdir=x"], r"'outdir' is not a key of paths \(did you mean 'paths.output_dir'\?\)"),
        (
            ["data=csv", "data.source_kwargs.pth=x.csv"],
            r"'pth' is not a key of data.source_kwargs \(did you mean 'data.source_kwargs.path'\?\)",
        ),
        (["cell=rnn,lstm", "model.encoder.hiden_size=8"], r"'hiden_size' is not an argument of RNNCell"),
    ],
)
def test_a_misspelt_key_is_refused_with_did_you_mean(overrides, message):
    with pytest.raises(CommandLineError, match=message):
        check_overrides(CONFIG_DIR, "train", overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["cell=gru", "task=classify", "seed=3"],
        ["cell=rnn,lstm,gru"],  # a sweep: its first choice composes
        ["model.encoder.hidden_size=16,32", "trainer.max_epochs=2"],
        ["++my_note=run-7"],  # a key of one's own, on purpose
        ["data=csv", "data.path=my.csv", "data.source_kwargs.columns=[y]"],
        ["experiment=airline12", "refit=false"],
        ["hydra.run.dir=/tmp/somewhere", "~callbacks.early_stopping"],
        ["task=language", "data=text", "data.path=my.txt", "data.tokens=word"],
        ["cell=lsmt"],  # a bad option: Hydra's own message lists the options
    ],
)
def test_good_command_lines_pass(overrides):
    check_overrides(CONFIG_DIR, "train", overrides)


def test_flags_and_their_values_are_not_overrides():
    assert overrides_of(["-m", "cell=rnn,lstm", "--cfg", "job", "seed=1"]) == ["cell=rnn,lstm", "seed=1"]
    assert overrides_of(["--config-name", "other", "cel=1"]) is None  # another config: not checked here


def test_train_py_stops_on_a_typo_before_any_work(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "cel=lstm", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "'cel' is not a config group or key (did you mean 'cell'?)" in proc.stderr
    assert not (tmp_path / "run").exists()  # no run folder: nothing started


def test_help_teaches_the_groups_the_common_keys_and_examples():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for expected in (
        "task       the problem shape",
        "== Common keys ==",
        "== Examples ==",
        "python train.py -m cell=",
    ):
        assert expected in proc.stdout, proc.stdout
    assert "cell: gru, jordan, layernorm_gru" in proc.stdout  # the options, listed from configs/
