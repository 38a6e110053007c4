"""The ``compiled`` backend (rnnkit/kernels/compiled_cell.py): any cell's time loop compiled in chunks.

Every registered cell and the README's MGU against the reference loop in float64 (outputs, final
states, every gradient), with lengths, two layers, both directions. The parity sweep compiles with
``aot_eager`` (the partitioned forward/backward graphs the backend runs, without inductor's code
generation: seconds instead of a minute per graph); the inductor path itself runs on two cells.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from training_helpers import run_train

import rnnkit.nn as rnn
from rnnkit.cells import RecurrentCell, available_cells
from rnnkit.cells.examples import MinimalGatedUnit
from rnnkit.kernels.compiled import cell as compiled_cell

D = torch.float64
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setenv("RNNKIT_STEP_COMPILER", "aot_eager")


def cell_factory(name):
    return MinimalGatedUnit if name == "readme_mgu" else name


def pair(name, num_layers=2, bidirectional=True, **options):
    """A reference layer and a compiled one with the same weights."""
    if name == "jordan":
        options.setdefault("output_size", 4)  # the Jordan cell feeds back an output of its own width
    ref = rnn.Recurrent(
        cell_factory(name), 5, 6, num_layers, bidirectional, dtype=D, backend="reference", **options
    )
    comp = rnn.Recurrent(
        cell_factory(name), 5, 6, num_layers, bidirectional, dtype=D, backend="compiled", **options
    )
    comp.load_state_dict(ref.state_dict())
    return ref, comp


def first(state):
    return state if isinstance(state, torch.Tensor) else state[0]


def run_with_grads(layer, x, lengths):
    out, h_n = layer(x, lengths=lengths)
    parts = (h_n,) if isinstance(h_n, torch.Tensor) else tuple(h_n)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=D)).sum()
    loss = loss + sum((p * torch.randn(p.shape, generator=gen, dtype=D)).sum() for p in parts)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return [out, *parts, *grads]


@pytest.mark.parametrize("name", [*available_cells(), "readme_mgu"])
def test_every_cell_matches_the_reference_loop(name, aot_eager):
    ref, comp = pair(name)
    steps = 19  # not a multiple of the chunk: the padded steps must leave no trace
    x = torch.randn(steps, 3, 5, dtype=D, requires_grad=True)
    lengths = torch.tensor([steps, 11, 1])
    for a, b in zip(run_with_grads(ref, x, lengths), run_with_grads(comp, x, lengths), strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)
    with torch.no_grad():  # the inference graph, which saves nothing
        torch.testing.assert_close(comp(x)[0], ref(x)[0], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("steps", [1, 8, 9])
def test_short_and_chunk_sized_sequences(steps, aot_eager):
    ref, comp = pair("layernorm_gru", num_layers=1, bidirectional=False)
    x = torch.randn(steps, 2, 5, dtype=D, requires_grad=True)
    for a, b in zip(run_with_grads(ref, x, None), run_with_grads(comp, x, None), strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)


def test_gradcheck(aot_eager):
    _, comp = pair("peephole_lstm", num_layers=1, bidirectional=True)
    x = torch.randn(10, 2, 5, dtype=D, requires_grad=True)
    h0 = torch.randn(2, 2, 6, dtype=D, requires_grad=True)
    c0 = torch.randn(2, 2, 6, dtype=D, requires_grad=True)
    lengths = torch.tensor([10, 4])
    assert torch.autograd.gradcheck(
        lambda x, h, c: comp(x, (h, c), lengths=lengths)[0], (x, h0, c0), eps=1e-6, atol=1e-7
    )


def test_inductor_path_matches_the_reference_loop(monkeypatch):
    """The default compiler: inductor's C++ code for the chunks of the README's own cell, one
    direction (a cold compile takes a minute here, per direction and cell: the other cells, both
    directions and two-part states are checked with the aot_eager compiler above, which runs the
    same graphs without code generation)."""
    monkeypatch.setenv("RNNKIT_STEP_COMPILER", "inductor")
    ref, comp = pair("readme_mgu", num_layers=1, bidirectional=False)
    x = torch.randn(12, 3, 5, dtype=D, requires_grad=True)
    lengths = torch.tensor([12, 7, 3])
    for a, b in zip(run_with_grads(ref, x, lengths), run_with_grads(comp, x, lengths), strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)


def test_recurrent_dropout_draws_the_reference_loops_mask(aot_eager):
    ref, comp = pair("layernorm_gru", recurrent_dropout=0.4)
    x = torch.randn(13, 3, 5, dtype=D, requires_grad=True)
    for seed in range(3):  # a new mask per sequence, the same one the reference loop draws
        torch.manual_seed(seed)
        expected = run_with_grads(ref, x, None)
        torch.manual_seed(seed)
        got = run_with_grads(comp, x, None)
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)


def test_zoneout_trains_with_random_masks_and_eval_is_its_expectation(aot_eager):
    ref, comp = pair("gru", num_layers=1, bidirectional=False, zoneout=0.5)
    x = torch.randn(16, 64, 5, dtype=D)
    first_run, second_run = comp(x)[0], comp(x)[0]
    assert not torch.equal(first_run, second_run)  # training: masks drawn at every call
    h = torch.zeros(64, 6, dtype=D)  # one step by hand: each unit keeps h_{t-1} (0) or takes the new
    new = ref.cells[0].step(ref.cells[0].project_input(x[0]), h)
    kept = (comp(x[:1])[0][0] == 0) & (new != 0)
    assert abs(kept.double().mean().item() - 0.5) < 0.05
    ref.eval()
    comp.eval()
    torch.testing.assert_close(comp(x)[0], ref(x)[0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(comp(x)[0], comp(x)[0], atol=0, rtol=0)  # eval is deterministic


def test_double_backward_is_refused_with_a_clear_error(aot_eager):
    _, comp = pair("rnn", num_layers=1, bidirectional=False)
    x = torch.randn(5, 2, 5, dtype=D, requires_grad=True)
    out, _ = comp(x)
    with pytest.raises(RuntimeError, match="backend='compiled' has no gradient of a gradient"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    out, _ = comp(x)
    (grad,) = torch.autograd.grad(out.sum(), x)  # first order still works
    assert grad.shape == x.shape


def test_backward_twice_with_retain_graph(aot_eager):
    ref, comp = pair("layernorm_lstm", num_layers=1, bidirectional=False)
    x = torch.randn(9, 2, 5, dtype=D, requires_grad=True)
    for layer in (ref, comp):
        x.grad = None
        out, _ = layer(x)
        out.sum().backward(retain_graph=True)
        out.sum().backward()
        layer.twice = x.grad.clone()
    torch.testing.assert_close(comp.twice, ref.twice, atol=1e-10, rtol=1e-10)


def test_a_model_compiled_whole_runs_the_compiled_backend_inside_one_graph(aot_eager):
    ref, comp = pair("layernorm_gru", num_layers=1, bidirectional=False)
    x = torch.randn(11, 3, 5, dtype=D, requires_grad=True)
    outer = torch.compile(comp, backend="aot_eager", fullgraph=True)  # a user's torch.compile(model)
    for a, b in zip(run_with_grads(ref, x, None), run_with_grads(outer, x, None), strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)


def test_outputs_can_be_modified_in_place(aot_eager):
    _, comp = pair("gru", num_layers=1, bidirectional=False)
    x = torch.randn(5, 2, 5, dtype=D, requires_grad=True)
    out, h_n = comp(x)
    out.mul_(2)
    h_n.add_(1)
    out.sum().backward()
    assert x.grad is not None


class DataDependentCell(RecurrentCell):
    """A step with Python control flow on tensor values: Dynamo cannot make it one graph."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.lin = nn.Linear(input_size + hidden_size, hidden_size)

    def step(self, xp, h):
        new = torch.tanh(self.lin(torch.cat([xp, h], dim=-1)))
        if bool(new.sum() > 0):
            return new
        return -new


