"""Generate text from a language model's checkpoint:
``python sample.py ckpt_path=<run>/checkpoints/<file>.ckpt prompt="ROMEO:" length=500 temperature=0.8``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnkit.training.command_line import check_command_line
from rnnkit.training.run import failure_recorded
from rnnkit.training.sample import sample

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    with failure_recorded("sample"):  # the error and its traceback in the run folder
        sample(cfg)


if __name__ == "__main__":
    check_command_line(CONFIGS, "sample", sys.argv[1:])  # a misspelt key stops here, with "did you mean"
    main()
