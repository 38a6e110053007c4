"""The work behind ``train.py`` and ``eval.py``: build everything from the config, fit, test, report."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from rnnkit.nn.recurrent import Recurrent
from rnnkit.training.checkpoint import atomic_write_text
from rnnkit.training.config_check import ConfigError, check_config
from rnnkit.training.notices import silence_library_notices
from rnnkit.training.tables import text_table

log = logging.getLogger(__name__)


@contextmanager
def failure_recorded(what: str) -> Iterator[None]:
    """Write an error that ends the run, with its traceback, into the run's log files (Hydra's
    ``<task>.log`` in the run folder) before it propagates, so a failed run's folder says why it
    failed. Only the file handlers get it: Hydra prints the error on the console itself."""
    try:
        yield
    except Exception:
        files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s failed", (what,), sys.exc_info())
        for handler in files:
            handler.handle(record)
        raise


def import_user_modules(cfg: DictConfig) -> None:
    """Import ``imports`` (e.g. a module that registers a user's cell) before anything is built."""
    for module in cfg.get("imports") or []:
        importlib.import_module(module)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """DataModule, task and Trainer from a composed config (the config is checked first)."""
    silence_library_notices()
    import_user_modules(cfg)
    check_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, spec=datamodule.spec)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # a bar callback would contradict the trainer
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **_logging_interval(cfg, datamodule)
    )
    for module in model.modules():  # e.g. backend=triton on a CPU trainer: say so before training
        if isinstance(module, Recurrent):
            module.check_backend(trainer.strategy.root_device)
    return datamodule, model, trainer


