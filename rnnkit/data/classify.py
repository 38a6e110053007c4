"""Many-to-one data: handwritten digits read row by row, and the adding problem."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset, check_fractions, split_indices


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits (UCI optdigits test set, CC BY 4.0), pixel values 0..16."""
    path = resources.files("rnnkit.data") / "assets" / "digits.npz"
    with path.open("rb") as f, np.load(f) as data:
        images, labels = data["images"], data["labels"]
    if images.shape[1:] != (8, 8) or len(images) != len(labels):
        raise ValueError(
            f"{path}: expected images (N, 8, 8) and N labels, got {images.shape}, {labels.shape}"
        )
    return images, labels


class DigitsDataModule(SequenceDataModule):
    """Sequential digits: each 8x8 image is a sequence of 8 rows of 8 features (pixels / 16).

    Seeded split: ``test_fraction`` and ``val_fraction`` of the images, the rest for training.
    Baseline: the majority class of the training split.
    """

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        check_fractions(val_fraction, test_fraction)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def build(self) -> None:
        images, labels = load_digits()
        x = torch.tensor(images, dtype=torch.float32) / 16.0  # (N, 8 rows, 8 pixels)
        y = torch.tensor(labels, dtype=torch.long)
        test, val, train = split_indices(len(x), [self.test_fraction, self.val_fraction, 0], self.seed)
        self.splits = {
            name: TensorDictDataset(x=x[i], y=y[i])
            for name, i in (("train", train), ("val", val), ("test", test))
        }
        self.majority = int(torch.bincount(y[train], minlength=10).argmax())
        self.spec = DataSpec(
            input_size=8, output_size=10, classification=True, names=[str(d) for d in range(10)]
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = torch.zeros(len(batch["y"]), 10, device=batch["y"].device)
        logits[:, self.majority] = 1.0
        return {"majority_class": logits}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = self.splits["test"].tensors
        fig, axes = plt.subplots(3, 8, figsize=(10, 4.2))
        for ax, image, label, logits in zip(axes.flat, data["x"], data["y"], predictions, strict=False):
            guess = int(logits.argmax())
            ax.imshow(image.numpy(), cmap="gray_r")
            ax.set_title(f"{guess} ({int(label)})", color="C2" if guess == int(label) else "C3", fontsize=9)
            ax.axis("off")
        fig.suptitle("test digits read row by row: prediction (truth)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


class AddingDataModule(SequenceDataModule):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015), a long-memory test.

    Each step carries (value ~ U(0, 1), marker); exactly two markers are 1, one in each half of the
    sequence; the target is the sum of the two marked values. Predicting the mean (1.0) scores MSE
    1/6 ~ 0.167. With ``min_length < length`` lengths vary and batches carry ``lengths``.
    """

    def __init__(
        self,
        length: int = 100,
        min_length: int | None = None,
        train_size: int = 20000,
        val_size: int = 1000,
        test_size: int = 2000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if length < 2:
            raise ValueError(f"length must be at least 2, got {length}")
        if min_length is not None and not 2 <= min_length <= length:
            raise ValueError(f"min_length must lie in [2, length={length}], got {min_length}")
        self.length = length
        self.min_length = min_length or length
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def _make(self, n: int, rng: np.random.Generator) -> dict[str, Tensor]:
        lengths = rng.integers(self.min_length, self.length + 1, n)
        values = rng.uniform(0, 1, (n, self.length))
        markers = np.zeros((n, self.length))
        half = lengths // 2
        first = (rng.uniform(0, 1, n) * half).astype(int)
        second = half + (rng.uniform(0, 1, n) * (lengths - half)).astype(int)
        rows = np.arange(n)
        markers[rows, first] = 1
        markers[rows, second] = 1
        pad = np.arange(self.length)[None, :] >= lengths[:, None]
        values[pad] = 0
        target = values[rows, first] + values[rows, second]
        out = {
            "x": torch.tensor(np.stack([values, markers], -1), dtype=torch.float32),
            "y": torch.tensor(target[:, None], dtype=torch.float32),
        }
        if self.min_length < self.length:
            out["lengths"] = torch.tensor(lengths, dtype=torch.long)
        return out

    def build(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.splits = {name: TensorDictDataset(**self._make(n, rng)) for name, n in self.sizes.items()}
        self.mean = float(self.splits["train"].tensors["y"].mean())
        self.spec = DataSpec(input_size=2, output_size=1, classification=False, names=["sum"])

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"train_mean": torch.full_like(batch["y"], self.mean)}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        truth = self.splits["test"].tensors["y"][: len(predictions), 0].numpy()
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(truth, predictions[:, 0].numpy(), s=4, alpha=0.5)
        ax.plot([0, 2], [0, 2], color="0.4", lw=1)
        ax.axhline(self.mean, color="C3", lw=1, ls="--", label="baseline: train mean")
        ax.set_xlabel("true sum")
        ax.set_ylabel("predicted sum")
        ax.set_title(f"adding problem, T = {self.length}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
