"""What user code and libraries do with torch.nn's recurrent modules, done side by side with rnnkit's.

Each test builds torch's module and rnnkit's with the same weights, applies the same operation
(save and load, copy, weight norm, pruning, functional_call, DataParallel, dtype moves, ...) to both,
and compares what comes out.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize, prune

import rnnkit.nn as rnn

KINDS = ["RNN", "LSTM", "GRU"]
CELL_KINDS = ["RNNCell", "LSTMCell", "GRUCell"]
D = torch.float64


def pair(kind: str, *args, **kwargs) -> tuple[nn.Module, nn.Module]:
    """torch's module and rnnkit's, with torch's weights."""
    theirs = getattr(nn, kind)(*args, dtype=D, **kwargs)
    ours = getattr(rnn, kind)(*args, dtype=D, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def run(module: nn.Module, x: torch.Tensor):
    return torch.utils._pytree.tree_leaves(module(x))


def assert_same_outputs(theirs: nn.Module, ours: nn.Module, x: torch.Tensor, tol: float = 1e-10) -> None:
    for a, b in zip(run(theirs, x), run(ours, x), strict=True):
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)


def sequence(batch: int = 3, steps: int = 6, features: int = 4, dtype=D) -> torch.Tensor:
    return torch.randn(steps, batch, features, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_public_attributes_and_methods_match_torch(kind):
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)
    if kind == "LSTM":
        kwargs["proj_size"] = 3
    theirs, ours = pair(kind, 4, 5, **kwargs)
    for name in ["mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "proj_size", "_flat_weights_names", "_all_weights"]:  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert repr(ours) == repr(theirs)
    for a, b in zip(theirs._flat_weights, ours._flat_weights, strict=True):
        assert torch.equal(a, b)
    assert [[w.shape for w in ws] for ws in ours.all_weights] == [
        [w.shape for w in ws] for ws in theirs.all_weights
    ]
    ours.flatten_parameters()  # a no-op on both off cuDNN
    x = torch.randn(3, 6, 4, dtype=D)
    assert ours.get_expected_hidden_size(x, None) == theirs.get_expected_hidden_size(x, None)
    if kind == "LSTM":
        assert ours.get_expected_cell_size(x, None) == theirs.get_expected_cell_size(x, None)
    hidden = torch.zeros(theirs.get_expected_hidden_size(x, None), dtype=D)
    state = (
        (hidden, torch.zeros(theirs.get_expected_cell_size(x, None), dtype=D)) if kind == "LSTM" else hidden
    )
    theirs.check_forward_args(x, state, None)
    ours.check_forward_args(x, state, None)
    perm = torch.tensor([2, 0, 1])
    for a, b in zip(
        torch.utils._pytree.tree_leaves(theirs.permute_hidden(state, perm)),
        torch.utils._pytree.tree_leaves(ours.permute_hidden(state, perm)),
        strict=True,
    ):
        assert torch.equal(a, b)
    rnn_sigmoid = rnn.RNN(2, 3, nonlinearity="relu")
    assert rnn_sigmoid.mode == nn.RNN(2, 3, nonlinearity="relu").mode == "RNN_RELU"


MODES = {"RNN": "RNN_TANH", "LSTM": "LSTM", "GRU": "GRU"}


@pytest.mark.parametrize("kind", KINDS)
def test_layers_are_torch_rnnbases_and_rnnbase_takes_torchs_constructor(kind):
    ours = getattr(rnn, kind)(4, 5, num_layers=2)
    assert isinstance(ours, nn.RNNBase) and isinstance(ours, rnn.RNNBase)
    # rnnkit.nn.RNNBase(mode, ...) builds the layer torch.nn.RNNBase(mode, ...) describes, same draws
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(4, 5, num_layers=2, bidirectional=True, dtype=D)
    torch.manual_seed(0)
    base = rnn.RNNBase(MODES[kind], 4, 5, num_layers=2, bidirectional=True, dtype=D)
    assert base.mode == theirs.mode and base._flat_weights_names == theirs._flat_weights_names
    for name, weight in theirs.named_parameters():
        assert torch.equal(getattr(base, name), weight), name
    assert_same_outputs(theirs, base, sequence(features=4))


def test_rnnbase_refuses_an_unknown_mode_and_projections_off_lstm_in_torchs_words():
    for module in (nn, rnn):
        with pytest.raises(ValueError, match="Unrecognized RNN mode: LSTMX"):
            module.RNNBase("LSTMX", 4, 5)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        rnn.RNNBase("GRU", 4, 5, proj_size=2)


def test_a_subclass_of_torchs_hierarchy_built_on_rnnkit_runs_rnnkits_recurrence():
    """``class Encoder(ABC, torch.nn.RNNBase)`` mixed with rnnkit's LSTM (no swap): rnnkit's
    constructor and forward run, torch's RNNBase.__init__ does not."""
    from abc import ABC

    class Encoder(ABC, nn.RNNBase):
        def forward(self, x, hx=None):
            out, state = super().forward(x, hx)
            return out * 2, state

    class LSTMEncoder(Encoder, rnn.LSTM):
        pass

    torch.manual_seed(0)
    theirs = nn.LSTM(4, 5, num_layers=2, dtype=D)
    torch.manual_seed(0)
    ours = LSTMEncoder(input_size=4, hidden_size=5, num_layers=2, dtype=D, backend="native")
    assert not hasattr(ours, "_flat_weight_refs")  # torch's constructor never ran
    x = sequence(features=4)
    torch.testing.assert_close(ours(x)[0], 2 * theirs(x)[0], atol=1e-10, rtol=1e-10)
    clone = copy.deepcopy(ours)  # torch's RNNBase pickling hooks are not in the way
    torch.testing.assert_close(clone(x)[0], ours(x)[0], atol=0, rtol=0)


CELL_CASES = [(kind, kwargs) for kind in CELL_KINDS for kwargs in ({}, {"bias": False})]
CELL_CASES.append(("RNNCell", {"nonlinearity": "relu"}))


@pytest.mark.parametrize("kind, kwargs", CELL_CASES)
def test_cell_attributes_repr_and_reset_match_torch(kind, kwargs):
    theirs, ours = pair(kind, 4, 5, **kwargs)
    for name in ["input_size", "hidden_size", "bias", *(["nonlinearity"] if kind == "RNNCell" else [])]:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert repr(ours) == repr(theirs)
    torch.manual_seed(5)
    theirs.reset_parameters()
    torch.manual_seed(5)
    ours.reset_parameters()
    for (name, a), (other, b) in zip(theirs.named_parameters(), ours.named_parameters(), strict=True):
        assert name == other and torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_reset_parameters_draws_as_torch(kind):
    theirs, ours = pair(kind, 4, 5, num_layers=2)
    torch.manual_seed(3)
    theirs.reset_parameters()
    torch.manual_seed(3)
    ours.reset_parameters()
    for (name, a), (other, b) in zip(theirs.named_parameters(), ours.named_parameters(), strict=True):
        assert name == other and torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS + CELL_KINDS)