def _logging_interval(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict[str, int]:
    """``log_every_n_steps`` no longer than an epoch: a small dataset (4 batches an epoch against the
    default 10) would otherwise log its training loss only every few epochs, and Lightning says so."""
    every = cfg.trainer.get("log_every_n_steps")
    if every is None:
        return {}
    try:
        batches = len(datamodule.train_dataloader())
    except TypeError:  # an iterable dataset without a length
        return {}
    return {"log_every_n_steps": max(1, min(int(every), batches))}


def _collect(trainer: L.Trainer, prefixes: tuple[str, ...]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith(prefixes)}


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def refit_config(cfg: DictConfig, epochs: int) -> DictConfig:
    """The config of a refit (``refit=true``): the same run trained afresh (same seed) on the training
    and validation data together (``data.train_on_validation``) for ``epochs`` epochs, the first
    fit's best, without early stopping; its checkpoints and logs go to ``<output_dir>/refit``, its
    test plot beside the run's."""
    output_dir = str(cfg.paths.output_dir)
    refit = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(refit):
        refit.paths.output_dir = str(Path(output_dir) / "refit")
        refit.data.train_on_validation = True
        refit.trainer.max_epochs = epochs
        refit.trainer.min_epochs = epochs
        refit.ckpt_path = None
        callbacks = refit.get("callbacks") or {}
        for name in ("early_stopping", "model_checkpoint"):  # in-sample validation picks nothing now
            callbacks.pop(name, None)
        if callbacks.get("test_plot") is not None:
            callbacks.test_plot.dirpath = output_dir
    return refit


def check_refit(cfg: DictConfig) -> None:
    """``refit=true`` needs a data module that can train on its validation period: say so before
    the first fit rather than after it."""
    if cfg.model.get("calibrate"):
        raise ConfigError(
            "refit=true trains on the validation windows that model.calibrate=true fits its factor on: "
            "use one of them"
        )
    target = cfg.data.get("_target_")
    params = inspect.signature(get_object(target)).parameters if target else {}
    if "train_on_validation" not in params:
        raise ConfigError(
            f"refit=true needs a data module that can train on its validation period (an argument "
            f"train_on_validation), as the forecasting ones (data=airline, csv, panel ...); data is {target}"
        )


def best_epochs(checkpoint_path: str) -> int:
    """How many epochs the run had trained when it wrote ``checkpoint_path``."""
    return int(torch.load(checkpoint_path, map_location="cpu", weights_only=False)["epoch"]) + 1


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; write ``metrics.json`` with the model's and the naive
    baseline's test metrics into the run's output directory. Returns the metrics.

    With ``refit=true`` the tested model is instead retrained on the training and validation data
    for as many epochs as the best checkpoint had (:func:`refit_config`): the forecast then uses the
    most recent history too, as the classical baselines do."""
    if cfg.get("refit"):
        check_refit(cfg)
    datamodule, model, trainer = build(cfg)
    output_dir = Path(cfg.paths.output_dir)
    log.info("data: %s", datamodule.describe())
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics: dict[str, float] = _collect(trainer, ("val/",))
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if cfg.get("refit"):
        if not best:
            raise RuntimeError("refit=true needs the first fit's best checkpoint (model_checkpoint is off)")
        epochs = best_epochs(best)
        log.info("refit: training afresh on the training and validation data for %d epochs", epochs)
        datamodule, model, trainer = build(refit_config(cfg, epochs))
        trainer.fit(model, datamodule=datamodule)
        metrics["refit_epochs"] = epochs
    if cfg.get("test", True):
        if cfg.get("refit"):
            best = ""  # the refit model as trained: its validation is in-sample
        elif not best:
            log.warning("no best checkpoint (fast_dev_run or checkpointing off): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False, verbose=False)
        metrics.update(_collect(trainer, ("test/", "baseline")))
        metrics.update(getattr(model, "test_report", None) or {})
        metrics["best_checkpoint"] = best or None
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        log.info("%s", run_summary(metrics, output_dir))
    return metrics


def results_table(metrics: dict[str, Any]) -> str:
    """The test metrics as a text table: one row per method (the model, then each baseline), one
    column per scalar test metric of the model (per-step lists stay in ``metrics.json``)."""
    methods: dict[str, str] = {"model": "test/"}
    for key in metrics:
        prefix = key.split("/", 1)[0]
        if prefix.startswith("baseline") and "/" in key:
            name = "naive baseline" if prefix == "baseline" else prefix.removeprefix("baseline_")
            methods.setdefault(name, f"{prefix}/")
    columns = [
        k.removeprefix("test/")
        for k, v in metrics.items()
        if k.startswith("test/") and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    if not columns:
        return ""
    rows = []
    for name, prefix in methods.items():
        values = [metrics.get(prefix + c) for c in columns]
        if any(isinstance(v, int | float) for v in values):
            rows.append([name, *(float(v) if isinstance(v, int | float) else None for v in values)])
    return text_table(["", *columns], rows)


def run_summary(metrics: dict[str, Any], output_dir: Path) -> str:
    """What the console shows at the end of a run: the test results table and what was written where."""
    shown = (p for p in output_dir.iterdir() if not p.name.startswith("."))
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in shown)
    table = results_table(metrics)
    return "\n".join(
        [
            *(["test results (metrics.json has every value):", table] if table else []),
            f"run folder: {output_dir}",
            f"written: {', '.join(written)}",
        ]
    )


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a sweeper optimizes: the best validation score when it is the monitored one."""
    if not name:
        return None
    for key in (f"{name}_best", name):
        if key in metrics:
            return metrics[key]
    raise KeyError(f"optimized_metric '{name}' is not among the run's metrics: {sorted(metrics)}")


def load_run_config(cfg: DictConfig) -> tuple[Path, DictConfig]:
    """``cfg.ckpt_path`` checked, and the config of the training run that wrote it: ``cfg.run_config``
    or the run's ``.hydra/config.yaml`` beside its ``checkpoints/`` folder."""
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint at {ckpt}")
    run_config = (
        Path(cfg.run_config)
        if cfg.get("run_config")
        else ckpt.resolve().parent.parent / ".hydra" / "config.yaml"
    )
    if not run_config.is_file():
        raise FileNotFoundError(
            f"run_config: the training config was expected at {run_config}; pass run_config=<path to the "
            "run's .hydra/config.yaml>"
        )
    return ckpt, OmegaConf.load(run_config)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a saved checkpoint with the config of the run that wrote it."""
    ckpt, run_cfg = load_run_config(cfg)
    run_cfg.paths = cfg.paths
    run_cfg.trainer = OmegaConf.merge(run_cfg.trainer, cfg.get("trainer") or {})
    run_cfg.callbacks = OmegaConf.create(
        {k: v for k, v in (run_cfg.get("callbacks") or {}).items() if k == "test_plot"}
    )
    run_cfg.logger = cfg.get("logger")
    datamodule, model, trainer = build(run_cfg)
    # the weights only: restoring through Lightning's ckpt_path would also restore the training run's
    # callbacks (absent here) and warn that they are missing and that their folder moved
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = _collect(trainer, ("test/", "baseline"))
    metrics.update(getattr(model, "test_report", None) or {})
    metrics["checkpoint"] = str(ckpt)
    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        log.info("%s", run_summary(metrics, Path(cfg.paths.output_dir)))
    return metrics
