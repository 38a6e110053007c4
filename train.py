"""Train a recurrent model: ``python train.py task=timeseries cell=lstm`` (see README)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rnnkit.training.run import optimized_value, train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
