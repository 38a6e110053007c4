"""The UCR/UEA archive sets bundled with aeon: the archive's split kept, validation drawn from its
training set, unequal lengths, the 1-NN DTW baseline (checked against DTW written out here), errors,
and a run from the command line with both baselines in metrics.json."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

aeon = pytest.importorskip("aeon", reason="the UCR tests need aeon: pip install -e '.[dev]' installs it")

from training_helpers import run_train  # noqa: E402

from rnnkit.data import SequenceFileDataModule, UCRDataModule  # noqa: E402
from rnnkit.data.ucr import archive_file, bundled_sets, dtw_1nn  # noqa: E402


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Full-window DTW between (T, F) sequences: squared Euclidean step cost, summed along the best
    warping path (aeon's definition)."""
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # (Ta, Tb)
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[-1, -1])


def test_the_four_benchmark_sets_ship_with_aeon():
    assert {"GunPoint", "ItalyPowerDemand", "ArrowHead", "JapaneseVowels"} <= set(bundled_sets())


def test_archive_split_kept_validation_drawn_from_training_by_seed():
    dm = UCRDataModule(
        "ItalyPowerDemand", val_fraction=0.2, dtw_baseline=False, minirocket_baseline=False, seed=0
    )
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 54, "val": 13, "test": 1029}  # the archive: 67 train, 1029 test
    other = UCRDataModule(
        "ItalyPowerDemand", val_fraction=0.2, dtw_baseline=False, minirocket_baseline=False, seed=1
    )
    other.setup()
    assert not torch.equal(dm.splits["val"].tensors["x"], other.splits["val"].tensors["x"])
    assert torch.equal(dm.splits["test"].tensors["y"], other.splits["test"].tensors["y"])  # same test set
    train = dm.splits["train"].tensors["x"]  # standardized on the training split
    assert abs(float(train.mean())) < 1e-5 and float(train.std()) == pytest.approx(1.0, abs=0.02)


def test_train_on_validation_trains_on_the_whole_archive_training_set():
    common = {"val_fraction": 0.2, "dtw_baseline": False, "minirocket_baseline": False, "seed": 0}
    held_out = UCRDataModule("ItalyPowerDemand", **common)
    whole = UCRDataModule("ItalyPowerDemand", train_on_validation=True, **common)
    held_out.setup()
    whole.setup()
    sizes = {k: len(v) for k, v in whole.splits.items()}
    assert sizes == {"train": 67, "val": 13, "test": 1029}  # the validation series trained on too
    train, val = held_out.splits["train"].tensors, held_out.splits["val"].tensors
    # the same series, standardized with the statistics of all 67
    mean, std = whole.feature_mean, whole.feature_std
    raw = torch.cat([train["x"], val["x"]]) * torch.tensor(held_out.feature_std) + torch.tensor(
        held_out.feature_mean
    )
    expected = (raw - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(whole.splits["train"].tensors["x"], expected.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole.splits["train"].tensors["y"], torch.cat([train["y"], val["y"]]))


def test_per_series_scaling_sees_each_series_shape_whatever_its_level_and_scale():
    common = {"dtw_baseline": False, "minirocket_baseline": False, "standardize": False}
    dm = UCRDataModule("JapaneseVowels", per_series=True, **common)  # 12 channels, unequal lengths
    dm.setup()
    for split in ("train", "val", "test"):
        tensors = dm.splits[split].tensors
        for x, length in zip(tensors["x"][:20], tensors["lengths"][:20], strict=True):
            valid = x[:length].double()  # (T_i, 12)
            torch.testing.assert_close(valid.mean(0), torch.zeros(12, dtype=torch.double), atol=1e-6, rtol=0)
            torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(12, dtype=torch.double))
            assert x[length:].abs().sum() == 0  # padding stays zero
    raw = UCRDataModule("JapaneseVowels", **common)
    raw.setup()
    first, length = raw.splits["test"].tensors["x"][0], int(raw.splits["test"].tensors["lengths"][0])
    shifted = (first[:length] - first[:length].mean(0)) / first[:length].std(0, unbiased=False)
    torch.testing.assert_close(dm.splits["test"].tensors["x"][0, :length], shifted, atol=1e-5, rtol=1e-5)


def test_unequal_lengths_reach_the_layers_as_lengths():
    dm = UCRDataModule("JapaneseVowels", dtw_baseline=False, minirocket_baseline=False)
    dm.setup()
    test = dm.splits["test"].tensors
    assert dm.spec.input_size == 12 and dm.spec.output_size == 9
    lengths = test["lengths"]
    assert int(lengths.min()) < int(lengths.max()) == test["x"].shape[1]
    short = int(lengths.argmin())
    assert test["x"][short, int(lengths[short]) :].abs().sum() == 0  # padding past the length


def test_the_ts_format_reads_through_aeon_in_the_sequence_file_module():
    dm = SequenceFileDataModule(str(archive_file("GunPoint")), seed=0)
    dm.setup()
    assert len(dm.splits["test"]) == 150 and dm.spec.output_size == 2


