"""Token vocabularies (characters or words) with the special tokens every token task uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<bos>", "<eos>"]
UNKNOWN = "<unk>"


class Vocab:
    """Index <-> token map; indices 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``.

    Args:
        tokens: the known tokens (characters, or words with ``separator=" "``).
        separator: ``""`` splits text into characters; ``" "`` into whitespace-separated words (and
            :meth:`decode` joins with a space).
        unknown: add ``<unk>`` (index 3) and encode tokens never seen as it; without it an unknown
            token raises ValueError naming it.
    """

    def __init__(self, tokens: Iterable[str], separator: str = "", unknown: bool = False) -> None:
        known = sorted(set(tokens) - set(SPECIALS) - {UNKNOWN})
        self.itos: list[str] = SPECIALS + ([UNKNOWN] if unknown else []) + known
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.separator = separator
        self.unknown = self.stoi[UNKNOWN] if unknown else None

    def __len__(self) -> int:
        return len(self.itos)

    def split(self, text: str) -> list[str]:
        return list(text) if self.separator == "" else text.split()

    def encode(self, text: str, eos: bool = False) -> list[int]:
        return self.encode_tokens(self.split(text), eos)

    def encode_tokens(self, tokens: Sequence[str], eos: bool = False) -> list[int]:
        """Ids of tokens already split (see :meth:`encode`)."""
        if self.unknown is not None:
            ids = [self.stoi.get(c, self.unknown) for c in tokens]
        else:
            try:
                ids = [self.stoi[c] for c in tokens]
            except KeyError as err:
                kind = "character" if self.separator == "" else "token"
                raise ValueError(f"{kind} {err.args[0]!r} is not in the vocabulary {self.itos[3:]}") from None
        return ids + [EOS] if eos else ids

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return self.separator.join(out)

    def pad(self, sequences: Sequence[list[int]], length: int | None = None) -> Tensor:
        """``(N, length)`` long tensor, right-padded with ``<pad>``."""
        length = length or max(len(s) for s in sequences)
        out = torch.full((len(sequences), length), PAD, dtype=torch.long)
        for k, s in enumerate(sequences):
            out[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out


TOKEN_SEPARATORS = {"char": "", "word": " "}  # what joins the tokens of a text, per tokenization


def token_separator(tokens: str) -> str:
    """The separator of a tokenization named by a data module's ``tokens`` argument ("char" or
    "word"); any other name is a clear error."""
    if tokens not in TOKEN_SEPARATORS:
        raise ValueError(f"tokens must be 'char' or 'word', got {tokens!r}")
    return TOKEN_SEPARATORS[tokens]


def majority_per_position(tokens: Tensor, vocab_size: int) -> Tensor:
    """The most frequent token at each position of ``tokens (N, U)``: ``(U,)``, a naive baseline."""
    return torch.stack(
        [torch.bincount(tokens[:, u], minlength=vocab_size).argmax() for u in range(tokens.shape[1])]
    )
