"""Your own labelled sequences from .npz, long .csv and UCR .tsv files: splits, standardization,
lengths, labels, errors, and training from the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import run_train

from rnnkit.data import SequenceFileDataModule


def toy(n: int = 60, seed: int = 0, variable: bool = True):
    """Two classes of noisy sequences: rising (label 'up') or falling ('down'), 2 features."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        length = int(rng.integers(4, 12)) if variable else 10
        sign = 1 if i % 2 else -1
        t = np.linspace(0, 1, length)
        xs.append(np.stack([sign * t + 0.1 * rng.normal(size=length), 5 + rng.normal(size=length)], axis=1))
        ys.append("up" if sign > 0 else "down")
    return xs, np.array(ys)


def built(path, **kwargs) -> SequenceFileDataModule:
    dm = SequenceFileDataModule(str(path), **kwargs)
    dm.setup()
    return dm


def test_npz_with_object_array_of_variable_lengths(tmp_path):
    xs, ys = toy()
    path = tmp_path / "seqs.npz"
    np.savez(path, x=np.array(xs, dtype=object), y=ys)
    dm = built(path, seed=3)
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 42, "val": 6, "test": 12}
    assert dm.classes == ["down", "up"] and dm.spec.output_size == 2 and dm.spec.input_size == 2
    train = dm.splits["train"].tensors
    lengths = train["lengths"]
    real = torch.cat([train["x"][i, : lengths[i]] for i in range(len(lengths))])
    torch.testing.assert_close(real.mean(0), torch.zeros(2), atol=1e-5, rtol=0)  # standardized on train
    torch.testing.assert_close(real.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    for split in dm.splits.values():  # padding is zeros and the lengths say where it starts
        x, n = split.tensors["x"], split.tensors["lengths"]
        for i in range(len(n)):
            assert torch.all(x[i, n[i] :] == 0)
    # the same seed draws the same split; the statistics come from train only
    assert torch.equal(built(path, seed=3).splits["test"].tensors["y"], dm.splits["test"].tensors["y"])


def test_npz_fixed_length_array_and_given_splits(tmp_path):
    xs, ys = toy(variable=False)
    x = np.stack(xs)  # (N, 10, 2)
    split = np.array(["train"] * 40 + ["val"] * 8 + ["test"] * 12)
    path = tmp_path / "fixed.npz"
    np.savez(path, x=x, y=(ys == "up").astype(int), split=split)
    dm = built(path)
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 40, "val": 8, "test": 12}
    assert dm.classes == [0, 1]
    path2 = tmp_path / "pairs.npz"  # x_train/y_train/x_test/y_test: val drawn from train
    np.savez(path2, x_train=x[:48], y_train=ys[:48], x_test=x[48:], y_test=ys[48:])
    dm = built(path2, val_fraction=0.1, test_fraction=0.2)
    assert len(dm.splits["test"]) == 12 and len(dm.splits["train"]) + len(dm.splits["val"]) == 48


def test_long_csv_in_any_row_order(tmp_path):
    xs, ys = toy(20)
    rows = ["sequence_id,t,a,b,label"]
    for i, (seq, label) in enumerate(zip(xs, ys, strict=True)):
        for t, (a, b) in enumerate(seq):
            rows.append(f"s{i},{t},{a},{b},{label}")
    header, body = rows[0], rows[1:]
    np.random.default_rng(0).shuffle(body)  # the file's order does not matter
    path = tmp_path / "long.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    dm = built(path, standardize=False, val_fraction=0.2, test_fraction=0.2)
    data = {k: v.tensors for k, v in dm.splits.items()}
    total = sum(len(d["y"]) for d in data.values())
    assert total == 20
    # every sequence comes back in time order with its own values
    lookup = {tuple(np.round(seq[0], 6)): seq for seq in xs}
    for d in data.values():
        for x, n in zip(d["x"], d["lengths"], strict=True):
            original = lookup[tuple(np.round(x[0].double().numpy(), 6))]
            np.testing.assert_allclose(x[:n].double().numpy(), original, atol=1e-5)


def test_ucr_tsv_pair(tmp_path):
    rng = np.random.default_rng(1)

    def write(name, n):
        lines = []
        for i in range(n):
            values = np.full(12, np.nan)
            length = 8 + i % 5
            values[:length] = rng.normal(size=length) + (i % 3)
            lines.append(
                "\t".join([str(i % 3 + 1)] + [f"{v:.6f}" if np.isfinite(v) else "NaN" for v in values])
            )
        (tmp_path / name).write_text("\n".join(lines) + "\n")

    write("Toy_TRAIN.tsv", 30)
    write("Toy_TEST.tsv", 15)
    dm = built(tmp_path / "Toy_TRAIN.tsv")
    assert len(dm.splits["test"]) == 15 and dm.classes == [1, 2, 3] and dm.spec.input_size == 1
    assert int(dm.splits["test"].tensors["lengths"].max()) == 12


@pytest.mark.parametrize(
    "content, message",
    [
        ("sequence_id,t,a,label\ns1,0,1.0,x\ns1,1,2.0,y\n", "sequence 's1' has more than one label"),
        ("id,t,a,label\ns1,0,1.0,x\n", r"missing column\(s\) \['sequence_id'\]"),
        ("sequence_id,t,a,label\ns1,0,abc,x\n", "a feature value is not a number"),
    ],
)
def test_bad_csv_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        built(path)


def test_unknown_test_label_and_missing_file_are_named(tmp_path):
    xs, ys = toy(variable=False)
    path = tmp_path / "pairs.npz"
    test_labels = ys[48:].astype("<U10")  # room for a longer label
    test_labels[0] = "sideways"
    np.savez(path, x_train=np.stack(xs[:48]), y_train=ys[:48], x_test=np.stack(xs[48:]), y_test=test_labels)
    with pytest.raises(ValueError, match=r"test labels never seen in training: \['sideways'\]"):
        built(path)
    with pytest.raises(FileNotFoundError, match="data.path: no such file"):
        built(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="cannot tell the format"):
        (tmp_path / "x.bin").write_bytes(b"")
        built(tmp_path / "x.bin")


def test_own_sequences_train_from_the_command_line_and_beat_the_majority(tmp_path):
    xs, ys = toy(200, seed=5)
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.array(xs, dtype=object), y=ys)
    metrics = run_train(
        [
            "task=classify",
            "data=sequences",
            f"data.path={path}",
            "trainer.max_epochs=15",
            "model.encoder.hidden_size=16",
        ],
        tmp_path,
    )
    assert metrics["test/acc"] >= 0.9 > metrics["baseline/acc"]
