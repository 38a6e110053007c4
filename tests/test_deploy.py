"""Serving a trained model (issue 31): the inference modules of rnnkit.deploy, streaming with carried
state, and export.py's three formats on a trained checkpoint, each checked against the checkpoint."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from rnnkit.deploy import Forecaster, SequenceScorer, Stepper, load, write
from rnnkit.training.export import export
from tests.training_helpers import compose_config, run_train


def built(overrides: list[str]):
    """A task (fresh weights, eval mode) and its data module from the project's configs."""
    cfg = compose_config(overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    torch.manual_seed(0)
    return instantiate(cfg.model, spec=datamodule.spec).eval(), datamodule


def chunked(stepper: Stepper, x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``stepper`` over ``x`` in chunks of ``sizes`` steps, the state carried from chunk to chunk."""
    state = stepper.initial_state(x.shape[0])
    level = (stepper.level(x),) if stepper.levels else ()
    outputs, start = [], 0
    for size in sizes:
        predictions, *state = stepper(x[:, start : start + size], *level, *state)
        outputs.append(predictions)
        start += size
    return (torch.cat(outputs, dim=1), *state)


@pytest.mark.parametrize("cell", ["lstm", "gru", "jordan"])
@pytest.mark.parametrize("task", ["language", "timeseries"])
def test_streaming_step_by_step_equals_the_whole_sequence(task, cell):
    model, datamodule = built([f"task={task}", f"cell={cell}", "model.encoder.num_layers=2"])
    x = next(iter(datamodule.test_dataloader()))["x"][:3, :12]
    stepper = Stepper(model)
    if model.spec.classification:
        x = x.argmax(-1)  # symbol ids
    with torch.no_grad():
        whole = chunked(stepper, x, [x.shape[1]])
        for sizes in ([1] * x.shape[1], [5, 1, 6]):
            for got, want in zip(chunked(stepper, x, sizes), whole, strict=True):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        # the stepper is the task's own forward: the same predictions from a zero state
        if model.spec.classification:
            torch.testing.assert_close(whole[0], model(torch.nn.functional.one_hot(x).float())[0])
        else:  # relative to the window's level, as the task's rollout reads its first steps
            level = model.level(x)
            expected = model(model._relative(x, level))[0] + (0 if level is None else level)
            torch.testing.assert_close(whole[0], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("format", ["onnx", "torchscript", "exported"])
def test_an_exported_language_model_streams_in_chunks_with_the_eager_numbers(tmp_path, format):
    model, datamodule = built(["task=language", "cell=lstm"])
    x = next(iter(datamodule.test_dataloader()))["x"].argmax(-1)[:4, :10]  # (B, T) symbol ids
    stepper = Stepper(model)
    example = (x[:2, :3], *stepper.initial_state(2))
    names = ["x", "h0", "c0"]
    dynamic = {"x": {0: "batch", 1: "steps"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    path = tmp_path / "stream"
    write(stepper, example, names, dynamic, format, path)
    run = load(path, format)
    with torch.no_grad():
        want = chunked(stepper, x, [x.shape[1]])
    state, outputs = stepper.initial_state(4), []
    for start, size in ((0, 1), (1, 4), (5, 5)):  # another batch size and other lengths than traced
        predictions, *state = run(x[:, start : start + size], *state)
        outputs.append(predictions)
    torch.testing.assert_close(torch.cat(outputs, 1), want[0], atol=1e-5, rtol=1e-5)
    for got, expected in zip(state, want[1:], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_inference_modules_refuse_tasks_they_do_not_serve():
    classifier, _ = built(["task=classify"])
    forecaster, _ = built(["task=timeseries"])
    with pytest.raises(ValueError, match="Stepper: takes a next-step task, got ManyToOne"):
        Stepper(classifier)
    with pytest.raises(ValueError, match="SequenceScorer: takes a many-to-one or many-to-many task"):
        SequenceScorer(forecaster)
    language, _ = built(["task=language"])
    with pytest.raises(ValueError, match="Forecaster: the task must forecast a series"):
        Forecaster(language, known=3)


def trained_run(tmp_path: Path, overrides: list[str]) -> Path:
    """A short training run in tmp_path/run with its config where export.py looks for it; returns the
    checkpoint."""
    out = tmp_path / "run"
    metrics = run_train([*overrides, "trainer.max_epochs=1"], out)
    cfg = compose_config(overrides)
    (out / ".hydra").mkdir(exist_ok=True)
    (out / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return Path(metrics["best_checkpoint"])


def export_config(ckpt: Path, out: Path, format: str, **keys: object):
    cfg = compose_config([f"ckpt_path={ckpt}", f"format={format}"], out, name="export")
    with open_dict(cfg):
        cfg.update(keys)
    return cfg


@pytest.mark.slow  # ~40 s: a short default run, then three exports
@pytest.mark.filterwarnings("ignore")
def test_export_writes_the_default_runs_forecaster_in_each_format_and_checks_it(tmp_path):
    ckpt = trained_run(tmp_path, [])
    files = {}
    for format in ("onnx", "torchscript", "exported"):
        out = tmp_path / format
        record = export(export_config(ckpt, out, format))
        files[format] = record["file"]
        assert record["entry"] == "Forecaster" and record["checked_rows"] > record["traced_rows"]
        assert record["max_abs_error"] <= 1e-4 * max(1.0, record["max_abs_output"])
        assert json.loads((out / "export.json").read_text()) == record
        readme = (out / "README.md").read_text()
        assert "## Inputs" in readme and "original units" in readme and Path(record["file"]).name in readme
        x = torch.randn(5, *load_shape(readme))  # any batch size runs
        (forecast,) = load(Path(record["file"]), format)(x)
        assert forecast.shape[0] == 5 and torch.isfinite(forecast).all()
    # the forecaster as a stream: its level (local_level) is an input beside the state
    record = export(export_config(ckpt, tmp_path / "stream", "onnx", entry="stream"))
    assert record["entry"] == "Stepper" and record["checked_rows"] > record["traced_rows"]
    assert record["max_abs_error"] <= 1e-4 * max(1.0, record["max_abs_output"])
    assert "- `level`: float32 (batch, 1, 1)" in (tmp_path / "stream" / "README.md").read_text()
    # the TorchScript file holds torch's own operators only: it loads where rnnkit is not imported
    script = (
        "import sys, torch\n"
        f"model = torch.jit.load({files['torchscript']!r})\n"
        f"print(tuple(model(torch.randn(2, *{load_shape(readme)})).shape), 'rnnkit' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "False"


def load_shape(readme: str) -> tuple[int, int]:
    """The fixed (steps, features) of the Forecaster's input, read off its README."""
    line = next(line for line in readme.splitlines() if line.startswith("- `x`"))
    sizes = line.split("(batch, ", 1)[1].split(")", 1)[0]
    steps, features = (int(s) for s in sizes.split(", "))
    return steps, features


UCR_QUICK = [
    "data=ucr",
    "data.name=ItalyPowerDemand",
    "data.dtw_baseline=false",
    "data.minirocket_baseline=false",
]


@pytest.mark.slow  # ~20 s: a short classifier run and its export
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="digits"),
        pytest.param(
            UCR_QUICK,
            id="ucr_with_conv_branch",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("aeon") is None,
                reason="data=ucr needs aeon (the dev install has it)",
            ),
        ),
    ],
)
def test_export_writes_a_classifiers_logits_with_free_batch_and_length(tmp_path, data):
    ckpt = trained_run(tmp_path, ["task=classify", *data])
    record = export(export_config(ckpt, tmp_path / "onnx", "onnx"))
    assert record["entry"] == "SequenceScorer"
    assert record["max_abs_error"] <= 1e-4 * max(1.0, record["max_abs_output"])
    assert "logits" in (tmp_path / "onnx" / "README.md").read_text()


def test_export_refuses_an_unknown_format_or_entry_before_any_work(tmp_path):
    with pytest.raises(
        ValueError, match=r"format must be one of \['exported', 'onnx', 'torchscript'\], got 'tflite'"
    ):
        export(export_config(tmp_path / "missing.ckpt", tmp_path, "tflite"))
    classifier, datamodule = built(["task=classify"])
    from rnnkit.training.export import build_entry

    with pytest.raises(ValueError, match="entry must be one of"):
        build_entry(classifier, datamodule, "rollout")
    with pytest.raises(ValueError, match="entry=forecast: the run must forecast a series"):
        build_entry(classifier, datamodule, "forecast")
