"""Your own labelled sequences from files, for sequence classification (the many-to-one task).

    python train.py task=classify data=sequences data.path=my_sequences.npz

Formats (``format="auto"`` picks by the file's extension):

- ``.npz``: ``x`` and ``y`` (N labels: ints or strings). ``x`` is an array ``(N, T, F)`` or ``(N, T)``,
  or an object array of N sequences ``(T_i, F)`` / ``(T_i,)`` of any lengths. Optional ``split``
  (N strings ``train``/``val``/``test``); or the splits as ``x_train, y_train, x_val, y_val,
  x_test, y_test`` (``val`` may be left out: it is then drawn from train).
- ``.csv``, long format: one row per time step, columns ``sequence_id``, ``t``, the features, and
  ``label`` (constant within a sequence), optionally ``split``. Rows are ordered by ``t`` within each
  sequence; any other order in the file is fine. Column names are arguments.
- ``.tsv``, the UCR archive's univariate format (``<Name>_TRAIN.tsv`` / ``<Name>_TEST.tsv``): one
  sequence per line, the label first, then the values, tab separated; NaN padding marks shorter
  sequences. Give the ``_TRAIN`` file: its ``_TEST`` twin beside it becomes the test split.
- ``.ts``: the UCR/UEA archive's ``.ts`` format (uni- and multivariate) through aeon's reader
  (``pip install aeon``); the ``_TRAIN``/``_TEST`` pairing as for ``.tsv``.

Splits given by the file are kept; otherwise ``val_fraction`` and ``test_fraction`` are drawn with
``seed`` (val from train when only train and test are given). Features are standardized per feature
with the mean and standard deviation of the training split's real steps only. Sequences of different
lengths are padded with zeros and batches carry ``lengths``, which the layers use: padding is never
read as data. Labels become class indices in sorted order of the training labels; a validation or
test label never seen in training is an error that names it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset, check_fractions, split_indices

FORMATS = ("auto", "npz", "csv", "tsv", "ts")
SPLITS = ("train", "val", "test")
Sequences = list[np.ndarray]  # each (T_i, F), float64


def _as_sequences(x: np.ndarray, where: str) -> Sequences:
    """An array (N, T, F) / (N, T) or an object array of (T_i, F) / (T_i,) -> list of (T_i, F)."""
    items = list(x) if x.dtype == object or x.ndim >= 2 else None
    if items is None:
        raise ValueError(
            f"{where}: x must be (N, T, F), (N, T) or an object array of sequences, got {x.shape}"
        )
    out = []
    for i, seq in enumerate(items):
        seq = np.asarray(seq, dtype=np.float64)
        if seq.ndim == 1:
            seq = seq[:, None]
        if seq.ndim != 2 or len(seq) == 0:
            raise ValueError(
                f"{where}: sequence {i} must be (T, F) or (T,) with T >= 1, got shape {seq.shape}"
            )
        out.append(seq)
    widths = {s.shape[1] for s in out}
    if len(widths) != 1:
        raise ValueError(f"{where}: every sequence needs the same number of features, got {sorted(widths)}")
    return out


def read_npz(path: Path) -> dict[str, tuple[Sequences, np.ndarray]]:
    with np.load(path, allow_pickle=True) as data:
        keys = set(data.files)
        if {"x", "y"} <= keys:
            x, y = _as_sequences(data["x"], f"{path}: x"), np.asarray(data["y"])
            if len(x) != len(y):
                raise ValueError(f"{path}: x holds {len(x)} sequences but y holds {len(y)} labels")
            if "split" not in keys:
                return {"all": (x, y)}
            split = np.asarray(data["split"]).astype(str)
            bad = sorted(set(split) - set(SPLITS))
            if bad:
                raise ValueError(f"{path}: split values must be train/val/test, got {bad}")
            return {
                s: ([x[i] for i in np.flatnonzero(split == s)], y[split == s])
                for s in SPLITS
                if (split == s).any()
            }
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            return {
                s: (_as_sequences(data[f"x_{s}"], f"{path}: x_{s}"), np.asarray(data[f"y_{s}"]))
                for s in SPLITS
                if f"x_{s}" in keys
            }
    raise ValueError(
        f"{path}: expected arrays 'x' and 'y' (optionally 'split'), or 'x_train', 'y_train', 'x_test', "
        f"'y_test' (optionally 'x_val', 'y_val'); found {sorted(keys)}"
    )


def read_long_csv(
    path: Path, id_column: str, time_column: str, label_column: str, feature_columns: list[str] | None
) -> dict[str, tuple[Sequences, np.ndarray]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    needed = [id_column, time_column, label_column, *(feature_columns or [])]
    missing = [c for c in needed if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; the file has {header}")
    reserved = {id_column, time_column, label_column, "split"}
    features = feature_columns or [c for c in header if c not in reserved]
    if not features:
        raise ValueError(f"{path}: no feature columns besides {sorted(reserved & set(header))}")
    grouped: dict[str, list[dict[str, str]]] = {}
    for line, row in enumerate(rows, start=2):
        if row[id_column] in (None, ""):
            raise ValueError(f"{path}: line {line} has no {id_column}")
        grouped.setdefault(row[id_column], []).append(row)
    sequences, labels, splits = [], [], []
    for sequence_id, group in grouped.items():
        group.sort(key=lambda r: float(r[time_column]))
        label = {r[label_column] for r in group}
        if len(label) != 1:
            raise ValueError(f"{path}: sequence {sequence_id!r} has more than one label: {sorted(label)}")
        try:
            sequences.append(np.array([[float(r[c]) for c in features] for r in group], dtype=np.float64))
        except ValueError as error:
            raise ValueError(
                f"{path}: sequence {sequence_id!r}: a feature value is not a number ({error})"
            ) from None
        labels.append(label.pop())
        splits.append(group[0].get("split") or "all")
    labels_array = np.asarray(labels)
    if all(_is_int(v) for v in labels):
        labels_array = labels_array.astype(np.int64)
    split_array = np.asarray(splits).astype(str)
    groups = sorted(set(split_array))
    if groups != ["all"] and set(groups) - set(SPLITS):
        raise ValueError(f"{path}: split values must be train/val/test, got {groups}")
    return {
        g: ([sequences[i] for i in np.flatnonzero(split_array == g)], labels_array[split_array == g])
        for g in groups
    }


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _ucr_pair(path: Path) -> tuple[Path, Path | None]:
    name = path.name
    if "_TRAIN" not in name:
        return path, None
    test = path.with_name(name.replace("_TRAIN", "_TEST"))
    return path, test if test.exists() else None


def read_ucr_tsv(path: Path) -> dict[str, tuple[Sequences, np.ndarray]]:
    def one(file: Path) -> tuple[Sequences, np.ndarray]:
        table = np.loadtxt(file, delimiter="\t", ndmin=2)
        labels, values = table[:, 0], table[:, 1:]
        sequences = []
        for i, row in enumerate(values):
            real = row[~np.isnan(row)]
            if len(real) == 0:
                raise ValueError(f"{file}: line {i + 1} has a label but no values")
            sequences.append(real[:, None])
        return sequences, labels.astype(np.int64) if np.all(labels == labels.round()) else labels

    train, test = _ucr_pair(path)
    return {"train": one(train), "test": one(test)} if test else {"all": one(train)}


def read_ts(path: Path) -> dict[str, tuple[Sequences, np.ndarray]]:
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as error:
        raise ImportError(f"{path}: reading the .ts format needs aeon: pip install aeon") from error

    def one(file: Path) -> tuple[Sequences, np.ndarray]:
        x, y = load_from_ts_file(str(file))
        return [np.asarray(s, dtype=np.float64).T for s in x], np.asarray(y)  # aeon: (channels, T)

    train, test = _ucr_pair(path)
    return {"train": one(train), "test": one(test)} if test else {"all": one(train)}


def series_zscore(series: np.ndarray) -> np.ndarray:
    """``(T, F)`` -> each feature scaled to zero mean and unit variance over the series' own steps
    (a constant feature -> zeros)."""
    std = series.std(0)
    return (series - series.mean(0)) / np.where(std > 0, std, 1.0)


class SequenceFileDataModule(SequenceDataModule):
    """Labelled sequences of any lengths from a file (see the module docstring for the formats).

    Args:
        path: the file.
        format: ``"auto"`` (by extension), ``"npz"``, ``"csv"``, ``"tsv"`` or ``"ts"``.
        val_fraction, test_fraction: the splits drawn with ``seed`` where the file gives none.
        standardize: per-feature (x - mean) / std with the training split's statistics.
        per_series: first scale every series (of every split) on its own, per feature: (x - mean) /
            std over its steps (a constant feature becomes 0), the UCR archive's convention; the
            series' levels and scales are then not seen, only their shapes.
        train_on_validation: train on the validation sequences too (the validation metrics then
            measure the fit, not held-out data): for training sets too small to spare any, and
            what ``refit=true`` retrains with.
        id_column, time_column, label_column, feature_columns: the long CSV's columns
            (``feature_columns=None``: every column but these and ``split``).
        batch_size, seed, num_workers: as every rnnkit DataModule.
    """

    def __init__(
        self,
        path: str,
        format: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        standardize: bool = True,
        train_on_validation: bool = False,
        per_series: bool = False,
        id_column: str = "sequence_id",
        time_column: str = "t",
        label_column: str = "label",
        feature_columns: list[str] | None = None,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if format not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
        check_fractions(val_fraction, test_fraction)
        self.path = Path(path)
        self.format = format
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.standardize = standardize
        self.train_on_validation = bool(train_on_validation)
        self.per_series = bool(per_series)
        self.csv_columns = (
            id_column,
            time_column,
            label_column,
            list(feature_columns) if feature_columns else None,
        )
        self.classes: list = []

    def _read(self) -> dict[str, tuple[Sequences, np.ndarray]]:
        if not self.path.exists():
            raise FileNotFoundError(f"data.path: no such file {self.path}")
        kind = self.format if self.format != "auto" else self.path.suffix.lstrip(".").lower()
        readers = {
            "npz": lambda: read_npz(self.path),
            "csv": lambda: read_long_csv(self.path, *self.csv_columns),
            "tsv": lambda: read_ucr_tsv(self.path),
            "ts": lambda: read_ts(self.path),
        }
        if kind not in readers:
            raise ValueError(
                f"{self.path}: cannot tell the format from '{self.path.suffix}'; pass data.format"
            )
        return readers[kind]()

    def validation_share(self) -> float:
        """Share of a file's training split drawn for validation when the file gives train and test:
        ``val_fraction`` is a share of the whole data set, the training split ``1 - test_fraction``."""
        return self.val_fraction / (1 - self.test_fraction)

    def _splits(
        self, parts: dict[str, tuple[Sequences, np.ndarray]]
    ) -> dict[str, tuple[Sequences, np.ndarray]]:
        """Draw the splits the file does not give."""

        def take(part, index):
            return [part[0][i] for i in index.tolist()], part[1][index.numpy()]

        if "all" in parts:
            whole = parts["all"]
            test, val, train = split_indices(
                len(whole[1]), [self.test_fraction, self.val_fraction, 0], self.seed
            )
            return {"train": take(whole, train), "val": take(whole, val), "test": take(whole, test)}
        if "train" not in parts or "test" not in parts:
            raise ValueError(
                f"{self.path}: the file's splits need at least train and test, got {sorted(parts)}"
            )
        if "val" not in parts:
            share = self.validation_share()
            val, train = split_indices(len(parts["train"][1]), [share, 0], self.seed)
            parts = {**parts, "val": take(parts["train"], val), "train": take(parts["train"], train)}
        return parts

    def build(self) -> None:
        parts = self._splits(self._read())
        if self.per_series:
            parts = {split: ([series_zscore(s) for s in x], y) for split, (x, y) in parts.items()}
        if self.train_on_validation:
            (train_x, train_y), (val_x, val_y) = parts["train"], parts["val"]
            parts = {**parts, "train": ([*train_x, *val_x], np.concatenate([train_y, val_y]))}
        train_x, train_y = parts["train"]
        if len(train_y) == 0:
            raise ValueError(f"{self.path}: the training split is empty")
        self.classes = sorted(set(train_y.tolist()))
        index = {c: i for i, c in enumerate(self.classes)}
        features = train_x[0].shape[1]
        steps = np.concatenate(train_x)  # every real training step, (sum T_i, F)
        mean = steps.mean(0) if self.standardize else np.zeros(features)
        std = steps.std(0) if self.standardize else np.ones(features)
        std = np.where(std > 0, std, 1.0)
        longest = max(len(s) for x, _ in parts.values() for s in x)
        self.splits = {}
        for split in SPLITS:
            x, y = parts[split]
            unknown = sorted(set(y.tolist()) - set(index), key=str)
            if unknown:
                raise ValueError(f"{self.path}: {split} labels never seen in training: {unknown[:10]}")
            if any(s.shape[1] != features for s in x):
                raise ValueError(
                    f"{self.path}: {split} sequences do not have the training's {features} features"
                )
            padded = np.zeros((len(x), longest, features), dtype=np.float32)
            for i, seq in enumerate(x):
                padded[i, : len(seq)] = (seq - mean) / std
            self.splits[split] = TensorDictDataset(
                x=torch.from_numpy(padded),
                y=torch.tensor([index[label] for label in y.tolist()], dtype=torch.long),
                lengths=torch.tensor([len(seq) for seq in x], dtype=torch.long),
            )
        counts = torch.bincount(self.splits["train"].tensors["y"], minlength=len(self.classes))
        self.majority = int(counts.argmax())
        self.feature_mean, self.feature_std = mean, std
        self.spec = DataSpec(
            input_size=features,
            output_size=len(self.classes),
            classification=True,
            names=[str(c) for c in self.classes],
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = torch.zeros(len(batch["y"]), len(self.classes), device=batch["y"].device)
        logits[:, self.majority] = 1.0
        return {"majority_class": logits}