def test_dtw_baseline_equals_dtw_written_out_and_the_published_accuracy():
    dm = UCRDataModule("ItalyPowerDemand", minirocket_baseline=False)
    dm.setup()
    train_x, train_y = dm.archive["train"]
    test_x, _ = dm.archive["test"]
    for k in range(0, 1029, 205):  # a few test series, by brute force over the whole training set
        nearest = int(np.argmin([dtw(test_x[k], s) for s in train_x]))
        assert dm.classes[int(dm.dtw_labels[k])] == train_y[nearest]
    accuracy = float((dm.dtw_labels == dm.splits["test"].tensors["y"]).float().mean())
    assert accuracy == pytest.approx(0.950, abs=0.002)  # the archive's DTW (full window) figure
    assert list(dtw_1nn(dm.archive["train"], test_x[:3])) == [dm.classes[int(i)] for i in dm.dtw_labels[:3]]


def test_minirocket_baseline_scores_near_its_published_figure_and_skips_unequal_lengths():
    """aeon's MiniRocket fitted on the archive's training set: 0.963 on ItalyPowerDemand (issue 29's
    measurement; the same seed gives the same labels); JapaneseVowels' unequal lengths get none."""
    dm = UCRDataModule("ItalyPowerDemand", dtw_baseline=False)
    dm.setup()
    accuracy = float((dm.minirocket_labels == dm.splits["test"].tensors["y"]).float().mean())
    assert accuracy == pytest.approx(0.963, abs=0.01)
    again = UCRDataModule("ItalyPowerDemand", dtw_baseline=False)
    again.setup()
    assert torch.equal(again.minirocket_labels, dm.minirocket_labels)
    batch = dm.splits["test"].tensors
    picked = {k: v[:5] for k, v in batch.items()}
    assert set(dm.baseline(picked)) >= {"minirocket"}
    unequal = UCRDataModule("JapaneseVowels", dtw_baseline=False)
    unequal.setup()
    assert unequal.minirocket_labels is None and "minirocket" not in unequal.baseline(
        {k: v[:5] for k, v in unequal.splits["test"].tensors.items()}
    )


def test_unknown_set_names_the_sets_there_are():
    with pytest.raises(ValueError, match=r"'GunPointy' is not a classification set .*'ItalyPowerDemand'"):
        UCRDataModule("GunPointy")


def test_without_aeon_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'rnnkit\[ucr\]'"):
        UCRDataModule("GunPoint")


def test_the_ucr_config_builds_the_recurrent_and_convolutional_model_on_a_fixed_schedule(tmp_path):
    from training_helpers import compose_config

    cfg = compose_config(["task=classify", "data=ucr", "cell=gru"], tmp_path)
    assert cfg.model.pool == "mean" and cfg.model.conv._target_ == "rnnkit.tasks.ConvBranch"
    assert cfg.model.scheduler._target_.endswith("CosineAnnealingLR")
    assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs == 300
    assert cfg.callbacks.early_stopping is None and cfg.callbacks.model_checkpoint is None
    assert cfg.data.train_on_validation and not cfg.data.per_series
    # elsewhere the classifier stays as it was: the last step, no branch, the plateau schedule
    digits = compose_config(["task=classify"], tmp_path)
    assert "conv" not in digits.model and digits.model.scheduler._target_.endswith("ReduceLROnPlateau")


def test_a_ucr_set_trains_from_the_command_line_with_its_baselines(tmp_path):
    metrics = run_train(
        ["task=classify", "data=ucr", "data.name=ItalyPowerDemand", "trainer.max_epochs=15"],
        tmp_path / "run",
    )
    assert metrics["best_checkpoint"].endswith("last.ckpt")  # the last epoch's model is tested
    assert metrics["baseline_dtw_1nn/acc"] == pytest.approx(0.950, abs=0.002)
    assert metrics["baseline_minirocket/acc"] == pytest.approx(0.963, abs=0.01)
    assert metrics["test/acc"] > metrics["baseline/acc"] + 0.2  # far above the majority class


@pytest.mark.slow  # ~15 s: Numba compiles aeon's DTW afresh, twice
def test_aeons_numba_cast_warning_stays_off_the_console(tmp_path):
    """aeon's DTW warns once per environment, when Numba first compiles it (a fresh cache here)."""
    script = (
        "import sys\n"
        "if sys.argv[1] == 'quiet':\n"
        "    from rnnkit.training.notices import silence_library_notices\n"
        "    silence_library_notices()\n"
        "from rnnkit.data import UCRDataModule\n"
        "UCRDataModule('ItalyPowerDemand').setup()\n"
    )
    consoles = {}
    for mode in ("loud", "quiet"):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / mode), "PYTHONWARNINGS": "default"}
        proc = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        consoles[mode] = proc.stderr
    assert "NumbaTypeSafetyWarning" in consoles["loud"]  # the test can see the warning
    assert "NumbaTypeSafetyWarning" not in consoles["quiet"]
