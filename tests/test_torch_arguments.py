"""Bad arguments, side by side: torch.nn's recurrent modules and rnnkit's get the same inputs.

For every bad value both are run; rnnkit must raise what torch raises: the same exception type
and, by default, the same message text (torch 2.13's words, read from ``torch/nn/modules/rnn.py``
and ATen's cell checks). Where torch's error is an accident of its internals rather than a check
(a message that names ``mat1 and mat2``, oneDNN, or a Python TypeError from a comparison), rnnkit
raises the same exception type with a message that names the argument: those cases are listed in
``SAME_TYPE`` with the reason. What rnnkit accepts beyond torch is listed in ``EXTENSIONS``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

import rnnkit.nn as rnn

LAYERS = ["RNN", "LSTM", "GRU"]
CELLS = ["RNNCell", "LSTMCell", "GRUCell"]


def outcome(fn) -> tuple[type | None, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - the exception itself is what is compared
            return type(error), str(error)
    return None, "ok"


# constructor arguments: (label, kwargs)
LAYER_CONSTRUCTORS = [
    ("input_size float", dict(input_size=2.0, hidden_size=3)),
    ("input_size str", dict(input_size="2", hidden_size=3)),
    ("input_size zero", dict(input_size=0, hidden_size=3)),
    ("input_size negative", dict(input_size=-1, hidden_size=3)),
    ("input_size bool", dict(input_size=True, hidden_size=3)),
    ("hidden_size zero", dict(input_size=2, hidden_size=0)),
    ("hidden_size float", dict(input_size=2, hidden_size=3.0)),
    ("hidden_size negative", dict(input_size=2, hidden_size=-2)),
    ("num_layers zero", dict(input_size=2, hidden_size=3, num_layers=0)),
    ("num_layers negative", dict(input_size=2, hidden_size=3, num_layers=-1)),
    ("num_layers float", dict(input_size=2, hidden_size=3, num_layers=1.5)),
    ("num_layers str", dict(input_size=2, hidden_size=3, num_layers="2")),
    ("bias int", dict(input_size=2, hidden_size=3, bias=1)),
    ("batch_first str", dict(input_size=2, hidden_size=3, batch_first="False")),
    ("dropout above 1", dict(input_size=2, hidden_size=3, dropout=2)),
    ("dropout negative", dict(input_size=2, hidden_size=3, dropout=-0.1)),
    ("dropout bool", dict(input_size=2, hidden_size=3, dropout=True)),
    ("dropout str", dict(input_size=2, hidden_size=3, dropout="0.1")),
    ("bidirectional int", dict(input_size=2, hidden_size=3, bidirectional=1)),
    ("proj_size zero", dict(input_size=2, hidden_size=3, proj_size=0)),
    ("proj_size equal", dict(input_size=2, hidden_size=3, proj_size=3)),
    ("proj_size negative", dict(input_size=2, hidden_size=3, proj_size=-1)),
    ("proj_size fine", dict(input_size=2, hidden_size=3, proj_size=2)),
    ("nonlinearity gelu", dict(input_size=2, hidden_size=3, nonlinearity="gelu")),
    ("nonlinearity relu", dict(input_size=2, hidden_size=3, nonlinearity="relu")),
]
CELL_CONSTRUCTORS = [
    ("hidden_size zero", dict(input_size=2, hidden_size=0)),
    ("input_size zero", dict(input_size=0, hidden_size=3)),
    ("input_size float", dict(input_size=2.0, hidden_size=3)),
    ("input_size str", dict(input_size="2", hidden_size=3)),
    ("input_size negative", dict(input_size=-1, hidden_size=3)),
    ("hidden_size negative", dict(input_size=2, hidden_size=-3)),
    ("hidden_size bool", dict(input_size=2, hidden_size=True)),
    ("input_size bool", dict(input_size=True, hidden_size=3)),
    ("bias int", dict(input_size=2, hidden_size=3, bias=1)),
    ("nonlinearity gelu", dict(input_size=2, hidden_size=3, nonlinearity="gelu")),
]

# where torch fails inside its own code, rnnkit matches the type and says what is wrong
SAME_TYPE = {
    ("num_layers float", None): "torch: Python's \"'float' object cannot be interpreted as an integer\"",
    ("num_layers str", None): "torch: Python's \"'<=' not supported between 'str' and 'int'\"",
    ("hx dtype", None): "torch: 'mat1 and mat2 must have the same dtype' / 'get_mkldnn_dtype'",
    ("hx one tensor for a two-part state", "LSTM"): "torch indexes the tensor as if it were (h, c)",
    ("packed input_size", "LSTM"): "torch's LSTM skips its checks on packed input without a state",
    ("packed hx size", "LSTM"): "torch's LSTM permutes hx before checking it: a broadcast error",
}
# torch's LSTM runs no argument check on packed input; rnnkit checks it as torch's RNN and GRU do
CHECKED_WHERE_TORCH_DOES_NOT = {
    ("packed input dtype", "LSTM"): ValueError,
    ("packed input dtype with hx", "LSTM"): ValueError,
}
# what rnnkit accepts beyond torch (documented in the README)
EXTENSIONS = {
    ("nonlinearity sigmoid", "RNN"): "the lecture notes' logistic RNN",
    ("hx as a 1-tuple", "RNN"): "a state is a tensor or a tuple of its parts",
    ("hx as a 1-tuple", "GRU"): "a state is a tensor or a tuple of its parts",
}


def check_side_by_side(case: str, kind: str, theirs, ours) -> None:
    torch_type, torch_message = theirs
    our_type, our_message = ours
    if (case, kind) in EXTENSIONS:
        assert torch_type is not None and our_type is None, (torch_message, our_message)
        return
    if (case, kind) in CHECKED_WHERE_TORCH_DOES_NOT:
        assert torch_type is not None and our_type is CHECKED_WHERE_TORCH_DOES_NOT[case, kind], our_message
        return
    assert our_type is torch_type, (
        f"{kind} {case}: torch {torch_type} {torch_message!r}, rnnkit {our_type} {our_message!r}"
    )
    if (case, kind) in SAME_TYPE or (case, None) in SAME_TYPE:
        return
    if case == "nonlinearity gelu" and kind == "RNN":  # rnnkit names its extra choice after torch's text
        assert our_message.startswith(torch_message)
        return
    assert our_message == torch_message, f"{kind} {case}"


def applicable(kinds: list[str], cases: list[tuple[str, dict]], owner: str) -> list:
    """(kind, case, kwargs) triples; ``nonlinearity`` is an argument of ``owner`` only."""
    return [
        pytest.param(kind, case, kwargs, id=f"{kind}-{case}")
        for kind in kinds
        for case, kwargs in cases
        if "nonlinearity" not in kwargs or kind == owner
    ]


@pytest.mark.parametrize("kind, case, kwargs", applicable(LAYERS, LAYER_CONSTRUCTORS, "RNN"))
def test_layer_constructor_arguments_as_torch(kind, case, kwargs):
    theirs = outcome(lambda: getattr(nn, kind)(**kwargs))
    check_side_by_side(case, kind, theirs, outcome(lambda: getattr(rnn, kind)(**kwargs)))


def test_rnn_sigmoid_is_rnnkits_extension():
    check_side_by_side(
        "nonlinearity sigmoid",
        "RNN",
        outcome(lambda: nn.RNN(2, 3, nonlinearity="sigmoid")),
        outcome(lambda: rnn.RNN(2, 3, nonlinearity="sigmoid")),
    )
    assert rnn.RNN(2, 3, nonlinearity="sigmoid").mode == "RNN_SIGMOID"


@pytest.mark.parametrize("kind, case, kwargs", applicable(CELLS, CELL_CONSTRUCTORS, "RNNCell"))
def test_cell_constructor_arguments_as_torch(kind, case, kwargs):
    theirs = outcome(lambda: getattr(nn, kind)(**kwargs))
    check_side_by_side(case, kind, theirs, outcome(lambda: getattr(rnn, kind)(**kwargs)))


def layer_forward_cases(lstm: bool) -> dict[str, tuple]:
    layers, hidden = 2, 3

    def state(*shape, dtype=torch.float32):
        if lstm:
            return torch.zeros(*shape, dtype=dtype), torch.zeros(*shape, dtype=dtype)
        return torch.zeros(*shape, dtype=dtype)

    x = torch.randn(5, 4, 2)
    packed = pack_sequence([torch.randn(3, 2), torch.randn(2, 2)])
    return {
        "input 4-D": (torch.randn(1, 5, 4, 2), None),
        "input 1-D": (torch.randn(2), None),
        "input_size": (torch.randn(5, 4, 3), None),
        "input dtype": (x.double(), None),
        "hx 2-D for batched input": (x, state(layers, hidden)),
        "hx 3-D for unbatched input": (torch.randn(5, 2), state(layers, 4, hidden)),
        "hx batch": (x, state(layers, 5, hidden)),
        "hx layers": (x, state(1, 4, hidden)),
        "hx hidden size": (x, state(layers, 4, hidden + 1)),
        "hx unbatched size": (torch.randn(5, 2), state(layers, hidden + 1)),
        "hx dtype": (x, state(layers, 4, hidden, dtype=torch.float64)),
        "zero-length sequence": (torch.randn(0, 4, 2), None),
        "zero-length sequence with hx": (torch.randn(0, 4, 2), state(layers, 4, hidden)),
        "zero-length with bad input_size": (torch.randn(0, 4, 3), None),
        "zero-length unbatched": (torch.randn(0, 2), None),
        "empty batch": (torch.randn(5, 0, 2), None),
        "packed input_size": (pack_sequence([torch.randn(3, 3), torch.randn(2, 3)]), None),
        "packed hx size": (packed, state(layers, 3, hidden)),
        "packed input dtype": (pack_sequence([torch.randn(3, 2).double(), torch.randn(2, 2).double()]), None),
        "packed input dtype with hx": (
            pack_sequence([torch.randn(3, 2).double(), torch.randn(2, 2).double()]),
            state(layers, 2, hidden, dtype=torch.float64),
        ),
        "hx one tensor for a two-part state": (x, torch.zeros(layers, 4, hidden)) if lstm else (x, None),
        "hx as a 1-tuple": (x, None) if lstm else (x, (torch.zeros(layers, 4, hidden),)),
    }


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("case", list(layer_forward_cases(False)))
def test_layer_forward_arguments_as_torch(kind, case):
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(2, 3, 2)
    ours = getattr(rnn, kind)(2, 3, 2)
    inputs = layer_forward_cases(kind == "LSTM")[case]
    check_side_by_side(case, kind, outcome(lambda: theirs(*inputs)), outcome(lambda: ours(*inputs)))


def cell_forward_cases(lstm: bool) -> dict[str, tuple]:
    def state(*shape, dtype=torch.float32):
        z = torch.zeros(*shape, dtype=dtype)
        return (z, z.clone()) if lstm else z

    return {
        "input 3-D": (torch.randn(1, 4, 2), None),
        "input 0-D": (torch.randn(()), None),
        "input_size": (torch.randn(4, 3), None),
        "input dtype": (torch.randn(4, 2).double(), None),
        "hx 3-D": (torch.randn(4, 2), state(1, 4, 3)),
        "hx batch": (torch.randn(4, 2), state(5, 3)),
        "hx hidden size": (torch.randn(4, 2), state(4, 4)),
        "hx dtype": (torch.randn(4, 2), state(4, 3, dtype=torch.float64)),
        "hx 1-D for batched input": (torch.randn(4, 2), state(3)),
        "hx 2-D for unbatched input": (torch.randn(2), state(4, 3)),
        "empty batch": (torch.randn(0, 2), None),
        "unbatched": (torch.randn(2), state(3)),
    }


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("case", list(cell_forward_cases(False)))
def test_cell_forward_arguments_as_torch(kind, case):
    theirs, ours = getattr(nn, kind)(2, 3), getattr(rnn, kind)(2, 3)
    inputs = cell_forward_cases(kind == "LSTMCell")[case]
    check_side_by_side(case, kind, outcome(lambda: theirs(*inputs)), outcome(lambda: ours(*inputs)))


def test_unknown_cell_nonlinearity_fails_at_forward_as_torch():
    kind = "RNNCell"
    theirs = nn.RNNCell(2, 3, nonlinearity="gelu")
    ours = rnn.RNNCell(2, 3, nonlinearity="gelu")
    x = torch.randn(4, 2)
    check_side_by_side("nonlinearity at forward", kind, outcome(lambda: theirs(x)), outcome(lambda: ours(x)))


@pytest.mark.parametrize("kind", CELLS)
def test_zero_hidden_size_cells_run_as_torch(kind):
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(2, 0)
    torch.manual_seed(0)
    ours = getattr(rnn, kind)(2, 0)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 2)
    expected, got = theirs(x), ours(x)
    leaves = torch.utils._pytree.tree_leaves
    for a, b in zip(leaves(expected), leaves(got), strict=True):
        assert a.shape == b.shape == (4, 0)


@pytest.mark.parametrize("kind", LAYERS)
def test_half_precision_input_is_accepted_under_autocast_as_torch(kind):
    """Autocast exempts the dtype check (torch: ``not torch._C._is_any_autocast_enabled()``)."""
    torch.manual_seed(0)
    ours = getattr(rnn, kind)(3, 4, 2)
    x = torch.randn(5, 2, 3)
    reference, _ = ours(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h_n = ours(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=5e-2, rtol=5e-2)
    if kind != "LSTM":  # torch's CPU LSTM under autocast fails inside oneDNN
        with torch.autocast("cpu", dtype=torch.bfloat16):
            getattr(nn, kind)(3, 4, 2)(x.bfloat16())
    with pytest.raises(ValueError, match=r"RNN input dtype \(torch.bfloat16\) does not match weight dtype"):
        ours(x.bfloat16())  # outside autocast: torch's ValueError
