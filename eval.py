"""Evaluate a saved checkpoint on its run's test split: ``python eval.py ckpt_path=<path>``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rnnkit.training.run import evaluate


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
