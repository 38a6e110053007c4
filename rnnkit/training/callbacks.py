"""Callbacks: a plot of the test predictions, and per-epoch reseeding for exact resumption."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


class PlotTestPredictions(L.Callback):
    """After testing, ask the DataModule to draw the model's test predictions into ``dirpath/filename``
    (forecast against truth for series, sample outputs for the other tasks)."""

    def __init__(self, dirpath: str, filename: str = "test_predictions.png") -> None:
        self.path = Path(dirpath) / filename

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        predictions = getattr(pl_module, "test_predictions", None)
        if not trainer.is_global_zero or datamodule is None or not predictions:
            return
        if not hasattr(datamodule, "plot_test"):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            datamodule.plot_test(torch.cat(predictions), self.path)
        except Exception:  # noqa: BLE001 - a failed picture must not cost the run its metrics
            log.exception("could not plot the test predictions to %s", self.path)


class ReseedEveryBatch(L.Callback):
    """Reseed torch, numpy and random from (seed, epoch, batch, rank) before every training batch.

    The shuffle order already depends only on (seed, epoch); this does the same for dropout and any
    other random draw, whatever consumed random numbers before: a run resumed from an end-of-epoch
    checkpoint continues exactly as the uninterrupted run would have.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        seed = hash((self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)) % (2**31)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
