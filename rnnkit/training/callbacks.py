"""Callbacks: a plot of the test predictions, and per-epoch reseeding for exact resumption."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch

from rnnkit.nn.probe import StateGradientProbe

log = logging.getLogger(__name__)


class PlotTestPredictions(L.Callback):
    """After testing, ask the DataModule to draw the model's test predictions into ``dirpath/filename``
    (forecast against truth for series, sample outputs for the other tasks). A forecasting DataModule
    also writes every forecast, with its quantiles and the baselines', to ``dirpath/forecasts.csv``."""

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
        predictions = torch.cat(predictions)
        quantiles = {}
        if hasattr(pl_module, "test_quantile_forecasts"):
            quantiles = pl_module.test_quantile_forecasts()
        if hasattr(datamodule, "write_forecasts"):
            datamodule.write_forecasts(predictions, quantiles, self.path.parent / "forecasts.csv")
        try:
            if quantiles:
                datamodule.plot_test(predictions, self.path, quantiles=quantiles)
            else:
                datamodule.plot_test(predictions, self.path)
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


class GradientFlow(L.Callback):
    """Make vanishing and exploding gradients visible: dL/dh_t and dL/dx_t at every step t.

    Every ``every_n_epochs`` epochs, on the first training batch (same batch each time), it measures
    with :class:`rnnkit.nn.probe.StateGradientProbe`:

    - ``||dL/dh_t||`` for every step t of the first recurrent layer (the total gradient reaching h_t,
      through every later step: the quantity that vanishes in an Elman RNN and not in an LSTM),
      averaged over the batch;
    - ``||dL/dx_t||``, how much the loss still depends on the input at step t;
    - the largest singular value of every recurrent weight (``*weight_hh*``): above 1 the backward
      product can explode, below 1 it shrinks geometrically (seeds 000, 003, 004).

    Logged to the run's loggers (``gradient_flow/...``); the total gradient norm of every step is
    logged by the task as ``train/grad_norm``. At the end of training it saves ``filename`` (heatmaps
    of log10 ||dL/dh_t|| and ||dL/dx_t|| over t, one row per measured epoch) and the numbers beside it
    (``.npz``) for figures that compare runs.
    """

    def __init__(
        self, dirpath: str, every_n_epochs: int = 1, filename: str = "gradient_flow.png", input_key: str = "x"
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.path = Path(dirpath) / filename
        self.every_n_epochs = every_n_epochs
        self.input_key = input_key
        self.epochs: list[int] = []
        self.state_grads: list[np.ndarray] = []
        self.input_grads: list[np.ndarray] = []

    @staticmethod
    def measure(pl_module: L.LightningModule, batch: dict, input_key: str = "x") -> dict[str, np.ndarray]:
        """``{"state": (T,) ||dL/dh_t||, "input": (T,) ||dL/dx_t||}``, batch means, for one batch."""
        batch = dict(batch)
        x = batch[input_key]
        differentiable = x.is_floating_point()  # token ids have no gradient: dL/dx_t reads 0
        if differentiable:
            x = x.detach().requires_grad_()
            batch[input_key] = x
        was_training = pl_module.training
        pl_module.eval()  # no dropout in the measurement; the probe runs the reference loop
        try:
            with torch.enable_grad(), StateGradientProbe() as probe:
                loss = pl_module.loss(batch)
                if not probe.taps:
                    raise RuntimeError("GradientFlow: the model ran no rnnkit recurrent layer")
                taps = probe.taps[0]
                grads = torch.autograd.grad(
                    loss, [*taps, *([x] if differentiable else [])], allow_unused=True
                )
        finally:
            pl_module.train(was_training)
        state_grads = grads[: len(taps)]
        state = torch.stack(
            [g.norm(dim=-1).mean() if g is not None else torch.zeros(()) for g in state_grads]
        )
        if differentiable and grads[-1] is not None:
            input_norms = grads[-1].norm(dim=-1).mean(0)  # (T,): batch-first inputs
        else:
            input_norms = torch.zeros(len(taps))
        return {"state": state.cpu().numpy(), "input": input_norms.detach().cpu().numpy()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch % self.every_n_epochs or trainer.datamodule is None:
            return
        batch = next(iter(trainer.datamodule.train_dataloader()))
        batch = {k: v.to(pl_module.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        key = self.input_key if self.input_key in batch else "src"
        measured = self.measure(pl_module, batch, key)
        self.epochs.append(trainer.current_epoch)
        self.state_grads.append(measured["state"])
        self.input_grads.append(measured["input"])
        first, last = float(measured["state"][0]), float(measured["state"][-1])
        pl_module.log("gradient_flow/dL_dh_first_step", first)
        pl_module.log("gradient_flow/dL_dh_last_step", last)
        pl_module.log(
            "gradient_flow/log10_first_over_last", float(np.log10(max(first, 1e-30) / max(last, 1e-30)))
        )
        for name, param in pl_module.named_parameters():
            if "weight_hh" in name and param.dim() == 2:
                sigma = torch.linalg.matrix_norm(param.detach().float(), ord=2).item()
                pl_module.log(f"gradient_flow/sigma_max/{name}", sigma)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.epochs or not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            self.path.with_suffix(".npz"),
            epochs=np.array(self.epochs),
            state=np.stack(self.state_grads),
            input=np.stack(self.input_grads),
        )
        try:
            plot_gradient_flow(
                {"": (np.array(self.epochs), np.stack(self.state_grads), np.stack(self.input_grads))},
                self.path,
            )
        except Exception:  # noqa: BLE001 - a failed picture must not cost the run
            log.exception("could not draw the gradient flow to %s", self.path)


def plot_gradient_flow(runs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    """Heatmaps of log10 ||dL/dh_t|| and ||dL/dx_t|| (x: time step, y: epoch), one row per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 2.6 * len(runs) + 0.6), squeeze=False)
    for row, (label, (epochs, state, inputs)) in enumerate(runs.items()):
        for col, (values, what) in enumerate(((state, "||dL/dh_t||"), (inputs, "||dL/dx_t||"))):
            ax = axes[row][col]
            image = ax.imshow(
                np.log10(np.maximum(values, 1e-30)),
                aspect="auto",
                origin="lower",
                extent=(-0.5, values.shape[1] - 0.5, -0.5, len(epochs) - 0.5),
                cmap="viridis",
            )
            ax.set_yticks(range(len(epochs)), [str(e) for e in epochs])
            ax.set_xlabel("time step t")
            ax.set_ylabel("epoch")
            ax.set_title(f"{label} log10 {what}".strip())
            fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
