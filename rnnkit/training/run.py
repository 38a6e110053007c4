"""The work behind ``train.py`` and ``eval.py``: build everything from the config, fit, test, report."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from rnnkit.nn.recurrent import Recurrent
from rnnkit.training.checkpoint import atomic_write_text
from rnnkit.training.config_check import check_config

log = logging.getLogger(__name__)


def import_user_modules(cfg: DictConfig) -> None:
    """Import ``imports`` (e.g. a module that registers a user's cell) before anything is built."""
    for module in cfg.get("imports") or []:
        importlib.import_module(module)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """DataModule, task and Trainer from a composed config (the config is checked first)."""
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
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for module in model.modules():  # e.g. backend=triton on a CPU trainer: say so before training
        if isinstance(module, Recurrent):
            module.check_backend(trainer.strategy.root_device)
    return datamodule, model, trainer


def _collect(trainer: L.Trainer, prefixes: tuple[str, ...]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith(prefixes)}


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; write ``metrics.json`` with the model's and the naive
    baseline's test metrics into the run's output directory. Returns the metrics."""
    datamodule, model, trainer = build(cfg)
    output_dir = Path(cfg.paths.output_dir)
    log.info("data: %s", datamodule.describe())
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics: dict[str, float] = _collect(trainer, ("val/",))
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
    if cfg.get("test", True):
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning("no best checkpoint (fast_dev_run or checkpointing off): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update(_collect(trainer, ("test/", "baseline")))
        metrics.update(getattr(model, "test_report", None) or {})
        metrics["best_checkpoint"] = best or None
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        log.info("metrics: %s", json.dumps(metrics, indent=1))
    return metrics


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
    trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=False)
    metrics = _collect(trainer, ("test/", "baseline"))
    metrics.update(getattr(model, "test_report", None) or {})
    metrics["checkpoint"] = str(ckpt)
    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics
