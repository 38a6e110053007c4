"""The UCR/UEA time-series classification archive sets that ship inside aeon (no download), with two
yardsticks computed by aeon in the same run: the archive's own, 1-nearest-neighbour DTW, and
MiniRocket, what a practitioner would try first (random convolutional features and a ridge
classifier; seconds on a CPU).

    pip install -e ".[ucr]"      # aeon (the dev install has it)
    python train.py task=classify data=ucr data.name=GunPoint
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.sequence_files import SequenceFileDataModule, Sequences


def _aeon_data() -> Path:
    try:
        import aeon.datasets
    except ImportError as error:
        raise ImportError(
            "data=ucr reads the archive sets bundled with aeon: pip install 'rnnkit[ucr]' (or aeon)"
        ) from error
    return Path(aeon.datasets.__file__).parent / "data"


def is_classification_set(train_file: Path) -> bool:
    """Whether a ``.ts`` file declares class labels (``@classLabel true``) in its header."""
    with train_file.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            lowered = line.strip().lower()
            if lowered.startswith("@classlabel"):
                return lowered.split()[1:2] == ["true"]
            if lowered.startswith("@data"):
                return False
    return False


def bundled_sets() -> list[str]:
    """The classification sets of the installed aeon's archive folder (each with TRAIN and TEST)."""
    found = []
    for folder in sorted(_aeon_data().iterdir()):
        train, test = folder / f"{folder.name}_TRAIN.ts", folder / f"{folder.name}_TEST.ts"
        if train.is_file() and test.is_file() and is_classification_set(train):
            found.append(folder.name)
    return found


def archive_file(name: str) -> Path:
    """``<aeon>/datasets/data/<name>/<name>_TRAIN.ts``; an unknown name lists the sets there are."""
    train = _aeon_data() / name / f"{name}_TRAIN.ts"
    if not train.is_file() or not is_classification_set(train):
        raise ValueError(
            f"data.name: {name!r} is not a classification set shipped with the installed aeon; "
            f"those are {bundled_sets()} (any other archive file: data=sequences data.path=<X>_TRAIN.ts)"
        )
    return train


def dtw_1nn(train: tuple[Sequences, np.ndarray], test: Sequences) -> np.ndarray:
    """Labels of the test sequences by 1-nearest-neighbour under full-window DTW (aeon), the UCR
    archive's standard baseline. Sequences are ``(T_i, F)``."""
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    def collection(sequences: Sequences) -> np.ndarray | list[np.ndarray]:
        channels_first = [np.ascontiguousarray(s.T) for s in sequences]  # aeon: (channels, T)
        if len({s.shape for s in channels_first}) == 1:
            return np.stack(channels_first)  # (N, C, T)
        return channels_first  # unequal lengths: a list

    knn = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)
    knn.fit(collection(train[0]), train[1])
    return knn.predict(collection(test))


def minirocket(train: tuple[Sequences, np.ndarray], test: Sequences, seed: int = 0) -> np.ndarray | None:
    """Labels of the test sequences by aeon's MiniRocket classifier (10,000 kernels, ridge
    regression with cross-validated regularization) fitted on ``train`` with ``seed``; None where
    the sequences differ in length, which aeon's MiniRocket does not take. Sequences are ``(T_i, F)``."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    lengths = {s.shape[0] for s in [*train[0], *test]}
    if len(lengths) != 1:
        return None
    classifier = MiniRocketClassifier(random_state=seed)
    classifier.fit(np.stack([np.ascontiguousarray(s.T) for s in train[0]]), train[1])  # (N, C, T)
    return classifier.predict(np.stack([np.ascontiguousarray(s.T) for s in test]))


class UCRDataModule(SequenceFileDataModule):
    """A UCR/UEA classification set bundled with aeon (``bundled_sets()``: ArrowHead, BasicMotions,
    GunPoint, ItalyPowerDemand, JapaneseVowels, ...), read from its ``.ts`` files by aeon's reader.

    The archive's train/test split is kept; the validation split is ``val_fraction`` of the archive's
    training set, drawn with ``seed``. Features are standardized with the training split's
    statistics; sequences of unequal length (JapaneseVowels) reach the layers with their lengths.

    Baselines in the same run: the majority class; 1-NN DTW (full window, aeon) fitted on the
    archive's whole training set, the archive's own yardstick (``baseline_dtw_1nn/acc``); and
    MiniRocket (aeon) fitted on the same set with ``seed`` (``baseline_minirocket/acc``; sets of
    equal-length sequences only).

    Args:
        name: the set's name, as the archive spells it.
        val_fraction: share of the archive's training set held out for validation.
        standardize, train_on_validation, per_series, batch_size, seed, num_workers: as
            :class:`SequenceFileDataModule`.
        dtw_baseline: compute the 1-NN DTW baseline (seconds on these sets).
        minirocket_baseline: compute the MiniRocket baseline (seconds; the first use compiles it).
    """

    def __init__(
        self,
        name: str = "GunPoint",
        val_fraction: float = 0.1,
        standardize: bool = True,
        train_on_validation: bool = False,
        per_series: bool = False,
        dtw_baseline: bool = True,
        minirocket_baseline: bool = True,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        super().__init__(
            str(archive_file(name)),
            format="ts",
            val_fraction=val_fraction,
            test_fraction=min(0.5, 1 - val_fraction) / 2,  # unused: the archive gives the test split
            standardize=standardize,
            train_on_validation=train_on_validation,
            per_series=per_series,
            batch_size=batch_size,
            seed=seed,
            num_workers=num_workers,
        )
        self.name = name
        self.dtw_baseline = dtw_baseline
        self.minirocket_baseline = minirocket_baseline
        self.dtw_labels: Tensor | None = None
        self.minirocket_labels: Tensor | None = None

    def validation_share(self) -> float:
        """``val_fraction`` is a share of the archive's training set."""
        return self.val_fraction

    def _read(self) -> dict[str, tuple[Sequences, np.ndarray]]:
        self.archive = super()._read()  # {"train": ..., "test": ...}
        return self.archive

    def build(self) -> None:
        super().build()
        test = self.splits["test"].tensors
        test["index"] = torch.arange(len(test["y"]))  # rows of the test split, for the baseline
        index = {c: i for i, c in enumerate(self.classes)}

        def class_indices(labels: np.ndarray) -> Tensor:
            return torch.tensor([index[label] for label in labels.tolist()], dtype=torch.long)

        if self.dtw_baseline:
            self.dtw_labels = class_indices(dtw_1nn(self.archive["train"], self.archive["test"][0]))
        if self.minirocket_baseline:
            labels = minirocket(self.archive["train"], self.archive["test"][0], self.seed)
            self.minirocket_labels = None if labels is None else class_indices(labels)

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = super().baseline(batch)
        if "index" not in batch:
            return out
        for name, labels in (("dtw_1nn", self.dtw_labels), ("minirocket", self.minirocket_labels)):
            if labels is not None:
                picked = labels.to(batch["y"].device)[batch["index"]]
                out[name] = torch.nn.functional.one_hot(picked, len(self.classes)).float()
        return out

    def describe(self) -> str:
        return super().describe().replace("(", f"({self.name}: ", 1)
