"""The work behind ``export.py``: a trained checkpoint to a file that runs without the training code.

``python export.py ckpt_path=<run>/checkpoints/<file>.ckpt format=onnx|torchscript|exported
[entry=auto|forecast|scores|stream]`` rebuilds the run's task and data from the run's config, wraps
what inference needs (:mod:`rnnkit.deploy.inference`), writes it (:mod:`rnnkit.deploy.formats`),
runs the written file on held-out inputs (the test split, a batch size other than the traced one)
against the checkpoint's own model, and writes a README.md of the file's inputs and outputs beside
it. The error is recorded in ``export.json``; past ``tolerance`` the command fails.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from rnnkit.deploy.formats import FORMATS, check_format, load, write
from rnnkit.deploy.inference import Forecaster, SequenceScorer, Stepper
from rnnkit.tasks.many_to_many import ManyToMany
from rnnkit.tasks.many_to_one import ManyToOne
from rnnkit.tasks.next_step import NextStep
from rnnkit.training.checkpoint import atomic_write_text
from rnnkit.training.notices import silence_library_notices
from rnnkit.training.run import import_user_modules, load_run_config

log = logging.getLogger(__name__)

ENTRIES = ("auto", "forecast", "scores", "stream")


@dataclass
class Entry:
    """An inference module with its example inputs and what the README says of them."""

    module: nn.Module
    inputs: dict[str, Tensor]  # name -> a held-out batch (the check's inputs)
    dynamic: dict[str, dict[int, str]]  # name -> free dimensions
    inputs_doc: dict[str, str]
    outputs_doc: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)


def _entry_name(task: nn.Module, entry: str) -> str:
    if entry not in ENTRIES:
        raise ValueError(f"entry must be one of {list(ENTRIES)}, got {entry!r}")
    if entry != "auto":
        return entry
    if isinstance(task, NextStep):
        return "stream" if task.spec.classification else "forecast"
    if isinstance(task, ManyToOne | ManyToMany):
        return "scores"
    raise ValueError(
        f"export: a {type(task).__name__} task (one-to-many generation) has no exported entry yet; "
        "export covers next-step (entry=forecast or stream), many-to-one and many-to-many (entry=scores)"
    )


def build_entry(task: nn.Module, datamodule, entry: str) -> Entry:
    """The inference module of ``entry`` for a trained ``task``, with a held-out test batch."""
    name = _entry_name(task, entry)
    batch = _held_out_batch(datamodule)
    x = batch["x"]
    if name == "forecast":
        if not isinstance(task, NextStep) or task.spec.classification:
            raise ValueError("entry=forecast: the run must forecast a series (task=timeseries)")
        known = task._known(x)
        module = Forecaster(task, known, datamodule.inverse_target)
        steps, features = x.shape[1], x.shape[2]
        horizon = steps - known + 1
        return Entry(
            module,
            {"x": x},
            {"x": {0: "batch"}},
            {
                "x": f"float32 (batch, {steps}, {features}): a window as the run's data builds it (scaled); "
                f"its first {known} steps observed, the last {steps - known} carrying the known covariates "
                f"(their series features are overwritten by the fed-back predictions). Features: "
                f"{_feature_names(datamodule, features)}",
            },
            [
                (
                    "forecast",
                    f"float32 (batch, {horizon}, {task.spec.output_size}): the forecasts of the targets of "
                    f"steps {known - 1}..{steps - 1}, the last {task.spec.horizon} ahead of the origin, "
                    "in the series' original units",
                )
            ],
        )
    if name == "scores":
        if not isinstance(task, ManyToOne | ManyToMany):
            raise ValueError("entry=scores: the run must be many-to-one (task=classify) or many-to-many")
        module = SequenceScorer(task)
        shape = "(batch, classes)" if isinstance(task, ManyToOne) else "(batch, steps, classes)"
        what = "logits" if task.spec.classification else "values"
        notes = []
        if batch.get("lengths") is not None:
            notes.append(
                "Every sequence of a batch is read to its end: pad none, or score sequences one by one."
            )
        return Entry(
            module,
            {"x": x},
            {"x": {0: "batch", 1: "steps"}},
            {"x": f"float32 (batch, steps, {x.shape[-1]}): the sequences, scaled as the run's data scales"},
            [(what, f"float32 {shape}: {what} of {task.spec.output_size} outputs")],
            notes,
        )
    if not isinstance(task, NextStep):
        raise ValueError("entry=stream: the run must be next-step (task=timeseries or task=language)")
    module = Stepper(task)
    state = module.initial_state(x.shape[0])
    if task.spec.classification:
        x = x.argmax(-1) if x.is_floating_point() else x  # one-hot -> symbol ids
        x_doc = f"int64 (batch, steps): symbol ids in the vocabulary ({task.spec.input_size} symbols)"
        out_doc = f"float32 (batch, steps, {task.spec.input_size}): logits of the next symbol"
    else:
        x_doc = f"float32 (batch, steps, {x.shape[-1]}): input steps as the run's data builds them, scaled"
        out_doc = f"float32 (batch, steps, {task.spec.output_size}): the next step's prediction, scaled"
    names = ["h", "c"][: len(state)]
    layers, hidden = state[0].shape[0], state[0].shape[-1]
    level = {"level": module.level(x)} if module.levels else {}  # (B, 1, O)
    inputs = {"x": x, **level, **{f"{n}0": s for n, s in zip(names, state, strict=True)}}
    dynamic = {"x": {0: "batch", 1: "steps"}, **{k: {0: "batch"} for k in level}}
    dynamic.update({f"{n}0": {1: "batch"} for n in names})
    state_doc = f"float32 ({layers}, batch, {hidden}): the encoder's state"
    level_doc = {
        "level": f"float32 (batch, 1, {task.spec.output_size}): the series' level, scaled, fixed for a "
        f"stream: the mean of its first {task.spec.season} observed values (the model was trained with "
        "local_level)"
    }
    return Entry(
        module,
        inputs,
        dynamic,
        {
            "x": x_doc,
            **{k: level_doc[k] for k in level},
            **{f"{n}0": f"{state_doc} ({n}) carried in, zeros at a sequence's start" for n in names},
        },
        [
            ("predictions", out_doc),
            *((f"{n}_n", f"{state_doc} ({n}) after the chunk: pass it to the next call") for n in names),
        ],
        [
            "Feed a sequence in chunks (down to one step) with the state each call returns: the outputs "
            "equal one call over the whole sequence."
        ],
    )


def _held_out_batch(datamodule) -> dict[str, Tensor]:
    """The test split's first batch; where it has fewer than 4 rows (a forecast from one origin), the
    training split's last windows of the same shape added, so that the check runs a batch size other
    than the traced one (2 rows: torch.export fixes a dimension traced at size 1)."""
    batch = dict(next(iter(datamodule.test_dataloader())))
    rows = batch["x"].shape[0]
    if rows >= 4:
        return batch
    train = datamodule.splits["train"]
    extra = [
        train[i]["x"] for i in range(len(train) - 1, -1, -1) if train[i]["x"].shape == batch["x"].shape[1:]
    ]
    if extra:
        batch["x"] = torch.cat([batch["x"], torch.stack(extra[: 4 - rows])])
        batch.pop("lengths", None)
    return batch


def _feature_names(datamodule, features: int) -> str:
    names = getattr(datamodule, "feature_names", None)
    return ", ".join(names) if names else f"{features} features"


def _smaller(entry: Entry, rows: int) -> tuple[Tensor, ...]:
    """The example the export traces: the first ``rows`` along each input's batch dimension."""
    example = []
    for name, tensor in entry.inputs.items():
        axis = next((a for a, label in entry.dynamic.get(name, {}).items() if label == "batch"), None)
        example.append(tensor if axis is None else tensor.narrow(axis, 0, rows))
    return tuple(example)


