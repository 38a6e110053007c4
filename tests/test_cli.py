"""The command lines of the README: train, -m multirun, Optuna sweep, DDP on CPU, eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null"]


def run(script: str, *args: str, timeout: int = 600, warnings: bool = False) -> subprocess.CompletedProcess:
    """Run a script; ``warnings``: as a user sees it (else Python's warnings are ignored)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "default" if warnings else "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{script} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


# library notices that are not the user's business (rnnkit/training/notices.py), and Lightning's
# warnings that rnnkit used to cause: none may reach the console of a default run or its evaluation
NOT_ON_THE_CONSOLE = [
    "litlogger",
    "litmodels",
    "LeafSpec",
    "log_every_n_steps",
    "callbacks used to create",
    "dirpath",
]


@pytest.mark.slow
def test_train_then_eval_a_checkpoint(tmp_path):
    trained = run("train.py", *FAST, f"hydra.run.dir={tmp_path / 'run'}", warnings=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test/mae", "test/rmse", "test/smape", "test/mase", "baseline/mae"} <= metrics.keys()
    assert (tmp_path / "run" / "test_predictions.png").exists()
    assert (tmp_path / "run" / "csv").is_dir()
    ckpt = Path(metrics["best_checkpoint"])
    evaluated_run = run("eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", warnings=True)
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test/mae"] == pytest.approx(metrics["test/mae"], rel=1e-6)
    for proc in (trained, evaluated_run):
        console = proc.stdout + proc.stderr
        assert not [notice for notice in NOT_ON_THE_CONSOLE if notice in console], console[-3000:]


def test_eval_without_a_run_config_says_what_to_pass(tmp_path):
    stray = tmp_path / "model.ckpt"
    stray.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={stray}", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "run_config: the training config was expected at" in proc.stderr


@pytest.mark.slow
def test_multirun_sweeps_cells(tmp_path):
    run("train.py", "-m", "cell=rnn,gru", "debug=fdr", f"hydra.sweep.dir={tmp_path}")
    runs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.json"))
    assert runs == ["0", "1"]
    cells = {
        yaml.safe_load((tmp_path / r / ".hydra" / "config.yaml").read_text())["model"]["encoder"]["cell"]
        for r in runs
    }
    assert cells == {"rnn", "gru"}
    summary = (tmp_path / "summary.csv").read_text().splitlines()  # the sweep's table, best first
    assert summary[0].startswith("run,cell,") and len(summary) == 3
    assert "val/loss" in summary[0] and "test/mae" in summary[0]


@pytest.mark.slow
def test_optuna_sweep_of_two_trials(tmp_path):
    run(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *FAST,
        f"hydra.sweep.dir={tmp_path}",
    )
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert "model.optimizer.lr" in results["best_params"]
    assert isinstance(results["best_value"], float)
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


@pytest.mark.slow
def test_ddp_sim_trains_with_two_cpu_processes(tmp_path):
    proc = run("train.py", "trainer=ddp_sim", *FAST, f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test/mae" in metrics
    assert "world_size: 2" in proc.stderr + proc.stdout or (tmp_path / "train_ddp_process_1.log").exists()


def test_a_run_that_fails_after_composing_says_why_in_its_folder(tmp_path):
    """The error and its traceback go to the run's train.log (Hydra prints it on the console too)."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *FAST,
            "model.optimizer.lr=-1.0",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    log = (run_dir / "train.log").read_text()
    assert "train failed" in log and "Traceback" in log and "Invalid learning rate: -1.0" in log, log


def test_a_sweep_summary_ranks_the_runs_best_first(tmp_path):
    from rnnkit.training.sweep import write_summary

    for run_name, cell, loss, accuracy in [
        ("0", "rnn", 0.5, 0.7),
        ("1", "gru", 0.2, 0.9),
        ("2", "lstm", 0.3, 0.8),
    ]:
        (tmp_path / run_name / ".hydra").mkdir(parents=True)
        (tmp_path / run_name / ".hydra" / "overrides.yaml").write_text(
            f"- cell={cell}\n- hydra.verbose=false\n"
        )
        metrics = {"val/loss_best": loss, "val/acc": accuracy, "test/acc": accuracy, "test/per_step": [1]}
        (tmp_path / run_name / "metrics.json").write_text(json.dumps(metrics))
    table = write_summary(tmp_path, "val/loss")
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["gru", "lstm", "rnn"]
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert rows[0] == "run,cell,val/loss_best,val/acc,test/acc" and rows[1].startswith("1,gru,0.2")
    table = write_summary(tmp_path, "val/acc", maximize=True)  # Optuna's direction: maximize
    assert [line.split()[1] for line in table.splitlines()[1:]] == ["gru", "lstm", "rnn"]


def test_a_run_ends_with_a_table_of_the_model_against_each_baseline(tmp_path):
    from rnnkit.training.run import run_summary

    metrics = {
        "test/mae": 12.3456,
        "test/mape": 0.0361,
        "test/mae_by_step": [1.0, 2.0],  # per-step lists stay in metrics.json
        "baseline/mae": 40.1,
        "baseline/mape": 0.155,
        "baseline_holt_winters/mae": 20.0,
        "val/loss": 0.1,
        "best_checkpoint": "x.ckpt",
    }
    (tmp_path / "metrics.json").write_text("{}")
    lines = run_summary(metrics, tmp_path).splitlines()
    assert lines[1].split() == ["mae", "mape"]
    assert lines[2].split() == ["model", "12.35", "0.0361"]
    assert lines[3].split() == ["naive", "baseline", "40.1", "0.155"]
    assert lines[4].split() == ["holt_winters", "20", "-"]
    assert lines[-2:] == [f"run folder: {tmp_path}", "written: metrics.json"]
