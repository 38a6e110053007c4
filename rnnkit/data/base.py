"""What every rnnkit DataModule tells the task it feeds, and the shared loader plumbing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


@dataclass
class DataSpec:
    """Shapes and semantics of a DataModule's batches, read by the task to size its model.

    Attributes:
        input_size: features per input step (tokens arrive one-hot, so the vocabulary size).
        output_size: regression outputs per step, or the number of classes for classification.
        classification: whether targets are class indices (cross-entropy) or values (MSE).
        vocab: token strings for symbol tasks (index -> string), used to render predictions.
        feedback: for next-step series, the input features that are the series' own previous values:
            during a rollout the task writes its predictions there.
        seasonal_lags: for next-step series, the input features that carry v_{t+1-m}, the value one
            season before the step being predicted, one per output (empty if none): known inputs,
            relative to a window's level like the fed-back ones.
        season: the seasonal period m of a series (for seasonal naive and MASE), 1 if none.
        horizon: how many steps ahead the evaluated forecasts are made.
        mase_scale: mean |v_t - v_{t-m}| over the training split, in original units.
        names: a readable name per output (series) or class.
        seq2seq: batches are source/target token sequences of different lengths (encoder-decoder).
        evaluation: for series, ``"origin"`` (validation and test windows hold ``context`` observed
            steps, then a whole horizon to forecast) or ``"rolling"`` (one target per window, ``horizon``
            steps ahead).
        context: observed steps before the forecast origin in an ``"origin"`` window.
        separator: for token tasks, how tokens join into text: ``""`` characters, ``" "`` words.
        stream: consecutive batches continue each row (a text read as parallel streams): the task
            carries its recurrent state from one batch to the next, detached.
        legal_next: symbol targets carry, after the next symbol, the set of symbols a grammar allows
            next (``y (B, T, 1 + V)``), judged by the legal-set string accuracy.
    """

    input_size: int
    output_size: int
    classification: bool = False
    vocab: list[str] | None = None
    feedback: list[int] = field(default_factory=list)
    seasonal_lags: list[int] = field(default_factory=list)
    season: int = 1
    horizon: int = 1
    mase_scale: float = 1.0
    names: list[str] | None = None
    seq2seq: bool = False
    evaluation: str = "rolling"
    context: int = 0
    separator: str = ""
    stream: bool = False
    legal_next: bool = False


class TensorDictDataset(Dataset):
    """Rows of a dict of equally long tensors, as dicts."""

    def __init__(self, **tensors: Tensor) -> None:
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"TensorDictDataset: all tensors need the same length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): a run resumed from a checkpoint sees the same
    batches as an uninterrupted one. Lightning calls ``set_epoch`` at every epoch start."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class SequenceDataModule(L.LightningDataModule):
    """Base of rnnkit's DataModules: seeded, offline, and aware of a naive baseline.

    Subclasses fill ``self.spec`` and ``self.splits`` (``"train"``, ``"val"``, ``"test"`` datasets) in
    :meth:`build`, which runs once (``setup`` is idempotent), and implement :meth:`baseline`.
    """

    def __init__(self, batch_size: int = 64, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.spec: DataSpec | None = None
        self.splits: dict[str, Dataset] = {}

    def build(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.build()
            missing = {"train", "val", "test"} - set(self.splits)
            if missing or self.spec is None:
                raise RuntimeError(f"{type(self).__name__}.build must set spec and splits; missing {missing}")

    def loader_batch_size(self, split: str) -> int:
        """Rows per batch of a split's loader (``batch_size`` unless a DataModule lays its data out
        otherwise)."""
        return self.batch_size

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        sampler = EpochShuffleSampler(len(dataset), self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.loader_batch_size(split),
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ------------------------------------------------------------------ task hooks
    def baseline(self, batch: dict[str, Tensor]) -> Tensor:
        """The naive prediction for a batch, in the same form as the model's prediction."""
        raise NotImplementedError

    def inverse_target(self, y: Tensor) -> Tensor:
        """Map targets/predictions back to original units (identity unless the data was scaled)."""
        return y

    def describe(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"{type(self).__name__}({sizes})"


def baseline_prefix(index: int, name: str) -> str:
    """Metric prefix of a DataModule's baseline, by its position in :meth:`SequenceDataModule.baseline`'s
    dict: the first (the naive one) is ``baseline/``, the others ``baseline_<name>/``."""
    return "baseline/" if index == 0 else f"baseline_{name}/"


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Validation and test shares of a dataset: both positive, together below 1."""
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction + test_fraction must lie in (0, 1), got {val_fraction}, {test_fraction}"
        )


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """A seeded random partition of range(n) into parts of the given fractions (the last takes the rest)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for frac in fractions[:-1]:
        stop = start + round(frac * n)
        parts.append(perm[start:stop])
        start = stop
    parts.append(perm[start:])
    return parts
