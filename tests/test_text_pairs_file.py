"""Your own source -> target pairs from a TSV file: tokens, splits, the vocabulary, <unk>, errors,
and a seq2seq run from the command line whose checkpoint carries the vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_helpers import run_train

from rnnkit.data import TextPairsFileDataModule
from rnnkit.data.tokens import EOS, Vocab


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def built(path, **kwargs) -> TextPairsFileDataModule:
    dm = TextPairsFileDataModule(str(path), **kwargs)
    dm.setup()
    return dm


def test_character_pairs_with_given_splits_and_unknown_symbols(tmp_path):
    path = write(
        tmp_path / "pairs.tsv",
        ["abc\tcba\ttrain", "ab\tba\ttrain", "", "ca\tac\tval", "abz\tzba\ttest"],  # z: never in training
    )
    dm = built(path)
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert dm.vocab.itos[3:] == ["<unk>", "a", "b", "c"]  # from the training pairs only
    test = dm.splits["test"].tensors
    unk = dm.vocab.stoi["<unk>"]
    assert test["src"][0, :3].tolist() == [dm.vocab.stoi["a"], dm.vocab.stoi["b"], unk]
    assert test["tgt"][0, :4].tolist() == [unk, dm.vocab.stoi["b"], dm.vocab.stoi["a"], EOS]
    assert dm.spec.vocab == dm.vocab.itos


def test_word_tokens_and_drawn_splits(tmp_path):
    lines = [
        f"the {w} sat\t{w} sat the"
        for w in ["cat", "dog", "cow", "hen", "pig", "fox", "owl", "elk", "ram", "yak"]
    ]
    dm = built(write(tmp_path / "words.tsv", lines), tokens="word", seed=1)
    assert sum(len(dm.splits[s]) for s in ("train", "val", "test")) == 10
    assert "the" in dm.vocab.stoi and "t" not in dm.vocab.stoi
    row = dm.splits["train"].tensors["tgt"][0]
    assert len(dm.vocab.decode(row).split(" ")) == 3  # decoded with spaces between words
    assert built(write(tmp_path / "words.tsv", lines), tokens="word", seed=1).pairs == dm.pairs  # seeded


@pytest.mark.parametrize(
    "lines, message",
    [
        (["abc cba"], r"line 1: expected 'source<TAB>target\[<TAB>split\]'"),
        (["abc\t"], r"line 1: expected .* both texts non-empty"),
        (["a\tb\ttrain", "b\tc\tdev"], "line 2: split must be train, val or test, got 'dev'"),
        (["a\tb\ttrain", "b\tc"], "give a split column on every line or on none"),
        ([""], "no pairs in the file"),
        (["a\tb\ttrain", "b\tc\ttest"], r"the \['val'\] split\(s\) are empty"),
    ],
)
def test_bad_files_name_the_line_and_the_problem(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        built(write(tmp_path / "bad.tsv", lines))


def test_vocab_without_unknown_still_refuses_unknown_characters():
    with pytest.raises(ValueError, match="character 'z' is not in the vocabulary"):
        Vocab("abc").encode("abz")


@pytest.mark.slow
def test_pairs_train_from_the_command_line_and_the_checkpoint_carries_the_vocabulary(tmp_path):
    lines = [f"{a}{b}\t{b}{a}" for a in "abcdefgh" for b in "abcdefgh"]  # swap two letters
    path = write(tmp_path / "swap.tsv", lines)
    metrics = run_train(
        [
            "task=seq2seq",
            "data=pairs",
            f"data.path={path}",
            "trainer.max_epochs=3",
            "model.encoder.hidden_size=32",
        ],
        tmp_path / "run",
    )
    assert "test/exact_match" in metrics
    ckpt = torch.load(metrics["best_checkpoint"], weights_only=False)
    vocab = ckpt["rnnkit_spec"]["vocab"]
    assert vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and set("abcdefgh") <= set(vocab)
    assert (
        json.loads((tmp_path / "run" / "metrics.json").read_text())["test/exact_match"]
        == metrics["test/exact_match"]
    )
