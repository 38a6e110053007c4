"""The package's layering (docs/architecture.md): imports run training -> tasks/data -> nn -> kernels ->
cells, never back, and no module imports inside a function to get around a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import rnnkit
import rnnkit.nn as rnn
from rnnkit import kernels

PACKAGE = Path(rnnkit.__file__).parent
# what each part of the package may import from rnnkit (besides itself)
ALLOWED = {
    "cells": set(),
    "kernels": {"cells"},
    "nn": {"cells", "kernels"},
    "data": {"files"},
    "tasks": {"cells", "data", "nn", "files"},
    "deploy": {"cells", "data", "nn", "kernels", "tasks", "files"},
    "training": {"cells", "data", "nn", "tasks", "files", "optim", "deploy"},
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported rnnkit module, imported inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    local = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [(name, id(node) in local) for name in names if name.split(".")[0] == "rnnkit"]
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_the_layers_below_it(part):
    wrong = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for name, _ in _imports(path):
            target = name.split(".")[1] if "." in name else ""
            if target and target != part and target not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "\n".join(wrong)


# The only imports deferred into functions: the modules that import the optional triton package
# (~0.25 s), loaded when a Triton kernel is asked for, never by `import rnnkit.nn` or a CPU run.
DEFERRED_FOR_TRITON = {
    "rnnkit.kernels.triton.common",
    "rnnkit.kernels.triton.lstm",
    "rnnkit.kernels.triton.gru",
}


def test_no_function_local_import_of_rnnkit_in_the_runtime_package():
    local = [
        f"{path.relative_to(PACKAGE)} imports {name} inside a function"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, inside in _imports(path)
        if inside and name not in DEFERRED_FOR_TRITON
    ]
    assert not local, "\n".join(local)


def test_the_former_backend_name_cpu_still_runs_the_native_ops_and_warns_once(monkeypatch):
    monkeypatch.setattr(kernels, "_warned_aliases", set())
    with pytest.warns(FutureWarning, match=r"backend='cpu' is now called 'native'"):
        layer = rnn.LSTM(3, 4, backend="cpu")
    assert layer.backend == "native"
    assert (
        kernels.select("cpu", layer.layer_cells()[0], layer.weight_ih_l0.device) is kernels.KERNELS["native"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        rnn.GRU(3, 4, backend="cpu")


def test_importing_the_layers_does_not_import_triton():
    """Importing Triton costs ~0.25 s: ``import rnnkit.nn`` (and a CPU run) must not pay it (issue 30)."""
    code = (
        "import sys, torch, rnnkit.nn as rnn\n"
        "rnn.LSTM(4, 4)(torch.randn(3, 2, 4))\n"
        "print('triton' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stdout + done.stderr
