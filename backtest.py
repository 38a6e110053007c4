"""Rolling-origin backtest of a forecasting run: ``python backtest.py origins=4 [overrides]`` (see README)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnkit.training.backtest import backtest
from rnnkit.training.command_line import check_command_line
from rnnkit.training.run import failure_recorded

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="backtest")
def main(cfg: DictConfig) -> None:
    with failure_recorded("backtest"):  # the error and its traceback in the run folder
        backtest(cfg)


if __name__ == "__main__":
    check_command_line(CONFIGS, "backtest", sys.argv[1:])  # a misspelt key stops here, with "did you mean"
    main()
