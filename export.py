"""Export a trained checkpoint for serving:
``python export.py ckpt_path=<run>/checkpoints/<file>.ckpt format=onnx|torchscript|exported``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnkit.training.command_line import check_command_line
from rnnkit.training.export import export
from rnnkit.training.run import failure_recorded

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
def main(cfg: DictConfig) -> None:
    with failure_recorded("export"):  # the error and its traceback in the run folder
        export(cfg)


if __name__ == "__main__":
    check_command_line(CONFIGS, "export", sys.argv[1:])  # a misspelt key stops here, with "did you mean"
    main()
