"""One-to-many data: waveforms from their parameters, and digit images to their spelled names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset, split_indices
from rnnkit.data.classify import load_digits
from rnnkit.data.sequence_pairs import render_text_samples
from rnnkit.data.tokens import Vocab, majority_per_position

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class WaveformDataModule(SequenceDataModule):
    """Generate y_t = A sin(2 pi f t / U + phi), t = 0..U-1, from v = (f, sin phi, cos phi, A).

    f ~ U(``min_cycles``, ``max_cycles``) cycles per sequence, phi ~ U(0, 2 pi), A ~ U(0.5, 1.5).
    Baseline: the constant training mean.
    """

    def __init__(
        self,
        steps: int = 50,
        min_cycles: float = 0.5,
        max_cycles: float = 3.0,
        train_size: int = 8000,
        val_size: int = 500,
        test_size: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if steps < 2 or not 0 < min_cycles <= max_cycles:
            raise ValueError(
                f"need steps >= 2 and 0 < min_cycles <= max_cycles, got {steps}, {min_cycles}, {max_cycles}"
            )
        self.steps, self.min_cycles, self.max_cycles = steps, min_cycles, max_cycles
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def build(self) -> None:
        rng = np.random.default_rng(self.seed)
        t = np.arange(self.steps)
        self.splits = {}
        for name, n in self.sizes.items():
            f = rng.uniform(self.min_cycles, self.max_cycles, n)
            phi = rng.uniform(0, 2 * math.pi, n)
            amp = rng.uniform(0.5, 1.5, n)
            y = amp[:, None] * np.sin(2 * math.pi * f[:, None] * t / self.steps + phi[:, None])
            v = np.stack([f, np.sin(phi), np.cos(phi), amp], axis=1)
            self.splits[name] = TensorDictDataset(
                v=torch.tensor(v, dtype=torch.float32), y=torch.tensor(y[..., None], dtype=torch.float32)
            )
        self.mean = float(self.splits["train"].tensors["y"].mean())
        self.spec = DataSpec(input_size=4, output_size=1, names=["y"])

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"constant_mean": torch.full_like(batch["y"], self.mean)}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = self.splits["test"].tensors
        fig, axes = plt.subplots(2, 3, figsize=(11, 5), sharex=True)
        for k, ax in enumerate(axes.flat):
            f, s, c, a = data["v"][k].tolist()
            ax.plot(data["y"][k, :, 0].numpy(), color="0.3", label="truth")
            ax.plot(predictions[k, :, 0].numpy(), "--", color="C3", label="generated")
            ax.set_title(f"f={f:.2f}, phase={math.atan2(s, c):.2f}, A={a:.2f}", fontsize=9)
        axes.flat[0].legend()
        fig.suptitle("waveforms generated from (frequency, phase, amplitude), free-running")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


class DigitNamesDataModule(SequenceDataModule):
    """Spell the name of the digit in an 8x8 image: 64 pixels -> "seven" <eos>.

    Baseline: the most frequent training character at each position.
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
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def build(self) -> None:
        images, labels = load_digits()
        self.vocab = Vocab("".join(DIGIT_NAMES))
        v = torch.tensor(images.reshape(len(images), 64), dtype=torch.float32) / 16.0
        names = self.vocab.pad([self.vocab.encode(DIGIT_NAMES[d], eos=True) for d in labels])
        test, val, train = split_indices(len(v), [self.test_fraction, self.val_fraction, 0], self.seed)
        self.splits = {
            n: TensorDictDataset(v=v[i], y=names[i])
            for n, i in (("train", train), ("val", val), ("test", test))
        }
        y = self.splits["train"].tensors["y"]
        self.position_majority = majority_per_position(y, len(self.vocab))
        self.spec = DataSpec(
            input_size=64, output_size=len(self.vocab), classification=True, vocab=self.vocab.itos
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        majority = self.position_majority.to(batch["y"].device)
        return {"majority_token": majority.expand_as(batch["y"]).clone()}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        data = self.splits["test"].tensors
        rows = []
        for y, p in zip(data["y"][:24], predictions, strict=False):
            rows.append(
                (
                    f"image of {DIGIT_NAMES.index(self.vocab.decode(y))}",
                    self.vocab.decode(y),
                    self.vocab.decode(p),
                )
            )
        render_text_samples(rows, "digit image -> spelled name (greedy)", path)
