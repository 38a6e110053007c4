"""Symbol sequences for next-step prediction: the embedded Reber grammar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.base import DataSpec, SequenceDataModule, TensorDictDataset

SYMBOLS = "BTPSXVE"
# Reber grammar: node -> [(symbol, next node)]; node 6 is the end (emits E)
REBER = {
    0: [("B", 1)],
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)],
    5: [("P", 4), ("V", 6)],
    6: [("E", None)],
}


def reber_string(rng: np.random.Generator) -> tuple[str, list[set[str]]]:
    """A Reber string and, for each of its symbols, the set of symbols the grammar allows next."""
    node, out, legal = 0, [], []
    while node is not None:
        options = REBER[node]
        symbol, node = options[int(rng.integers(len(options)))]
        out.append(symbol)
        legal.append({s for s, _ in REBER[node]} if node is not None else set())
    return "".join(out), legal


def embedded_reber_string(rng: np.random.Generator) -> tuple[str, list[set[str]]]:
    """B c <Reber string> c E with c in {T, P}: predicting the second-to-last symbol needs the memory
    of the second one, across the whole inner string."""
    c = "T" if rng.integers(2) == 0 else "P"
    inner, inner_legal = reber_string(rng)
    inner_legal[-1] = {c}  # after the inner E only the remembered c is legal
    text = "B" + c + inner + c + "E"
    legal = [{"T", "P"}, {"B"}, *inner_legal, {"E"}, set()]
    return text, legal


class ReberDataModule(SequenceDataModule):
    """Embedded Reber grammar strings for :class:`~rnnkit.tasks.NextStep` over symbols.

    Batches: ``x (B, T, 7)`` one-hot symbols; ``y (B, T, 1 + 7)``: the next symbol (-100 after the
    end) and the legal-next mask. Baseline: bigram frequencies of the training strings.
    """

    def __init__(
        self,
        train_size: int = 4000,
        val_size: int = 500,
        test_size: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def build(self) -> None:
        rng = np.random.default_rng(self.seed)
        samples = {n: [embedded_reber_string(rng) for _ in range(k)] for n, k in self.sizes.items()}
        length = max(len(t) for rows in samples.values() for t, _ in rows)
        v = len(SYMBOLS)
        index = {s: i for i, s in enumerate(SYMBOLS)}
        self.strings = {n: [t for t, _ in rows] for n, rows in samples.items()}
        self.splits = {}
        for name, rows in samples.items():
            x = torch.zeros(len(rows), length, v)
            y = torch.full((len(rows), length, 1 + v), 0, dtype=torch.long)
            y[..., 0] = -100
            for k, (text, legal) in enumerate(rows):
                ids = [index[s] for s in text]
                x[k, torch.arange(len(ids)), ids] = 1
                y[k, : len(ids) - 1, 0] = torch.tensor(ids[1:])
                for t, allowed in enumerate(legal[:-1]):
                    for s in allowed:
                        y[k, t, 1 + index[s]] = 1
            self.splits[name] = TensorDictDataset(x=x, y=y)
        train = self.splits["train"].tensors
        current = train["x"].argmax(-1)
        nxt = train["y"][..., 0]
        valid = nxt >= 0
        counts = torch.ones(v, v)  # add-one smoothing
        counts.index_put_((current[valid], nxt[valid]), torch.ones(int(valid.sum())), accumulate=True)
        self.bigram_logits = (counts / counts.sum(1, keepdim=True)).log()
        self.spec = DataSpec(
            input_size=v, output_size=v, classification=True, vocab=list(SYMBOLS), legal_next=True
        )

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        current = batch["x"].argmax(-1)  # (B, T)
        return {"bigram": self.bigram_logits.to(current.device)[current]}

    def plot_test(self, predictions: Tensor, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        text = self.strings["test"][0]
        probs = predictions[0, : len(text) - 1].softmax(-1).numpy().T  # (V, T-1)
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(text)), 3.2))
        ax.imshow(probs, aspect="auto", cmap="Blues", vmin=0, vmax=1)
        ax.set_yticks(range(len(SYMBOLS)), list(SYMBOLS))
        ax.set_xticks(range(len(text) - 1), list(text[:-1]))
        ax.set_xlabel("current symbol")
        ax.set_ylabel("next symbol")
        ax.set_title(f"embedded Reber: predicted next-symbol probabilities for {text}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
