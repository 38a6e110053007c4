"""Generate text from a language model's checkpoint:
``python sample.py ckpt_path=<run>/checkpoints/<file>.ckpt prompt="ROMEO:" length=500 temperature=0.8``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rnnkit.training.sample import sample


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    sample(cfg)


if __name__ == "__main__":
    main()
