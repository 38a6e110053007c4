"""Rolling-origin backtest of a forecasting run: ``python backtest.py origins=4 [overrides]`` (see README)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rnnkit.training.backtest import backtest


@hydra.main(version_base="1.3", config_path="configs", config_name="backtest")
def main(cfg: DictConfig) -> None:
    backtest(cfg)


if __name__ == "__main__":
    main()
