"""A language model on any text: the stream layout, the state carried across batches, the vocabulary,
bits per symbol against unigram and bigram baselines, sampling from a checkpoint, bad files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from rnnkit.data import TextCorpusDataModule
from rnnkit.data.text_corpus import BUNDLED_TEXT, StreamWindows
from rnnkit.data.tokens import UNKNOWN
from rnnkit.nn import Recurrent
from rnnkit.tasks import NextStep
from rnnkit.tasks.metrics import symbol_metrics

ROOT = Path(__file__).resolve().parents[1]


def text_file(tmp_path: Path, text: str, name: str = "text.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def built(path, **kwargs) -> TextCorpusDataModule:
    dm = TextCorpusDataModule(str(path), **kwargs)
    dm.setup()
    return dm


def lm(spec, hidden: int = 16) -> NextStep:
    encoder = partial(Recurrent, cell="lstm", hidden_size=hidden)
    return NextStep(spec, encoder, partial(torch.optim.Adam, lr=1e-2), residual=False).double()


def test_stream_windows_continue_each_row_from_batch_to_batch():
    ids = torch.arange(23) % 7  # tokens 0..6
    data = StreamWindows(ids, rows=3, seq_len=4, vocab_size=7)
    assert data.steps == 7 and data.windows == 2 and len(data) == 6  # (23 - 1) // 3 inputs per row
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    batches = list(loader)
    for r in range(3):
        x = torch.cat([b["x"][r] for b in batches])  # (8, 7): the row read in order, last step padded
        y = torch.cat([b["y"][r, :, 0] for b in batches])
        row = ids[r * 7 : r * 7 + 8]
        assert x[:7].argmax(-1).tolist() == row[:-1].tolist()
        assert y[:7].tolist() == row[1:].tolist()
        assert x[7].abs().sum() == 0 and y[7] == -100  # padding, skipped by losses and metrics


def test_splits_by_position_vocabulary_from_training_only_and_unknown_symbols(tmp_path):
    text = "abcab" * 40 + "abcz" * 4 + "abcy" * 4  # z: only in validation, y: only in test
    dm = built(text_file(tmp_path, text), seq_len=5, batch_size=4, val_fraction=0.07, test_fraction=0.07)
    assert dm.vocab.itos[3:] == [UNKNOWN, "a", "b", "c"]
    unk = dm.vocab.unknown
    assert (dm.splits["train"].streams != unk).all()
    assert (dm.splits["val"].streams == unk).any() and (dm.splits["test"].streams == unk).any()
    assert dm.spec.stream and dm.spec.classification and dm.spec.input_size == len(dm.vocab) == 7
    assert dm.spec.vocab == dm.vocab.itos and dm.spec.separator == ""
    first = dm.splits["train"].streams[0, :5].tolist()
    assert dm.vocab.decode(first) == "abcab"  # the training part starts where the text starts
    assert "vocabulary 7" in dm.describe()


def test_word_tokens_and_min_count(tmp_path):
    words = ("the cat sat on the mat " * 30 + "the dog ran\n") * 2
    dm = built(text_file(tmp_path, words), tokens="word", min_count=3, seq_len=4, batch_size=2)
    assert dm.spec.separator == " "
    assert {"the", "cat", "mat"} <= set(dm.vocab.itos) and "dog" not in dm.vocab.stoi  # 2 < min_count
    assert dm.vocab.decode(dm.splits["train"].streams[0, :3].tolist()) == "the cat sat"


def test_unigram_and_bigram_baselines_are_the_smoothed_training_counts(tmp_path):
    dm = built(text_file(tmp_path, "ab" * 50 + "abb" * 10), seq_len=4, batch_size=2)
    a, b = dm.vocab.stoi["a"], dm.vocab.stoi["b"]
    probs = dm.bigram_logits.exp()
    assert torch.allclose(probs.sum(1), torch.ones(len(dm.vocab)))
    train = dm.splits["train"].streams
    pairs = [(int(c), int(n)) for row in train for c, n in zip(row[:-1], row[1:], strict=True)]
    after_a = sum(1 for c, _ in pairs if c == a)
    ab = sum(1 for p in pairs if p == (a, b))
    assert probs[a, b].item() == pytest.approx((ab + 1) / (after_a + len(dm.vocab)))
    batch = next(iter(dm.train_dataloader()))
    base = dm.baseline(batch)
    assert base["unigram"].shape == base["bigram"].shape == (*batch["x"].shape[:2], len(dm.vocab))


def test_bits_per_symbol_and_perplexity_from_the_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6)
    target = torch.randint(0, 6, (2, 5, 1))
    target[1, 3:] = -100
    metrics = symbol_metrics()
    values = metrics(logits, target)
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
    assert values["cross_entropy"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert values["bits_per_symbol"].item() == pytest.approx(ce.item() / math.log(2), rel=1e-6)
    assert values["perplexity"].item() == pytest.approx(math.exp(ce.item()), rel=1e-6)
    assert "string_acc" not in values and "string_acc" in symbol_metrics(legal_next=True)


def test_the_state_is_carried_across_stream_batches_as_over_the_whole_text(tmp_path):
    text = "".join("abcdefg"[(i * i) % 7] for i in range(400))
    dm = built(text_file(tmp_path, text), seq_len=7, batch_size=3)
    model = lm(dm.spec).eval()
    split = dm.splits["val"]
    pieces = []
    model.on_validation_epoch_start()
    for batch in dm.val_dataloader():
        batch = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
        _, logits, _ = model.evaluate(batch)
        pieces.append(logits)
    carried = torch.cat(pieces, dim=1)[:, : split.steps]  # (R, L, V)
    whole, _ = model(F.one_hot(split.streams[:, :-1], len(dm.vocab)).double())  # one pass over each row
    torch.testing.assert_close(carried, whole, rtol=0, atol=1e-12)
    model.on_validation_epoch_start()  # a new run starts from the zero state
    assert model.carried_state("eval") is None


def test_training_carries_the_state_between_batches_and_detaches_it(tmp_path):
    dm = built(text_file(tmp_path, "abcd" * 100), seq_len=5, batch_size=2)
    model = lm(dm.spec)
    batches = iter(dm.train_dataloader())
    first = {k: (v.double() if v.is_floating_point() else v) for k, v in next(batches).items()}
    model.loss(first)
    state = model.carried_state("train")
    assert state is not None and not state[0].requires_grad
    out, _ = model(first["x"])
    torch.testing.assert_close(model.carried_state("train")[0], state[0])  # forward alone carries nothing
    model.on_train_epoch_start()
    assert model.carried_state("train") is None


def test_generate_is_seeded_respects_top_k_temperature_and_exclusions(tmp_path):
    dm = built(text_file(tmp_path, "hello world " * 40), seq_len=6, batch_size=2)
    model = lm(dm.spec).float().eval()
    prompt = dm.vocab.encode("hel")
    draw = partial(model.generate, prompt, 30)
    seeded = [draw(generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert seeded[0] == seeded[1] and seeded[0] != seeded[2]
    # top_k=1: the most probable symbol each time, whatever the seed; checked by a hand loop
    greedy = draw(top_k=1, generator=torch.Generator().manual_seed(5))
    ids, expected = list(prompt), []
    for _ in range(30):
        logits, _ = model(F.one_hot(torch.tensor(ids), len(dm.vocab)).float()[None])
        ids.append(int(logits[0, -1].argmax()))
        expected.append(ids[-1])
    assert greedy == expected
    banned = list(range(4)) + [expected[0]]
    assert not set(draw(exclude=banned, generator=torch.Generator().manual_seed(0))) & set(banned)
    for kwargs, message in [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            draw(**kwargs)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        model.generate(prompt, 0)
    with pytest.raises(ValueError, match="prompt: needs at least one symbol"):
        model.generate([], 5)


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        (None, {}, "data.path: no such file"),
        ("   \n\n", {}, "holds no text"),
        (b"ok text\n\xff\xfe bad", {}, r"line 2: not UTF-8 text"),
        ("abc" * 20, {"batch_size": 32}, "too few for the splits"),
    ],
)
def test_bad_text_files_fail_clearly(tmp_path, content, kwargs, message):
    path = tmp_path / "t.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        built(path, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tokens": "byte"}, "tokens must be 'char' or 'word'"),
        ({"seq_len": 0}, "seq_len must be a positive integer"),
        ({"min_count": 0}, "min_count must be a positive integer"),
        ({"val_fraction": 0.6}, r"val_fraction must lie in \(0, 0.5\)"),
    ],
)
def test_bad_arguments_fail_before_reading(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextCorpusDataModule(None, **kwargs)


def test_the_bundled_text_is_the_default():
    dm = TextCorpusDataModule()
    assert dm.path == BUNDLED_TEXT and BUNDLED_TEXT.stat().st_size > 300_000
    assert BUNDLED_TEXT.read_text(encoding="utf-8").startswith("MACBETH")


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_text_trains_from_the_command_line_and_samples_from_its_checkpoint(tmp_path):
    verse = "to be or not to be that is the question\nwhether tis nobler in the mind to suffer\n"
    path = text_file(tmp_path, verse * 60)
    trained = run(
        "train.py",
        "task=language",
        "data=text",
        f"data.path={path}",
        "data.seq_len=25",
        "data.batch_size=4",
        "model.encoder.hidden_size=48",
        "trainer.max_epochs=8",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the verse repeats: a model with memory beats the bigram, which beats the unigram
    assert metrics["test/bits_per_symbol"] < metrics["baseline_bigram/bits_per_symbol"]
    assert metrics["baseline_bigram/bits_per_symbol"] < metrics["baseline/bits_per_symbol"]
    assert (tmp_path / "run" / "test_predictions.png").is_file()
    ckpt = metrics["best_checkpoint"]
    samples = []
    for seed, out in ((3, "s1"), (3, "s2"), (4, "s3")):
        proc = run(
            "sample.py",
            f"ckpt_path={ckpt}",
            "prompt=whether",
            "length=60",
            "temperature=0.8",
            "top_k=5",
            f"seed={seed}",
            "progress=false",
            f"hydra.run.dir={tmp_path / out}",
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        text = (tmp_path / out / "sample.txt").read_text()
        assert text.startswith("whether") and len(text) == len("whether") + 60 + 1
        assert text.rstrip("\n") in proc.stdout
        samples.append(text)
    assert samples[0] == samples[1] and samples[0] != samples[2]  # the seed decides
    bad = run("sample.py", f"ckpt_path={ckpt}", "temperature=-1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "temperature must be > 0" in bad.stderr
