"""Compose the project's Hydra configs in tests, as the lightning-hydra-template does."""

from __future__ import annotations

import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "configs")
QUIET = ["trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null"]


def compose_config(overrides: list[str], output_dir: Path | None = None, name: str = "train") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir)
    GlobalHydra.instance().clear()
    return cfg


def run_train(overrides: list[str], output_dir: Path) -> dict:
    from rnnkit.training.run import train

    cfg = compose_config([*QUIET, *overrides], output_dir)
    metrics = train(cfg)
    written = json.loads((output_dir / "metrics.json").read_text())
    assert written.keys() == metrics.keys()
    return metrics
