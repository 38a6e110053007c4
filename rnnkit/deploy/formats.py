"""Writing an inference module to a file, and running the file back (issue 31).

Three formats, each loadable without the training code:

- ``onnx``: ``torch.onnx.export`` (the dynamo exporter) to ``model.onnx``, run by ONNX Runtime
  (``pip install onnxruntime``); the recurrence is ONNX's own LSTM/GRU/RNN operator or a Scan
  (:mod:`rnnkit.kernels.onnx`).
- ``torchscript``: ``torch.jit.trace`` to ``model.pt`` with torch's own operators only
  (:func:`~rnnkit.kernels.onnx.torch_ops_only`), loaded by ``torch.jit.load`` in Python or C++
  (libtorch) without rnnkit. torch.nn's own cells keep batch and length free; any other cell's loop
  is unrolled over the traced length.
- ``exported``: ``torch.export`` to ``model.pt2``, loaded by ``torch.export.load``; the fused custom
  ops (``rnnkit::*``) stay in the graph, so ``import rnnkit`` before loading.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.files import atomic_write
from rnnkit.kernels.onnx import torch_ops_only

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt", "exported": "model.pt2"}


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    if format == "onnx":
        for module, why in (
            ("onnxscript", "torch.onnx.export needs it"),
            ("onnxruntime", "checks the model"),
        ):
            try:
                __import__(module)
            except ImportError as error:
                raise ImportError(
                    f"format=onnx: {module} is not installed ({why}): pip install -e '.[export]'"
                ) from error


@contextmanager
def _quiet_export(module: nn.Module) -> Iterator[None]:
    """While a tracer walks ``module``: Lightning's ``trainer`` property (read by the tracers' attribute
    scans) answers None instead of raising for a task that no Trainer holds, as Lightning's own
    ``to_torchscript`` arranges; the ONNX optimizer's per-initializer INFO lines stay off the console."""
    lightning = [m for m in module.modules() if hasattr(type(m), "_jit_is_scripting")]
    for m in lightning:
        m._jit_is_scripting = True
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # constants (scalers) in the trace
            # torch's pytree deprecation, raised inside torch.export's own code
            warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        for m in lightning:
            m._jit_is_scripting = False


def write(
    module: nn.Module,
    example: Sequence[Tensor],
    names: Sequence[str],
    dynamic: dict[str, dict[int, str]],
    format: str,
    path: Path,
) -> None:
    """Export ``module`` called on ``example`` (inputs named ``names``) to ``path``. ``dynamic`` names
    the free dimensions of each input, e.g. ``{"x": {0: "batch", 1: "steps"}}``; the others keep the
    example's sizes."""
    check_format(format)
    with _quiet_export(module):
        # fresh tensors: a view's base sizes would enter the export's shape guards
        _write(module.eval(), tuple(t.clone() for t in example), names, dynamic, format, path)


def _write(
    module: nn.Module,
    example: tuple[Tensor, ...],
    names: Sequence[str],
    dynamic: dict[str, dict[int, str]],
    format: str,
    path: Path,
) -> None:
    if format == "torchscript":
        with torch.no_grad(), torch_ops_only():  # loads without rnnkit: libtorch, C++
            traced = torch.jit.trace(module, example, check_trace=False)
        atomic_write(path, lambda f: torch.jit.save(traced, f))
        return
    shapes = _dynamic_shapes(module, names, dynamic)
    if format == "exported":
        with torch.no_grad():
            program = torch.export.export(module, example, dynamic_shapes=shapes, strict=False)
        atomic_write(path, lambda f: torch.export.save(program, f))
        return
    with torch.no_grad():
        program = torch.onnx.export(
            module, example, dynamo=True, input_names=list(names), dynamic_shapes=shapes, verbose=False
        )
    atomic_write(path, lambda f: f.write(program.model_proto.SerializeToString()))


def _dynamic_shapes(module: nn.Module, names: Sequence[str], dynamic: dict[str, dict[int, str]]) -> tuple:
    """torch.export's ``dynamic_shapes`` for the inputs ``names``, shaped like ``module.forward``'s
    signature: the inputs past its named parameters go to its ``*args`` as one tuple. A dimension
    named ``batch`` is one symbol shared by every input."""
    shapes: list = []
    for name in names:
        free = dynamic.get(name, {})
        shapes.append(
            {
                axis: torch.export.Dim(label if label == "batch" else f"{name}_{label}", min=1, max=1 << 20)
                for axis, label in free.items()
            }
            or None
        )
    parameters = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        named = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        shapes = [*shapes[:named], tuple(shapes[named:])]
    return tuple(shapes)


def load(path: Path, format: str) -> Callable[..., tuple[Tensor, ...]]:
    """The written model as a function of tensors returning a tuple of tensors."""
    check_format(format)
    if format == "torchscript":
        module = torch.jit.load(str(path))
        return lambda *inputs: _as_tuple(module(*inputs))
    if format == "exported":
        module = torch.export.load(str(path)).module()
        return lambda *inputs: _as_tuple(module(*inputs))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)})
        return tuple(torch.from_numpy(o) for o in outputs)

    return run


def _as_tuple(out: object) -> tuple[Tensor, ...]:
    if isinstance(out, Tensor):
        return (out,)
    flat: list[Tensor] = []
    for part in out:  # type: ignore[union-attr]
        flat.extend(_as_tuple(part))
    return tuple(flat)
