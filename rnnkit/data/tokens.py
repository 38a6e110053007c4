"""Character vocabularies with the three special tokens every token task uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<bos>", "<eos>"]


class Vocab:
    """Index <-> character map; indices 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``."""

    def __init__(self, characters: Iterable[str]) -> None:
        chars = sorted(set(characters))
        self.itos: list[str] = SPECIALS + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, eos: bool = False) -> list[int]:
        try:
            ids = [self.stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary {self.itos[3:]}") from None
        return ids + [EOS] if eos else ids

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def pad(self, sequences: Sequence[list[int]], length: int | None = None) -> Tensor:
        """``(N, length)`` long tensor, right-padded with ``<pad>``."""
        length = length or max(len(s) for s in sequences)
        out = torch.full((len(sequences), length), PAD, dtype=torch.long)
        for k, s in enumerate(sequences):
            out[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out


def majority_per_position(tokens: Tensor, vocab_size: int) -> Tensor:
    """The most frequent token at each position of ``tokens (N, U)``: ``(U,)``, a naive baseline."""
    return torch.stack(
        [torch.bincount(tokens[:, u], minlength=vocab_size).argmax() for u in range(tokens.shape[1])]
    )
