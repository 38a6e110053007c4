"""Taking a layer out of Python (issue 31): torch.jit.trace, torch.export, AOTInductor and ONNX.

A traced LSTM/GRU runs other batch sizes and lengths with the eager layer's numbers, saves and loads,
and differentiates, as torch.nn's does; torch.export holds with dynamic batch and time, and its
AOTInductor package runs; both ONNX exporters give models that ONNX Runtime runs with the layer's
numbers (see rnnkit/kernels/onnx.py for which operators each writes)."""

from __future__ import annotations

import io

import pytest
import torch

import rnnkit.nn as rnn

KINDS = {"LSTM": rnn.LSTM, "GRU": rnn.GRU}


def traced(layer: torch.nn.Module, x: torch.Tensor, grad: bool) -> torch.jit.ScriptModule:
    with torch.enable_grad() if grad else torch.no_grad():
        module = torch.jit.trace(layer, (x,))  # check_trace on: traced again and compared
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


SCRIPTABLE = {
    "lstm": (rnn.LSTM, torch.nn.LSTM, {}),
    "lstm-2-bi-batch_first": (
        rnn.LSTM,
        torch.nn.LSTM,
        {"num_layers": 2, "bidirectional": True, "batch_first": True},
    ),
    "lstm-proj": (rnn.LSTM, torch.nn.LSTM, {"proj_size": 3, "bias": False}),
    "gru-2-dropout": (rnn.GRU, torch.nn.GRU, {"num_layers": 2, "dropout": 0.3}),
    "rnn-relu": (rnn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("case", list(SCRIPTABLE))
def test_jit_script_compiles_torch_nns_layer_holding_the_same_parameters(case):
    """``torch.jit.script`` calls ``__prepare_scriptable__``: it hands over torch.nn's layer of the
    same arguments holding the layer's own parameter tensors, which computes the same numbers."""
    ours_cls, torch_cls, kwargs = SCRIPTABLE[case]
    torch.manual_seed(0)
    layer = ours_cls(4, 6, dtype=torch.float64, **kwargs).eval()
    twin = layer.__prepare_scriptable__()
    assert type(twin) is torch_cls and not twin.training
    assert all(getattr(twin, name) is getattr(layer, name) for name in layer._flat_weights_names)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(layer(x)), torch.utils._pytree.tree_leaves(twin(x)), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", list(SCRIPTABLE))
def test_jit_script_of_a_layer_works_wherever_torch_scripts_its_own(case):
    """Scripted rnnkit and torch.nn layers of the same arguments behave alike: where the installed
    torch runs its own scripted layer (torch before 2.13), rnnkit's runs with the same numbers; where
    it cannot (torch 2.13: "'RecursiveScriptModule' object has no attribute 'forward'"), rnnkit's
    fails with the same error."""
    ours_cls, torch_cls, kwargs = SCRIPTABLE[case]
    torch.manual_seed(0)
    theirs = torch_cls(4, 6, dtype=torch.float64, **kwargs).eval()
    ours = ours_cls(4, 6, dtype=torch.float64, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    results = []
    for layer in (theirs, ours):
        try:
            results.append(torch.jit.script(layer)(x))
        except Exception as error:  # what torch's own scripted layer does, rnnkit's must do
            results.append((type(error), str(error)))
    if isinstance(results[0], tuple) and isinstance(results[0][0], type):
        assert results[1] == results[0]
    else:
        for a, b in zip(
            torch.utils._pytree.tree_leaves(results[0]),
            torch.utils._pytree.tree_leaves(results[1]),
            strict=True,
        ):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class Tagger(torch.nn.Module):
    """A model holding a recurrent layer, as programs script them."""

    def __init__(self, recurrent: torch.nn.RNNBase) -> None:
        super().__init__()
        self.recurrent = recurrent
        features = (recurrent.proj_size or recurrent.hidden_size) * (2 if recurrent.bidirectional else 1)
        self.head = torch.nn.Linear(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.recurrent(x)
        return self.head(y)


@pytest.mark.parametrize("case", list(SCRIPTABLE))
def test_jit_script_of_a_model_holding_the_layer_runs_as_with_torchs_layer(case):
    """Scripting a model that holds the layer (torch 2.13 scripts and runs a model holding
    torch.nn.LSTM, though not the bare layer): where torch's model runs scripted, rnnkit's does, with
    the eager numbers; its layer is torch.nn's holding the same parameters. (A torch that cannot run
    its own scripted model skips, saying why.)"""
    ours_cls, torch_cls, kwargs = SCRIPTABLE[case]
    torch.manual_seed(0)
    theirs = Tagger(torch_cls(4, 6, dtype=torch.float64, **kwargs)).double().eval()
    ours = Tagger(ours_cls(4, 6, dtype=torch.float64, **kwargs)).double().eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    try:
        torch.jit.script(theirs)(x)
    except Exception as error:  # this torch cannot: rnnkit is not asked to either
        pytest.skip(f"torch {torch.__version__} cannot run its own scripted model: {error}")
    scripted = torch.jit.script(ours)
    torch.testing.assert_close(scripted(x), ours(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scripted(x), theirs(x), rtol=1e-12, atol=1e-12)
    assert scripted.recurrent.original_name == torch_cls.__name__


@pytest.mark.parametrize(
    "layer, named",
    [
        (lambda: rnn.LSTM(3, 4, zoneout=0.1), "zoneout=0.1"),
        (lambda: rnn.GRU(3, 4, recurrent_dropout=0.2), "recurrent_dropout=0.2"),
        (lambda: rnn.RNN(3, 4, nonlinearity="sigmoid"), "mode='RNN_SIGMOID'"),
        (lambda: torch.nn.utils.parametrizations.weight_norm(rnn.GRU(3, 4), "weight_hh_l0"), "weight_hh_l0"),
    ],
    ids=["zoneout", "recurrent_dropout", "sigmoid", "weight_norm"],
)
def test_jit_script_of_what_torch_nn_cannot_express_says_what_and_what_to_use(layer, named):
    with pytest.raises(
        RuntimeError, match=r"has no torch\.nn counterpart to script.*torch\.jit\.trace"
    ) as raised:
        torch.jit.script(layer())
    assert named in str(raised.value)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_traced_layer_runs_other_shapes_with_the_layers_numbers(kind, grad):
    torch.manual_seed(0)
    layer = KINDS[kind](5, 7, num_layers=2, batch_first=True, bidirectional=True, dtype=torch.float64).eval()
    loaded = traced(layer, torch.randn(3, 4, 5, dtype=torch.float64), grad)
    for batch, steps in [(3, 4), (1, 9), (6, 2)]:
        x = torch.randn(batch, steps, 5, dtype=torch.float64, requires_grad=True)
        out, state = loaded(x)
        expected_out, expected_state = layer(x)
        torch.testing.assert_close(out, expected_out, atol=1e-12, rtol=1e-12)
        for part, expected_part in zip(
            state if isinstance(state, tuple) else (state,),
            expected_state if isinstance(expected_state, tuple) else (expected_state,),
            strict=True,
        ):
            torch.testing.assert_close(part, expected_part, atol=1e-12, rtol=1e-12)
        (got,) = torch.autograd.grad(out.pow(2).sum(), x)
        (want,) = torch.autograd.grad(expected_out.pow(2).sum(), x)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_with_dynamic_batch_and_time(kind):
    layer = KINDS[kind](5, 7, num_layers=2, batch_first=True).eval()
    batch, steps = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("steps", min=2, max=512)
    program = torch.export.export(
        layer, (torch.randn(3, 4, 5),), dynamic_shapes=({0: batch, 1: steps},), strict=False
    )
    x = torch.randn(5, 11, 5)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x)[0], layer(x)[0], atol=1e-6, rtol=1e-6)


# --- ONNX -------------------------------------------------------------------------------------------
# The first export in a process loads the exporter's translation tables (~5 s); a handful of layers
# covers each route of rnnkit/kernels/onnx.py: ONNX's own RNN/LSTM/GRU operators (the TorchScript-based
# exporter, and the dynamo exporter with a static length) and a Scan (any cell; dynamic length).


def onnx_runtime_outputs(path_or_bytes, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    ort = pytest.importorskip(
        "onnxruntime", reason="onnxruntime is in the dev extra: pip install -e '.[dev]'"
    )
    session = ort.InferenceSession(path_or_bytes)
    return [torch.from_numpy(a) for a in session.run(None, {k: v.numpy() for k, v in feeds.items()})]


def onnx_operators(path_or_bytes) -> set[str]:
    onnx = pytest.importorskip("onnx", reason="onnx is in the dev extra: pip install -e '.[dev]'")
    model = (
        onnx.load(path_or_bytes) if isinstance(path_or_bytes, str) else onnx.load_from_string(path_or_bytes)
    )
    return {node.op_type for node in model.graph.node}


def flat_outputs(out) -> list[torch.Tensor]:
    output, state = out
    return [output, *(state if isinstance(state, tuple) else (state,))]


def assert_runtime_matches(layer, model, shapes, input_size, h0_layers=None):
    """ONNX Runtime's outputs (output, h_n[, c_n]) against the eager layer's, float32 ~1e-5."""
    for batch, steps in shapes:
        x = torch.randn(batch, steps, input_size)
        feeds = {"x": x}
        if h0_layers is not None:
            feeds["h0"] = torch.randn(h0_layers, batch, layer.hidden_size)
        got = onnx_runtime_outputs(model, feeds)
        with torch.no_grad():
            want = flat_outputs(layer(*feeds.values()))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore")  # the exporter's own deprecation and registry notices
@pytest.mark.parametrize(
    ("name", "layer", "operator"),
    [
        (
            "LSTM",
            lambda: rnn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True, dropout=0.3),
            "LSTM",
        ),
        ("GRU", lambda: rnn.GRU(4, 6, batch_first=True), "GRU"),
        ("RNN-relu", lambda: rnn.RNN(4, 6, batch_first=True, bidirectional=True, nonlinearity="relu"), "RNN"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_torchscript_based_onnx_export_writes_onnx_own_operators_with_dynamic_batch_and_time(
    name, layer, operator
):
    torch.manual_seed(0)
    layer = layer().eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        layer,
        (torch.randn(3, 5, 4),),
        buffer,
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch", 1: "steps"}},
    )
    model = buffer.getvalue()
    assert operator in onnx_operators(model)
    assert_runtime_matches(layer, model, [(3, 5), (1, 9), (7, 2)], 4)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("name", "layer", "shapes"),
    [
        # torch.nn's own cell: ONNX's LSTM node would keep the traced length, so a Scan
        (
            "lstm",
            lambda: rnn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True, dropout=0.3),
            [(3, 5), (1, 9), (7, 2)],
        ),
        # a cell ONNX has no operator for
        (
            "jordan",
            lambda: rnn.Recurrent("jordan", 4, 6, output_size=3, num_layers=2, batch_first=True),
            [(3, 5), (2, 11)],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_dynamo_onnx_export_with_dynamic_batch_and_time_runs_as_a_scan(tmp_path, name, layer, shapes):
    torch.manual_seed(0)
    layer = layer().eval()
    batch, steps = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("steps", min=2, max=512)
    path = str(tmp_path / f"{name}.onnx")
    torch.onnx.export(
        layer,
        (torch.randn(3, 5, 4),),
        path,
        dynamo=True,
        input_names=["x"],
        dynamic_shapes=({0: batch, 1: steps},),
    )
    assert "Scan" in onnx_operators(path)
    assert_runtime_matches(layer, path, shapes, 4)


@pytest.mark.filterwarnings("ignore")
def test_dynamo_onnx_export_with_a_static_length_writes_onnx_gru_and_takes_h0(tmp_path):
    torch.manual_seed(0)
    layer = rnn.GRU(4, 6, batch_first=True, bidirectional=True).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    path = str(tmp_path / "gru.onnx")
    torch.onnx.export(
        layer,
        (torch.randn(3, 5, 4), torch.randn(2, 3, 6)),
        path,
        dynamo=True,
        input_names=["x", "h0"],
        dynamic_shapes=({0: batch}, {1: batch}),
    )
    assert "GRU" in onnx_operators(path)
    assert_runtime_matches(layer, path, [(3, 5), (8, 5)], 4, h0_layers=2)


# --- AOTInductor ------------------------------------------------------------------------------------


@pytest.mark.slow  # ~25 s: Inductor compiles the package with the C++ compiler
@pytest.mark.filterwarnings("ignore")
def test_aot_inductor_package_of_an_exported_lstm_runs_other_shapes_with_the_layers_numbers(tmp_path):
    torch.manual_seed(0)
    layer = rnn.LSTM(5, 7, num_layers=2, batch_first=True).eval()
    batch, steps = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("steps", min=2, max=512)
    program = torch.export.export(
        layer, (torch.randn(3, 4, 5),), dynamic_shapes=({0: batch, 1: steps},), strict=False
    )
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "lstm.pt2"))
    compiled = torch._inductor.aoti_load_package(path)
    for shape in [(3, 4), (6, 11), (1, 2)]:
        x = torch.randn(*shape, 5)
        with torch.no_grad():
            for got, want in zip(flat_outputs(compiled(x)), flat_outputs(layer(x)), strict=True):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
