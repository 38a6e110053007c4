"""What the four task shapes share: building the encoder from any cell, optimizers, truncated BPTT,
metrics for the model and for the data's naive baseline, and the test predictions for plots."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from rnnkit.cells.base import State, map_state
from rnnkit.data.base import DataSpec, baseline_prefix

Factory = Callable[..., nn.Module]
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., object]


def call_factory(factory: Factory, **kwargs: object) -> nn.Module:
    """Call a config-built factory (usually a ``functools.partial``) with the keyword arguments it
    accepts: a TDNN has no ``bidirectional``, a recurrent layer does."""
    target = getattr(factory, "func", factory)
    params = inspect.signature(target).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return factory(**kwargs)


def encoder_width(encoder: nn.Module) -> int:
    """Features per step of an encoder's output."""
    return encoder.output_size * getattr(encoder, "num_directions", 1)


def detach_state(state: State | None) -> State | None:
    return None if state is None else map_state(lambda s: s.detach(), state)


def merge_directions(state: State, num_directions: int) -> State:
    """A bidirectional encoder's ``(L*2, B, S)`` state -> ``(L, B, S)`` for a one-way decoder (sum)."""
    if num_directions == 1:
        return state
    return map_state(lambda s: s.view(-1, num_directions, *s.shape[1:]).sum(1), state)


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN or infinite during training (see ``nonfinite``)."""


class SequenceTask(L.LightningModule):
    """Base LightningModule of rnnkit's tasks.

    Args:
        spec: the DataModule's :class:`~rnnkit.data.DataSpec` (sizes, classification or not).
        encoder: factory of the recurrent layer, called with ``input_size`` and ``batch_first=True``:
            ``rnnkit.nn.Recurrent`` with any registered cell, or ``rnnkit.nn.TDNN`` (``_partial_`` in
            configs).
        optimizer: factory ``optimizer(params)``; scheduler: optional factory ``scheduler(optimizer)``
            (stepped per epoch on ``val/loss``).
        tbptt_steps: truncated BPTT: when > 0, each batch is split along time into chunks of this
            many steps, the state is carried and detached between chunks, and the optimizer steps after
            each chunk that has a loss (manual optimization).
        gradient_clip_val: clip the gradient norm to this value (0: off). The total gradient norm
            before clipping is logged every step as ``train/grad_norm``.
        nonfinite: what a non-finite loss or gradient does: ``"stop"`` (default) ends the run with a
            :class:`NonFiniteError` naming the step and the last checkpoint, before the optimizer
            touches the weights (so no checkpoint ever holds NaN weights); ``"skip"`` skips that
            optimizer step (logged as ``train/skipped_steps``) and trains on.
    """

    def __init__(
        self,
        spec: DataSpec,
        encoder: Factory,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        tbptt_steps: int = 0,
        gradient_clip_val: float = 0.0,
        nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if tbptt_steps < 0:
            raise ValueError(f"tbptt_steps must be >= 0, got {tbptt_steps}")
        if gradient_clip_val < 0:
            raise ValueError(f"gradient_clip_val must be >= 0, got {gradient_clip_val}")
        self.spec = spec
        self.encoder_factory = encoder
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.tbptt_steps = tbptt_steps
        self.gradient_clip_val = gradient_clip_val
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self.automatic_optimization = tbptt_steps == 0
        self.baseline_metrics = nn.ModuleDict()
        self.test_predictions: list[Tensor] = []
        self._carried: dict[str, State] = {}

    def build_encoder(self, input_size: int, **overrides: object) -> nn.Module:
        return call_factory(self.encoder_factory, input_size=input_size, batch_first=True, **overrides)

    # ------------------------------------------------------------------ to implement
    def metrics(self) -> MetricCollection:
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Training loss of a whole batch (automatic optimization)."""
        raise NotImplementedError

    def time_chunks(self, batch: dict[str, Tensor], steps: int) -> Iterator[dict[str, Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} does not support tbptt_steps")

    def chunk_loss(self, chunk: dict[str, Tensor], state: State | None) -> tuple[Tensor | None, State]:
        raise NotImplementedError(f"{type(self).__name__} does not support tbptt_steps")

    def evaluate(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, prediction, target)`` on a validation/test batch; prediction and target in the
        form the metrics take (original units for series)."""
        raise NotImplementedError

    def baseline_prediction(self, batch: dict[str, Tensor], raw: Tensor) -> Tensor:
        """Map a DataModule baseline output to the metrics' prediction form (default: unchanged)."""
        return raw

    # ------------------------------------------------------------------ Lightning
    def setup(self, stage: str) -> None:
        self._check_stream_devices()
        if not hasattr(self, "val_metrics"):
            self.val_metrics = self.metrics().clone(prefix="val/")
            self.test_metrics = self.metrics().clone(prefix="test/")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every checkpoint carries the data's :class:`DataSpec` (sizes, class names, the vocabulary
        built from the training data) under ``"rnnkit_spec"``, so it can be used without the data."""
        spec = self.spec
        if dataclasses.is_dataclass(spec):
            checkpoint["rnnkit_spec"] = dataclasses.asdict(spec)
        else:  # Hydra's instantiate hands dataclass arguments over as DictConfig
            from omegaconf import OmegaConf

            checkpoint["rnnkit_spec"] = OmegaConf.to_container(spec, resolve=True)

    # ------------------------------------------------------------------ teacher forcing schedule
    teacher_forcing: float = 1.0
    teacher_forcing_end: float | None = None

    def current_teacher_forcing(self) -> float:
        """The teacher-forcing probability of this epoch: ``teacher_forcing``, or, when
        ``teacher_forcing_end`` is set, moved linearly to it over ``trainer.max_epochs``."""
        if self.teacher_forcing_end is None or self._trainer is None:
            return self.teacher_forcing
        last = max(1, (self.trainer.max_epochs or 1) - 1)
        progress = min(1.0, self.current_epoch / last)
        return self.teacher_forcing + (self.teacher_forcing_end - self.teacher_forcing) * progress

    def on_train_epoch_start(self) -> None:
        self._carried.pop("train", None)
        if self.teacher_forcing_end is not None:
            self.log("train/teacher_forcing", self.current_teacher_forcing())

    # ------------------------------------------------------------------ streams
    def carried_state(self, phase: str) -> State | None:
        """For stream data (``spec.stream``: consecutive batches continue each row), the final state of
        the previous batch of this phase (``"train"`` or ``"eval"``), detached; else None. Every epoch
        (and every validation or test run) starts from the zero state."""
        return self._carried.get(phase) if getattr(self.spec, "stream", False) else None

    def carry(self, phase: str, state: State | None) -> None:
        """Keep a batch's final state for the next batch of a stream (detached: truncated BPTT)."""
        if getattr(self.spec, "stream", False) and state is not None:
            self._carried[phase] = detach_state(state)

    def _check_stream_devices(self) -> None:
        if getattr(self.spec, "stream", False) and self._trainer is not None and self.trainer.world_size > 1:
            raise ValueError(
                "stream data (a text read as parallel streams, state carried from batch to batch) runs on "
                f"one device; the trainer has {self.trainer.world_size} processes, whose distributed "
                "sampler would break the streams apart: use trainer=default or trainer=gpu"
            )

    # ------------------------------------------------------------------ non-finite guard
    def _last_checkpoint(self) -> str:
        callback = getattr(self.trainer, "checkpoint_callback", None)
        path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        return path or "none written yet"

    def _nonfinite(self, what: str, batch_idx: int) -> bool:
        """Handle a non-finite loss or gradient: raise (stop) or count a skipped step (skip)."""
        where = f"global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite {what} at {where}; the weights were not updated with it and no checkpoint "
                f"holds them. Last checkpoint: {self._last_checkpoint()}. Lower the learning rate, clip "
                "gradients (model.gradient_clip_val), or pass model.nonfinite=skip to skip such steps."
            )
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps))
        return True

    def _gradient_norm(self) -> Tensor:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(())
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    def _check_gradients(self, optimizer, batch_idx: int) -> bool:
        """Log the total gradient norm before clipping; False when the step must not be taken."""
        norm = self._gradient_norm()
        self.log("train/grad_norm", norm)
        if bool(torch.isfinite(norm)):
            return True
        self._nonfinite(f"gradient (total norm {norm.item()})", batch_idx)
        optimizer.zero_grad(set_to_none=True)  # skip: no gradient, no update (momenta untouched)
        return False

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.automatic_optimization:
            self._check_gradients(optimizer, self._batch_idx)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        self._batch_idx = batch_idx
        if self.automatic_optimization:
            loss = self.loss(batch)
            if not bool(torch.isfinite(loss)) and self._nonfinite(f"loss ({loss.item()})", batch_idx):
                return None  # skip: Lightning takes no backward and no step
            self.log("train/loss", loss, prog_bar=True, batch_size=self._batch_size(batch))
            return loss
        optimizer = self.optimizers()
        state, losses = self.carried_state("train"), []
        for chunk in self.time_chunks(batch, self.tbptt_steps):
            loss, state = self.chunk_loss(chunk, state)
            state = detach_state(state)  # truncate: no gradient flows into earlier chunks
            if loss is None:
                continue
            if not bool(torch.isfinite(loss)) and self._nonfinite(f"loss ({loss.item()})", batch_idx):
                continue
            optimizer.zero_grad()
            self.manual_backward(loss)
            if not self._check_gradients(optimizer, batch_idx):
                continue
            if self.gradient_clip_val:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val)
            optimizer.step()
            losses.append(loss.detach())
        self.carry("train", state)
        if losses:
            self.log(
                "train/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=self._batch_size(batch)
            )
        return None

    def on_train_epoch_end(self) -> None:
        """Step the LR scheduler here, not in Lightning's loop: this runs before the end-of-epoch
        checkpoint is written, so a resumed run continues the schedule exactly."""
        if self.scheduler_factory is None:
            return
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = self.trainer.callback_metrics.get("val/loss")
            if metric is not None:
                scheduler.step(metric)
        else:
            scheduler.step()

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Lightning's own stepping is off: see :meth:`on_train_epoch_end`."""

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, prediction, target = self.evaluate(batch)
        self.val_metrics.update(prediction, target)
        self.log("val/loss", loss, prog_bar=True, batch_size=self._batch_size(batch))

    def on_validation_epoch_start(self) -> None:
        self._carried.pop("eval", None)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=False)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self._carried.pop("eval", None)
        self.test_predictions = []

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, prediction, target = self.evaluate(batch)
        self.test_metrics.update(prediction, target)
        self.log("test/loss", loss, batch_size=self._batch_size(batch))
        self.test_predictions.append(prediction.detach().cpu())
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        for name, raw in datamodule.baseline(batch).items():
            if name not in self.baseline_metrics:
                prefix = baseline_prefix(len(self.baseline_metrics), name)
                self.baseline_metrics[name] = self.metrics().clone(prefix=prefix).to(self.device)
            self.baseline_metrics[name].update(self.baseline_prediction(batch, raw), target)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        for collection in self.baseline_metrics.values():
            self.log_dict(collection.compute())
            collection.reset()
        self.baseline_metrics.clear()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"},
        }

    @staticmethod
    def _batch_size(batch: dict[str, Tensor]) -> int:
        return len(next(iter(batch.values())))