def test_whole_module_save_and_load_under_weights_only(kind):
    """``torch.save(model)`` then ``torch.load`` with torch's default ``weights_only=True``: torch's own
    classes need the user to allow them; rnnkit's are allowed on import."""
    theirs, ours = pair(kind, 4, 5)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True is torch's default
    assert type(loaded) is type(ours)
    x = torch.randn(3, 4, dtype=D) if "Cell" in kind else sequence()
    assert_same_outputs(theirs, loaded, x)
    buffer = io.BytesIO()
    torch.save(theirs, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):  # torch's classes are not allowed by default
        torch.load(buffer)


@pytest.mark.parametrize("kind", KINDS + CELL_KINDS)
def test_deepcopy_and_pickle_round_trip(kind):
    theirs, ours = pair(kind, 4, 5)
    x = torch.randn(3, 4, dtype=D) if "Cell" in kind else sequence()
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert_same_outputs(theirs, clone, x)
        next(clone.parameters()).data.add_(1.0)  # the clone owns its weights
    assert_same_outputs(theirs, ours, x)


@pytest.mark.parametrize("kind", KINDS)
def test_functional_call_swaps_weights_as_torch(kind):
    theirs, ours = pair(kind, 4, 5, num_layers=2)
    params = {name: torch.randn_like(p) for name, p in theirs.named_parameters()}
    x = sequence()
    expected = torch.func.functional_call(theirs, params, (x,))
    got = torch.func.functional_call(ours, params, (x,))
    for a, b in zip(
        torch.utils._pytree.tree_leaves(expected), torch.utils._pytree.tree_leaves(got), strict=True
    ):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)
    assert_same_outputs(theirs, ours, x)  # the module's own weights are back


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_weight_norm_both_apis(kind, api):
    theirs, ours = pair(kind, 4, 5, num_layers=2)
    for module in (theirs, ours):
        for name in ("weight_hh_l0", "weight_ih_l1"):
            if api == "parametrizations":
                parametrizations.weight_norm(module, name)
            else:
                torch.nn.utils.weight_norm(module, name)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = sequence().requires_grad_()
    assert_same_outputs(theirs, ours, x)
    for a, b in zip(theirs._flat_weights, ours._flat_weights, strict=True):  # kept in step
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    # gradients reach the parametrization's own parameters
    run(theirs, x)[0].pow(2).sum().backward()
    run(ours, x)[0].pow(2).sum().backward()
    for (name, a), (_, b) in zip(theirs.named_parameters(), ours.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-10, rtol=1e-10, msg=name)
    if api == "parametrizations":
        for module in (theirs, ours):
            parametrize.remove_parametrizations(module, "weight_hh_l0")
        assert_same_outputs(theirs, ours, x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_spectral_norm_both_apis(kind, api):
    theirs, ours = pair(kind, 4, 5)
    for module in (theirs, ours):
        torch.manual_seed(0)  # spectral norm draws its power-iteration start
        if api == "parametrizations":
            parametrizations.spectral_norm(module, "weight_hh_l0")
        else:
            torch.nn.utils.spectral_norm(module, "weight_hh_l0")
    theirs.eval()
    ours.eval()
    assert_same_outputs(theirs, ours, sequence(), tol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_pruning(kind):
    theirs, ours = pair(kind, 4, 5)
    for module in (theirs, ours):
        prune.l1_unstructured(module, "weight_hh_l0", amount=0.5)
    assert torch.equal(ours.weight_hh_l0_mask, theirs.weight_hh_l0_mask)
    assert_same_outputs(theirs, ours, sequence())
    for module in (theirs, ours):
        prune.remove(module, "weight_hh_l0")
    assert_same_outputs(theirs, ours, sequence())


@pytest.mark.parametrize("kind", KINDS)
def test_dataparallel_wrapper(kind):
    """On a machine without GPUs DataParallel calls the module itself; on GPUs its replicas run in
    threads, and rnnkit's layers bind weights per call (no shared cell is mutated)."""
    theirs, ours = pair(kind, 4, 5)
    assert_same_outputs(nn.DataParallel(theirs), nn.DataParallel(ours), sequence())
    # what torch.nn.parallel.replicate does per GPU: a shallow replica whose weights are set as
    # plain attributes (copies broadcast to that device), then run in its own thread
    replica = ours._replicate_for_data_parallel()
    for key, param in ours._parameters.items():
        setattr(replica, key, param.detach().clone())
    assert_same_outputs(theirs, replica, sequence())


@pytest.mark.parametrize("kind", KINDS)
def test_dtype_moves_follow_torch(kind):
    theirs, ours = pair(kind, 4, 5)
    for move, dtype in (
        ("float", torch.float32),
        ("double", D),
        ("bfloat16", torch.bfloat16),
        ("half", torch.float16),
    ):
        getattr(theirs, move)()
        getattr(ours, move)()
        assert all(p.dtype == dtype for p in ours.parameters())
        assert all(w.dtype == dtype for w in ours._flat_weights)
        if dtype in (torch.float32, D):
            assert_same_outputs(
                theirs, ours, sequence(dtype=dtype), tol=1e-5 if dtype == torch.float32 else 1e-10
            )
    ours.to(torch.float32)
    out, _ = ours(sequence(dtype=torch.float32))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_backward_in_eval_mode(kind):
    """torch's cuDNN path refuses backward in eval mode (pytorch/pytorch#5878); rnnkit's runs it."""
    theirs, ours = pair(kind, 4, 5, num_layers=2, dropout=0.5)
    theirs.eval()
    ours.eval()
    x = sequence().requires_grad_()
    run(theirs, x)[0].sum().backward()
    expected = x.grad.clone()
    x.grad = None
    run(ours, x)[0].sum().backward()
    torch.testing.assert_close(x.grad, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_cells_are_the_templates_while_they_hold_the_layers_weights_else_copies(kind):
    ours = getattr(rnn, kind)(3, 4, num_layers=2, bidirectional=True)
    templates = ours._cells
    # the common case, which torch.compile traces on torch 2.11 too (no shallow copies): the templates
    assert all(c is t for c, t in zip(ours.layer_cells(), templates, strict=True))
    ours.eval()  # the templates follow the mode
    assert all(c is t and not c.training for c, t in zip(ours.layer_cells(), templates, strict=True))
    ours.training = True  # set directly, past train(): copies in the layer's mode
    cells = ours.layer_cells()
    assert all(c is not t and c.training for c, t in zip(cells, templates, strict=True))
    ours.train()
    parametrizations.weight_norm(ours, "weight_hh_l0")  # a computed weight: that cell is a copy
    cells = ours.layer_cells()
    assert cells[0] is not templates[0] and torch.equal(cells[0].weight_hh, ours.weight_hh_l0)
    assert all(c is t for c, t in zip(cells[1:], templates[1:], strict=True))