def test_a_cell_that_cannot_be_compiled_runs_the_reference_loop_with_one_warning(aot_eager):
    compiled_cell._refused.pop(DataDependentCell, None)
    ref = rnn.Recurrent(DataDependentCell, 5, 6, dtype=D, backend="reference")
    comp = rnn.Recurrent(DataDependentCell, 5, 6, dtype=D, backend="compiled")
    comp.load_state_dict(ref.state_dict())
    x = torch.randn(7, 3, 5, dtype=D)
    with pytest.warns(UserWarning, match="cannot compile DataDependentCell"):
        out = comp(x)[0]
    torch.testing.assert_close(out, ref(x)[0], atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per cell class
        torch.testing.assert_close(comp(x)[0], ref(x)[0], atol=0, rtol=0)


def test_an_unknown_step_compiler_is_named(monkeypatch):
    monkeypatch.setenv("RNNKIT_STEP_COMPILER", "tvm")
    with pytest.raises(ValueError, match=r"RNNKIT_STEP_COMPILER must be one of \['inductor', 'aot_eager'\]"):
        compiled_cell.step_compiler()


def test_the_readme_shows_the_example_cell_line_for_line():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    shown = next(b for b in blocks if "class MinimalGatedUnit" in b)
    source = inspect.getsource(MinimalGatedUnit)
    assert source in shown, "README's MinimalGatedUnit differs from rnnkit/cells/examples.py"
    namespace: dict = {}
    exec(compile(shown.replace('@register_cell("mgu")', ""), "README.md", "exec"), namespace)  # noqa: S102
    assert issubclass(namespace["MinimalGatedUnit"], RecurrentCell)


@pytest.mark.slow
def test_a_cell_trains_from_the_configs_on_the_compiled_backend(tmp_path, aot_eager):
    metrics = run_train(
        ["cell=layernorm_lstm", "model.encoder.backend=compiled", "trainer.max_epochs=3"], tmp_path
    )
    assert metrics["test/mae"] < metrics["baseline/mae"] * 2  # it trained and predicts in range
