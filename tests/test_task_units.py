"""Task mechanics one by one: last valid step, rollouts, greedy decoding, TBPTT, metrics, data."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import rnnkit.nn as rnn
from rnnkit.data import AdditionDataModule, DataSpec, ReberDataModule, TimeSeriesDataModule
from rnnkit.data.reber import REBER, embedded_reber_string
from rnnkit.data.series import airline_passengers
from rnnkit.tasks import ManyToMany, ManyToOne, NextStep, OneToMany
from rnnkit.tasks.many_to_one import last_valid_step
from rnnkit.tasks.metrics import LegalSetStringAccuracy, MeanAbsoluteScaledError
from rnnkit.tasks.summary import ConvBranch, pool_over_time

ADAM = functools.partial(torch.optim.Adam, lr=1e-3)


def encoder(cell="lstm", **kw):
    return functools.partial(rnn.Recurrent, cell=cell, hidden_size=8, **kw)


def test_last_valid_step_reads_each_direction_at_its_end():
    out = torch.arange(2 * 5 * 4, dtype=torch.float).view(2, 5, 4)  # (B, T, 2 directions * 2)
    lengths = torch.tensor([3, 5])
    got = last_valid_step(out, lengths, num_directions=2)
    torch.testing.assert_close(got[0], torch.cat([out[0, 2, :2], out[0, 0, 2:]]))
    torch.testing.assert_close(got[1], torch.cat([out[1, 4, :2], out[1, 0, 2:]]))


@pytest.mark.parametrize("how", ["mean", "max"])
def test_pooling_over_time_reads_only_the_valid_steps(how):
    out = torch.randn(3, 6, 4, dtype=torch.double)  # (B, T, W)
    lengths = torch.tensor([6, 2, 4])
    got = pool_over_time(out, lengths, how)
    for b in range(3):
        valid = out[b, : lengths[b]]
        torch.testing.assert_close(got[b], valid.mean(0) if how == "mean" else valid.amax(0))
    torch.testing.assert_close(pool_over_time(out, None, how), pool_over_time(out, torch.full((3,), 6), how))
    with pytest.raises(ValueError, match=r"pool must be one of \['last', 'mean', 'max'\], got 'sum'"):
        pool_over_time(out, lengths, "sum")


def test_conv_branch_reads_each_sequence_as_if_alone():
    branch = ConvBranch(2, channels=(5, 6), kernel_sizes=(4, 3)).double()
    branch(torch.randn(8, 9, 2, dtype=torch.double))  # one training batch: batch norm's running statistics
    branch.eval()
    x = torch.randn(3, 9, 2, dtype=torch.double)
    lengths = torch.tensor([9, 4, 6])
    x[1, 4:] = 50.0  # garbage in the padding
    got = branch(x, lengths)
    assert got.shape == (3, 6)
    for b in range(3):
        torch.testing.assert_close(branch(x[b : b + 1, : lengths[b]]), got[b : b + 1])


def test_conv_branch_errors_name_the_argument():
    with pytest.raises(
        ValueError, match=r"one entry per block .* got 2 channels \[4, 5\] and 1 kernel_sizes \[3\]"
    ):
        ConvBranch(2, channels=(4, 5), kernel_sizes=(3,))
    with pytest.raises(ValueError, match=r"must be >= 1, got \[4, 0\] and \[3, 3\]"):
        ConvBranch(2, channels=(4, 0), kernel_sizes=(3, 3))
    with pytest.raises(ValueError, match=r"x must be \(batch, steps, 2\), got \(4, 7, 3\)"):
        ConvBranch(2)(torch.randn(4, 7, 3))


def test_many_to_one_options_are_checked_before_building():
    spec = DataSpec(input_size=3, output_size=4, classification=True)
    with pytest.raises(ValueError, match=r"pool must be one of \['last', 'mean', 'max'\], got 'first'"):
        ManyToOne(spec, encoder(), ADAM, pool="first")
    with pytest.raises(ValueError, match=r"summary_dropout must lie in \[0, 1\), got 1.0"):
        ManyToOne(spec, encoder(), ADAM, summary_dropout=1.0)
    with pytest.raises(ValueError, match=r"tbptt_steps needs pool='last' and no conv branch .* pool='mean'"):
        ManyToOne(spec, encoder(), ADAM, tbptt_steps=5, pool="mean")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "jordan"])
@pytest.mark.parametrize("summary", ["last", "mean+conv"])
def test_many_to_one_ignores_padding(bidirectional, cell, summary):
    kw = {"output_size": 8} if cell == "jordan" else {}
    spec = DataSpec(input_size=3, output_size=4, classification=True)
    extra = (
        {}
        if summary == "last"
        else {"pool": "mean", "conv": functools.partial(ConvBranch, channels=(4,), kernel_sizes=(3,))}
    )
    model = ManyToOne(spec, encoder(cell, bidirectional=bidirectional, **kw), ADAM, **extra).double().eval()
    x = torch.randn(3, 7, 3, dtype=torch.double)
    lengths = torch.tensor([7, 2, 5])
    a = model(x, lengths)
    x2 = x.clone()
    x2[1, 2:] = 100.0  # garbage in the padding
    x2[2, 5:] = -3.0
    torch.testing.assert_close(model(x2, lengths), a)
    # and equals running each sequence alone at its true length
    for b in range(3):
        torch.testing.assert_close(model(x[b : b + 1, : lengths[b]]), a[b : b + 1])


def test_next_step_forecast_is_an_autoregressive_rollout():
    spec = DataSpec(input_size=3, output_size=1, feedback=[0])
    model = NextStep(spec, encoder(), ADAM).double().eval()
    x = torch.randn(2, 10, 3, dtype=torch.double)
    # horizon 1: the teacher-forced prediction of the last step
    torch.testing.assert_close(model.forecast(x, 1), model(x)[0][:, -1])
    # horizon 3: by hand, feeding predictions into feature 0 of the last two inputs
    manual = x.clone()
    pred, _ = model(manual[:, :8])
    manual[:, 8, 0] = pred[:, -1, 0]
    pred, _ = model(manual[:, :9])
    manual[:, 9, 0] = pred[:, -1, 0]
    torch.testing.assert_close(model.forecast(x, 3), model(manual)[0][:, -1])
    # the true values of the rolled-out steps are never read
    x_changed = x.clone()
    x_changed[:, 8:, 0] = 1e3
    torch.testing.assert_close(model.forecast(x_changed, 3), model.forecast(x, 3))


def test_next_step_refuses_a_bidirectional_encoder():
    with pytest.raises(ValueError, match="model.encoder.bidirectional must be false"):
        NextStep(DataSpec(input_size=2, output_size=1, feedback=[0]), encoder(bidirectional=True), ADAM)


def test_seq2seq_greedy_decoding_feeds_back_its_own_tokens():
    vocab = ["<pad>", "<bos>", "<eos>", "a", "b", "c"]
    spec = DataSpec(input_size=6, output_size=6, classification=True, vocab=vocab, seq2seq=True)
    model = ManyToMany(spec, encoder(bidirectional=True), ADAM, embedding_dim=5).double().eval()
    src = torch.tensor([[3, 4, 5, 0], [5, 3, 0, 0]])
    lengths = torch.tensor([3, 2])
    greedy = model.greedy(src, lengths, steps=4)  # (B, 4, V)
    own = greedy.argmax(-1)
    teacher = model.teacher_forced({"src": src, "src_lengths": lengths, "tgt": own})
    torch.testing.assert_close(teacher, greedy)


@pytest.mark.parametrize("classification", [False, True])
def test_one_to_many_generation_feeds_back_its_own_output(classification):
    vocab = ["<pad>", "<bos>", "<eos>", "x", "y"]
    spec = DataSpec(
        input_size=3,
        output_size=len(vocab) if classification else 2,
        classification=classification,
        vocab=vocab if classification else None,
    )
    model = OneToMany(spec, encoder("gru"), ADAM).double().eval()
    v = torch.randn(4, 3, dtype=torch.double)
    generated = model.generate(v, steps=6)
    own = generated.argmax(-1) if classification else generated
    torch.testing.assert_close(model(v, own), generated)


def test_tbptt_steps_the_optimizer_once_per_chunk(tmp_path):
    import lightning as L

    dm = TimeSeriesDataModule(
        "airline", window=36, train_window=36, log=True, batch_size=16, baselines=["seasonal_naive"]
    )
    dm.setup()
    model = NextStep(dm.spec, encoder(), ADAM, tbptt_steps=12, gradient_clip_val=1.0)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * 3  # 2 batches x 36 / 12 chunks


def test_tbptt_detaches_the_state_between_chunks():
    from rnnkit.tasks.base import detach_state

    spec = DataSpec(input_size=1, output_size=1, feedback=[0])
    model = NextStep(spec, encoder(), ADAM, tbptt_steps=4)
    x = torch.randn(2, 8, 1, requires_grad=True)
    first, second = list(model.time_chunks({"x": x, "y": x.detach()}, 4))
    _, state = model.chunk_loss(first, None)
    loss, _ = model.chunk_loss(second, detach_state(state))
    loss.backward()
    assert x.grad[:, 4:].abs().sum() > 0  # the chunk's own inputs get gradient
    assert x.grad[:, :4].abs().sum() == 0  # nothing flows back into the previous chunk
    # without the detach it would
    x.grad = None
    _, state = model.chunk_loss(first, None)
    loss, _ = model.chunk_loss(second, state)
    loss.backward()
    assert x.grad[:, :4].abs().sum() > 0


def test_mase_and_legal_set_metrics():
    mase = MeanAbsoluteScaledError(scale=2.0)
    mase.update(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 5.0]))
    assert mase.compute().item() == pytest.approx(1.5 / 2.0)

    metric = LegalSetStringAccuracy()
    logits = torch.tensor([[[3.0, 2.0, -1.0], [0.0, 5.0, 1.0]], [[3.0, -2.0, 2.5], [0.0, 0.0, 0.0]]])
    target = torch.zeros(2, 2, 4, dtype=torch.long)
    target[0, 0] = torch.tensor([0, 1, 1, 0])  # legal {0, 1}: top-2 of string 0 step 0 = {0, 1} right
    target[0, 1] = torch.tensor([1, 0, 1, 0])  # legal {1}: argmax 1 right
    target[1, 0] = torch.tensor([0, 1, 1, 0])  # legal {0, 1}: top-2 = {0, 2} wrong
    target[1, 1] = torch.tensor([-100, 0, 0, 0])  # padding
    metric.update(logits, target)
    assert metric.compute().item() == pytest.approx(0.5)


def test_airline_series_is_box_jenkins_series_g():
    values = airline_passengers()
    assert len(values) == 144 and values.sum() == 40363
    assert values[0] == 112 and values[-1] == 432


def test_embedded_reber_strings_follow_the_grammar():
    rng = np.random.default_rng(0)
    for _ in range(200):
        text, legal = embedded_reber_string(rng)
        assert text[0] == "B" and text[-1] == "E" and text[1] == text[-2] and text[1] in "TP"
        inner = text[2:-2]
        node = 0
        for symbol in inner:
            moves = dict(REBER[node])
            assert symbol in moves
            node = moves[symbol]
        assert node is None
        assert all(text[t + 1] in legal[t] for t in range(len(text) - 1))
        assert legal[-3] == {text[1]}  # after the inner E only the remembered symbol


def test_addition_test_sums_are_held_out():
    dm = AdditionDataModule(max_digits=2, train_size=2000, val_size=200, test_size=300)
    dm.setup()
    train = {s for s, _ in dm.pairs["train"]}
    assert not train & {s for s, _ in dm.pairs["test"]}
    for s, t in dm.pairs["test"]:
        a, b = s.split("+")
        assert int(a) + int(b) == int(t)


def test_reber_baseline_is_a_bigram_model():
    dm = ReberDataModule(train_size=300, val_size=50, test_size=50)
    dm.setup()
    probs = dm.bigram_logits.exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(7))
    b = dm.splits["train"].tensors
    after_b = probs[0]  # after "B" the next symbol is T or P (or the inner B after them)
    assert after_b[1] + after_b[2] > 0.9 and b["x"].shape[-1] == 7
