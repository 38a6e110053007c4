"""Many-to-many data: character addition and reversal (encoder-decoder), delayed echo (aligned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset, check_fractions
from rnnkit.data.tokens import Vocab, majority_per_position, token_separator


def render_text_samples(rows: list[tuple[str, str, str]], title: str, path: Path) -> None:
    """A figure listing (input, truth, prediction) rows, wrong predictions in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1))
    ax.axis("off")
    ax.text(
        0.0,
        1.0,
        f"{'input':<22}{'truth':<16}prediction",
        family="monospace",
        va="top",
        fontsize=10,
        weight="bold",
        transform=ax.transAxes,
    )
    for k, (src, truth, pred) in enumerate(rows, start=1):
        ax.text(
            0.0,
            1.0 - k / (len(rows) + 1),
            f"{src:<22}{truth:<16}{pred}",
            family="monospace",
            va="top",
            fontsize=10,
            color="C2" if pred == truth else "C3",
            transform=ax.transAxes,
        )
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


class TextPairsDataModule(SequenceDataModule):
    """Source -> target character strings for the encoder-decoder :class:`~rnnkit.tasks.ManyToMany`.

    Batches: ``src (B, S)``, ``src_lengths (B,)``, ``tgt (B, U)`` (target + <eos>, <pad>-filled).
    Baseline: the most frequent training token at each target position.
    """

    def __init__(
        self, train_size: int, val_size: int, test_size: int, batch_size: int, seed: int, num_workers: int = 0
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def make_pairs(self, rng: np.random.Generator) -> dict[str, list[tuple[str, str]]]:
        raise NotImplementedError

    def alphabet(self) -> str:
        raise NotImplementedError

    def make_vocab(self, pairs: dict[str, list[tuple[str, str]]]) -> Vocab:
        """The vocabulary (default: the characters of :meth:`alphabet`)."""
        return Vocab(self.alphabet())

    def build(self) -> None:
        pairs = self.make_pairs(np.random.default_rng(self.seed))
        self.vocab = self.make_vocab(pairs)
        self.pairs = pairs
        src_len = max(len(s) for split in pairs.values() for s, _ in split)
        tgt_len = max(len(t) for split in pairs.values() for _, t in split) + 1
        self.splits = {}
        for name, rows in pairs.items():
            src = [self.vocab.encode(s) for s, _ in rows]
            self.splits[name] = TensorDictDataset(
                src=self.vocab.pad(src, src_len),
                src_lengths=torch.tensor([len(s) for s in src]),
                tgt=self.vocab.pad([self.vocab.encode(t, eos=True) for _, t in rows], tgt_len),
            )
        tgt = self.splits["train"].tensors["tgt"]
        self.position_majority = majority_per_position(tgt, len(self.vocab))
        self.spec = DataSpec(
            input_size=len(self.vocab),
            output_size=len(self.vocab),
            classification=True,
            vocab=self.vocab.itos,
            seq2seq=True,
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        majority = self.position_majority.to(batch["tgt"].device)[: batch["tgt"].shape[1]]
        return {"majority_token": majority.expand_as(batch["tgt"]).clone()}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        rows = [
            (s, t, self.vocab.decode(p))
            for (s, t), p in zip(self.pairs["test"][:24], predictions, strict=False)
        ]
        render_text_samples(rows, f"{type(self).__name__}: test samples (greedy decoding)", path)


class AdditionDataModule(TextPairsDataModule):
    """Character-level addition, "123+45" -> "168", operands of 1..``max_digits`` digits.

    Pairs are unique and the test pairs (a, b) never occur in training: held-out sums.
    """

    def __init__(
        self,
        max_digits: int = 3,
        train_size: int = 40000,
        val_size: int = 2000,
        test_size: int = 4000,
        batch_size: int = 128,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_size, val_size, test_size, batch_size, seed, num_workers)
        if max_digits < 1:
            raise ValueError(f"max_digits must be at least 1, got {max_digits}")
        total = sum(self.sizes.values())
        available = (10**max_digits) ** 2
        if total > available // 2:
            raise ValueError(
                f"{total} unique pairs requested but {max_digits}-digit operands give {available}"
            )
        self.max_digits = max_digits

    def alphabet(self) -> str:
        return "0123456789+"

    def _operand(self, rng: np.random.Generator) -> int:
        digits = int(rng.integers(1, self.max_digits + 1))
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return int(rng.integers(low, 10**digits))

    def make_pairs(self, rng: np.random.Generator) -> dict[str, list[tuple[str, str]]]:
        seen: set[tuple[int, int]] = set()
        out: dict[str, list[tuple[str, str]]] = {}
        for name, n in self.sizes.items():
            rows = []
            while len(rows) < n:
                a, b = self._operand(rng), self._operand(rng)
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                rows.append((f"{a}+{b}", str(a + b)))
            out[name] = rows
        return out


class ReversalDataModule(TextPairsDataModule):
    """Reverse a string of 1..``max_length`` letters from an alphabet of ``alphabet_size``."""

    def __init__(
        self,
        max_length: int = 10,
        alphabet_size: int = 10,
        train_size: int = 20000,
        val_size: int = 1000,
        test_size: int = 2000,
        batch_size: int = 128,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_size, val_size, test_size, batch_size, seed, num_workers)
        if not 1 <= alphabet_size <= 26:
            raise ValueError(f"alphabet_size must lie in [1, 26], got {alphabet_size}")
        self.max_length = max_length
        self.letters = "abcdefghijklmnopqrstuvwxyz"[:alphabet_size]

    def alphabet(self) -> str:
        return self.letters

    def make_pairs(self, rng: np.random.Generator) -> dict[str, list[tuple[str, str]]]:
        out = {}
        for name, n in self.sizes.items():
            lengths = rng.integers(1, self.max_length + 1, n)
            words = ["".join(rng.choice(list(self.letters), size=k)) for k in lengths]
            out[name] = [(w, w[::-1]) for w in words]
        return out


class EchoDataModule(SequenceDataModule):
    """Aligned tagging: label step t with the symbol seen ``delay`` steps earlier (a memory test).

    Batches ``x (B, T, V)`` one-hot symbols, ``y (B, T)`` (-100 for the first ``delay`` steps).
    Baseline: the most frequent training label.
    """

    def __init__(
        self,
        delay: int = 3,
        length: int = 20,
        alphabet_size: int = 8,
        train_size: int = 5000,
        val_size: int = 500,
        test_size: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if not 0 <= delay < length:
            raise ValueError(f"delay must lie in [0, length={length}), got {delay}")
        self.delay, self.length, self.alphabet_size = delay, length, alphabet_size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def build(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.splits = {}
        for name, n in self.sizes.items():
            symbols = torch.randint(0, self.alphabet_size, (n, self.length), generator=generator)
            y = torch.full_like(symbols, -100)
            y[:, self.delay :] = symbols[:, : self.length - self.delay]
            x = torch.nn.functional.one_hot(symbols, self.alphabet_size).float()
            self.splits[name] = TensorDictDataset(x=x, y=y)
        train_y = self.splits["train"].tensors["y"]
        self.majority = int(torch.bincount(train_y[train_y >= 0], minlength=self.alphabet_size).argmax())
        self.spec = DataSpec(
            input_size=self.alphabet_size, output_size=self.alphabet_size, classification=True
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"majority_label": torch.full_like(batch["y"], self.majority)}


class TextPairsFileDataModule(TextPairsDataModule):
    """Your own source -> target pairs from a TSV file, one pair per line: ``source<TAB>target``
    (optionally a third column ``train``/``val``/``test``; else the splits are drawn with ``seed``).

    ``tokens="char"`` (default) reads characters, ``"word"`` whitespace-separated words. The
    vocabulary is built from the training pairs only (sources and targets share it) and travels in
    the checkpoint (:class:`~rnnkit.data.DataSpec` ``vocab``). A validation or test symbol never seen
    in training is encoded as ``<unk>``: the model reads it as one unknown symbol and can never
    produce it, so a target containing one cannot be matched exactly (counted as wrong).

        python train.py task=seq2seq data=pairs data.path=pairs.tsv [data.tokens=word]
    """

    def __init__(
        self,
        path: str,
        tokens: str = "char",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(0, 0, 0, batch_size, seed, num_workers)
        self.separator = token_separator(tokens)
        check_fractions(val_fraction, test_fraction)
        self.path = Path(path)
        self.tokens = tokens
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def read(self) -> tuple[list[tuple[str, str]], list[str | None]]:
        if not self.path.exists():
            raise FileNotFoundError(f"data.path: no such file {self.path}")
        pairs, splits = [], []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) not in (2, 3) or not fields[0].strip() or not fields[1].strip():
                raise ValueError(
                    f"{self.path}: line {number}: expected 'source<TAB>target[<TAB>split]' with both "
                    f"texts non-empty, got {line[:80]!r}"
                )
            split = fields[2].strip() if len(fields) == 3 else None
            if split is not None and split not in ("train", "val", "test"):
                raise ValueError(
                    f"{self.path}: line {number}: split must be train, val or test, got {split!r}"
                )
            pairs.append((fields[0].strip(), fields[1].strip()))
            splits.append(split)
        if not pairs:
            raise ValueError(f"{self.path}: no pairs in the file")
        if len({s is None for s in splits}) > 1:
            raise ValueError(f"{self.path}: give a split column on every line or on none")
        return pairs, splits

    def make_pairs(self, rng: np.random.Generator) -> dict[str, list[tuple[str, str]]]:
        pairs, splits = self.read()
        if splits[0] is not None:
            out = {
                name: [p for p, s in zip(pairs, splits, strict=True) if s == name]
                for name in ("train", "val", "test")
            }
        else:
            order = rng.permutation(len(pairs))
            n_test = max(1, round(self.test_fraction * len(pairs)))
            n_val = max(1, round(self.val_fraction * len(pairs)))
            parts = {
                "test": order[:n_test],
                "val": order[n_test : n_test + n_val],
                "train": order[n_test + n_val :],
            }
            out = {name: [pairs[i] for i in index] for name, index in parts.items()}
        empty = [name for name, rows in out.items() if not rows]
        if empty:
            raise ValueError(f"{self.path}: the {empty} split(s) are empty ({len(pairs)} pairs in the file)")
        return out

    def make_vocab(self, pairs: dict[str, list[tuple[str, str]]]) -> Vocab:
        probe = Vocab([], separator=self.separator)
        seen = [
            t for source, target in pairs["train"] for text in (source, target) for t in probe.split(text)
        ]
        return Vocab(seen, separator=self.separator, unknown=True)
