"""Evaluate a saved checkpoint on its run's test split: ``python eval.py ckpt_path=<path>``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnkit.training.command_line import check_command_line
from rnnkit.training.run import evaluate, failure_recorded

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    with failure_recorded("eval"):  # the error and its traceback in the run folder
        evaluate(cfg)


if __name__ == "__main__":
    check_command_line(CONFIGS, "eval", sys.argv[1:])  # a misspelt key stops here, with "did you mean"
    main()
