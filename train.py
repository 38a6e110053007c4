"""Train a recurrent model: ``python train.py task=timeseries cell=lstm`` (see README)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnkit.training.command_line import check_command_line
from rnnkit.training.run import failure_recorded, optimized_value, train

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with failure_recorded("train"):  # the error and its traceback in the run folder
        metrics = train(cfg)
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    check_command_line(CONFIGS, "train", sys.argv[1:])  # a misspelt key stops here, with "did you mean"
    main()