def export(cfg: DictConfig) -> dict[str, object]:
    """Export the checkpoint ``cfg.ckpt_path`` as ``cfg.format`` into the output directory; returns the
    check's record (also written to ``export.json``)."""
    format = str(cfg.format)
    check_format(format)  # a missing onnxruntime stops here, before any work
    ckpt, run_cfg = load_run_config(cfg)
    silence_library_notices()
    import_user_modules(run_cfg)
    datamodule = instantiate(run_cfg.data)
    datamodule.setup("fit")
    task = instantiate(run_cfg.model, spec=datamodule.spec)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    task.load_state_dict(checkpoint["state_dict"])
    task = task.eval().float()
    entry = build_entry(task, datamodule, str(cfg.entry))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FORMATS[format]
    names = list(entry.inputs)
    batch = next(iter(entry.inputs.values())).shape[0]
    traced_rows = 2 if batch > 2 else 1  # the check runs another batch size than the traced one
    write(entry.module, _smaller(entry, traced_rows), names, entry.dynamic, format, path)
    run = load(path, format)
    with torch.no_grad():
        got = run(*entry.inputs.values())
        want = entry.module(*entry.inputs.values())
    want = (want,) if isinstance(want, Tensor) else tuple(want)
    error = max(float((g.float() - w.float()).abs().max()) for g, w in zip(got, want, strict=True))
    scale = max(float(w.float().abs().max()) for w in want) or 1.0
    record = {
        "checkpoint": str(ckpt),
        "format": format,
        "file": str(path),
        "entry": type(entry.module).__name__,
        "checked_rows": batch,
        "traced_rows": traced_rows,
        "max_abs_error": error,
        "max_abs_output": scale,
    }
    atomic_write_text(out_dir / "export.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(out_dir / "README.md", _readme(entry, record, format, path.name))
    if error > float(cfg.tolerance) * max(1.0, scale):
        raise RuntimeError(
            f"export: the {format} file's outputs differ from the checkpoint's by {error:.3g} "
            f"(tolerance {cfg.tolerance} x {max(1.0, scale):.3g}); see {out_dir / 'export.json'}"
        )
    log.info(
        "%s written to %s: checked on %d held-out rows, max abs error %.2g against the checkpoint",
        format,
        path,
        batch,
        error,
    )
    return record


_LOADING = {
    "onnx": "import onnxruntime\n"
    "session = onnxruntime.InferenceSession('{file}')\n"
    "outputs = session.run(None, {{{feeds}}})  # numpy arrays",
    "torchscript": "import torch\n"
    "model = torch.jit.load('{file}')  # torch's own operators: no rnnkit needed, libtorch loads it too\n"
    "outputs = model({args})",
    "exported": "import torch, rnnkit  # rnnkit registers the fused ops the program calls\n"
    "model = torch.export.load('{file}').module()\noutputs = model({args})",
}


def _readme(entry: Entry, record: dict[str, object], format: str, file: str) -> str:
    args = ", ".join(entry.inputs)
    feeds = ", ".join(f"'{n}': {n}" for n in entry.inputs)
    lines = [
        f"# {file}: {record['entry']} exported from a trained rnnkit model",
        "",
        f"Checkpoint: `{record['checkpoint']}`; format: {format}.",
        "",
        "## Inputs (in this order)",
        "",
        *(f"- `{name}`: {doc}" for name, doc in entry.inputs_doc.items()),
        "",
        "Free dimensions: "
        + "; ".join(
            f"`{n}` {', '.join(f'{a} ({lab})' for a, lab in d.items())}" for n, d in entry.dynamic.items()
        )
        + ". Every other size is fixed as listed.",
        "",
        "## Outputs (in this order)",
        "",
        *(f"- `{name}`: {doc}" for name, doc in entry.outputs_doc),
        "",
        *(f"{note}\n" for note in entry.notes),
        "## Running it",
        "",
        "```python",
        _LOADING[format].format(file=file, args=args, feeds=feeds),
        "```",
        "",
        "## Checked",
        "",
        f"Traced on {record['traced_rows']} rows; run on {record['checked_rows']} held-out rows (the test "
        "split's first batch, with training windows added where it has fewer than 4 rows) against the "
        f"checkpoint's own model: max abs error "
        f"{record['max_abs_error']:.2g} (outputs up to {record['max_abs_output']:.3g}).",
        "",
    ]
    return "\n".join(lines)
