"""Short, realistic user programs, each run twice: as written (torch.nn) and with rnnkit swapped in.

The programs below are written against ``torch.nn`` only, as code found in the wild is. The second
run wraps the same function in :func:`rnnkit.nn.swap_into_torch`, so every ``nn.LSTM(...)`` it
builds is rnnkit's. Both runs start from the same seed; the losses of every step and the final state
dicts must agree (float64: to 1e-9; bf16 autocast: to bf16's precision, see that program).
"""

from __future__ import annotations

import io
import os
import tempfile
from abc import ABC, abstractmethod

import pytest
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit.nn

D = torch.float64


# ----------------------------------------------------------------------------- the programs
def tagger_training() -> tuple[list[float], dict]:
    """Embedding -> 2-layer bidirectional batch-first LSTM with dropout -> Linear; Adam, clipping,
    a step LR schedule: a sequence tagger's training loop."""

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True, dropout=0.3)
            self.head = nn.Linear(32, 5)

        def forward(self, tokens):
            out, _ = self.lstm(self.embed(tokens))
            return self.head(out)

    model = Tagger().to(D)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    losses = []
    for _ in range(5):
        tokens = torch.randint(0, 20, (4, 7))
        tags = torch.randint(0, 5, (4, 7))
        loss = nn.functional.cross_entropy(model(tokens).reshape(-1, 5), tags.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses, model.state_dict()


def packed_classifier() -> tuple[list[float], dict]:
    """Variable-length sequences through pack_padded_sequence (unsorted), a GRU's h_n as features."""
    gru = nn.GRU(3, 6, num_layers=2).to(D)
    head = nn.Linear(6, 2).to(D)
    params = [*gru.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    losses = []
    for _ in range(5):
        x = torch.randn(9, 5, 3, dtype=D)
        lengths = torch.tensor([9, 3, 7, 1, 5])
        y = torch.randint(0, 2, (5,))
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, h_n = gru(packed)
        padded, _ = pad_packed_sequence(output)
        loss = nn.functional.cross_entropy(head(h_n[-1]), y) + 1e-3 * padded.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {**gru.state_dict(), **{f"head.{k}": v for k, v in head.state_dict().items()}}


def save_resume_and_whole_model() -> tuple[list[float], dict]:
    """Train, save a checkpoint (state dicts) and the whole model, load both, go on training."""
    model = nn.Sequential()
    rnn_layer = nn.RNN(4, 8, nonlinearity="relu").to(D)
    head = nn.Linear(8, 1).to(D)
    optimizer = torch.optim.Adam([*rnn_layer.parameters(), *head.parameters()], lr=1e-2)

    def step():
        x = torch.randn(6, 3, 4, dtype=D)
        out, _ = rnn_layer(x)
        loss = (head(out).squeeze(-1) - x.sum(-1)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    losses = [step(), step()]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ckpt.pt")
        torch.save({"rnn": rnn_layer.state_dict(), "optim": optimizer.state_dict()}, path)
        torch.save(rnn_layer, os.path.join(folder, "whole.pt"))
        checkpoint = torch.load(path)
        rnn_layer.load_state_dict(checkpoint["rnn"])
        optimizer.load_state_dict(checkpoint["optim"])
        whole = torch.load(os.path.join(folder, "whole.pt"), weights_only=False)  # torch's needs this
    assert type(whole) is type(rnn_layer)
    losses += [step(), step()]
    x = torch.randn(6, 3, 4, dtype=D)
    losses.append((whole(x)[0] - rnn_layer(x)[0]).abs().max().item() + 1.0)  # the reloaded copy runs
    del model
    return losses, rnn_layer.state_dict()


def weight_norm_dataparallel_flatten() -> tuple[list[float], dict]:
    """Weight norm on recurrent weights, DataParallel wrapping, flatten_parameters after loading."""
    lstm = nn.LSTM(3, 5, num_layers=2).to(D)
    nn.utils.parametrizations.weight_norm(lstm, "weight_hh_l0")
    nn.utils.parametrizations.weight_norm(lstm, "weight_hh_l1")
    wrapped = nn.DataParallel(lstm)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.05)
    losses = []
    for _ in range(4):
        lstm.flatten_parameters()
        out, (h, c) = wrapped(torch.randn(6, 2, 3, dtype=D))
        loss = out.pow(2).mean() + c.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    buffer = io.BytesIO()
    torch.save(lstm.state_dict(), buffer)
    buffer.seek(0)
    lstm.load_state_dict(torch.load(buffer))
    lstm.flatten_parameters()
    return losses, lstm.state_dict()


def compiled_forecaster() -> tuple[list[float], dict]:
    """A GRU forecaster compiled with torch.compile, state carried between batches (truncated BPTT)."""
    gru = nn.GRU(1, 8, batch_first=True).to(D)
    head = nn.Linear(8, 1).to(D)

    def forward(x, h):
        out, h = gru(x, h)
        return head(out), h

    compiled = torch.compile(forward, backend="aot_eager")
    optimizer = torch.optim.Adam([*gru.parameters(), *head.parameters()], lr=1e-2)
    series = torch.sin(torch.arange(0, 60, dtype=D) / 4).reshape(2, 30, 1)
    h = None
    losses = []
    for start in range(0, 25, 5):
        x, y = series[:, start : start + 5], series[:, start + 1 : start + 6]
        prediction, h = compiled(x, h)
        loss = nn.functional.mse_loss(prediction, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        h = h.detach()
        losses.append(loss.item())
    return losses, {**gru.state_dict(), **{f"head.{k}": v for k, v in head.state_dict().items()}}


def cell_decoder_loop() -> tuple[list[float], dict]:
    """A seq2seq-style decoder: LSTMCell and GRUCell stepped by hand, feeding back predictions."""
    cell = nn.LSTMCell(4, 6).to(D)
    refine = nn.GRUCell(6, 6).to(D)
    out = nn.Linear(6, 4).to(D)
    params = [*cell.parameters(), *refine.parameters(), *out.parameters()]
    optimizer = torch.optim.RMSprop(params, lr=1e-2)
    losses = []
    for _ in range(3):
        target = torch.randn(5, 3, 4, dtype=D)
        h, c = torch.zeros(3, 6, dtype=D), torch.zeros(3, 6, dtype=D)
        y = torch.zeros(3, 4, dtype=D)
        loss = 0.0
        for t in range(5):
            h, c = cell(y, (h, c))
            g = refine(h)
            y = out(g)
            loss = loss + nn.functional.mse_loss(y, target[t])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    state = {f"cell.{k}": v for k, v in cell.state_dict().items()}
    return losses, {**state, **{f"refine.{k}": v for k, v in refine.state_dict().items()}}


def bf16_autocast_training() -> tuple[list[float], dict]:
    """Mixed precision as Lightning's ``bf16-mixed`` runs it: the forward under CPU autocast.

    torch's CPU RNN autocasts to bf16 (its LSTM has no bf16 oneDNN primitive under autocast and
    fails; its GRU does not autocast on the CPU), so this program uses the RNN, whose bf16 numbers
    both libraries compute with different reduction orders: agreement is to bf16 precision.
    """
    layer = nn.RNN(3, 8, num_layers=2)
    head = nn.Linear(8, 1)
    optimizer = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(3):
        x = torch.randn(6, 4, 3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = layer(x)
            prediction = head(out)
        loss = (prediction.float() - x.sum(-1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, layer.state_dict()


def subclassed_layers_on_packed_input() -> tuple[list[float], dict]:
    """Classes derived from torch's recurrent classes, as real code writes them: an abstract base on
    ``nn.RNNBase`` whose ``forward`` packs and calls ``super().forward(packed, hx)``, an LSTM and a
    GRU that mix it with ``nn.LSTM``/``nn.GRU`` and call ``super().__init__(**kwargs)``, and a layer
    on ``nn.RNNBase`` itself (``mode`` first) whose forward runs torch's ``_VF.lstm`` over
    ``self._flat_weights``. Two layers with dropout on unsorted variable lengths, trained with a
    seed: the dropout masks, and where the generator ends, must be torch's."""

    class Encoder(ABC, nn.RNNBase):
        @abstractmethod
        def state_count(self) -> int: ...

        def forward(self, x, lengths, hx=None):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, h = super().forward(packed, hx)
            padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return padded, h

    class LSTMEncoder(Encoder, nn.LSTM):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

        def state_count(self) -> int:
            return 2

    class GRUEncoder(Encoder, nn.GRU):
        def state_count(self) -> int:
            return 1

    class RawLSTM(nn.RNNBase):
        def __init__(self, *args, **kwargs):
            super().__init__("LSTM", *args, **kwargs)

        def forward(self, x):
            zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
            return _VF.lstm(
                x,
                (zeros, zeros),
                self._flat_weights,
                self.bias,
                self.num_layers,
                self.dropout,
                self.training,
                self.bidirectional,
                self.batch_first,
            )

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = LSTMEncoder(input_size=3, hidden_size=6, num_layers=2, dropout=0.4, batch_first=True)
            self.gru = GRUEncoder(
                input_size=6, hidden_size=5, num_layers=2, dropout=0.3, batch_first=True, bidirectional=True
            )
            self.raw = RawLSTM(10, 4, num_layers=2, dropout=0.2, batch_first=True)
            self.head = nn.Linear(4, 1)

        def forward(self, x, lengths):
            out, (h, _) = self.lstm(x, lengths)
            assert self.lstm.state_count() == 2 and h.shape == (2, x.shape[0], 6)
            out, _ = self.gru(out, lengths)
            out, _, _ = self.raw(out)
            return self.head(out[:, -1])

    model = Model().to(D)
    assert all(isinstance(m, torch.nn.modules.rnn.RNNBase) for m in (model.lstm, model.gru, model.raw))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(4):
        x = torch.randn(5, 7, 3, dtype=D)
        lengths = torch.tensor([7, 3, 5, 2, 6])
        loss = nn.functional.mse_loss(model(x, lengths).squeeze(-1), x[:, 0, 0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {**model.state_dict(), "generator": torch.get_rng_state()}


PROGRAMS = {
    "tagger_training": (tagger_training, 1e-9),
    "packed_classifier": (packed_classifier, 1e-9),
    "save_resume_and_whole_model": (save_resume_and_whole_model, 1e-9),
    "weight_norm_dataparallel_flatten": (weight_norm_dataparallel_flatten, 1e-9),
    "compiled_forecaster": (compiled_forecaster, 1e-9),
    "cell_decoder_loop": (cell_decoder_loop, 1e-9),
    "bf16_autocast_training": (bf16_autocast_training, 3e-2),
    "subclassed_layers_on_packed_input": (subclassed_layers_on_packed_input, 1e-9),
}


def run_program(program, swapped: bool):
    """Run it and check which library's recurrent modules actually ran (a global forward hook)."""
    torch.manual_seed(0)
    ran: set[type] = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, _: ran.add(type(m)))
    try:
        if swapped:
            with rnnkit.nn.swap_into_torch():
                result = program()
        else:
            result = program()
    finally:
        hook.remove()
    # parametrized modules and a program's own subclasses run as classes derived from the library's:
    # the first library class in each hierarchy says whose recurrence ran
    recurrent = {
        next(
            base
            for base in t.__mro__
            if base.__name__ in rnnkit.nn.compat.DROP_INS and base.__module__.startswith(("torch", "rnnkit"))
        )
        for t in ran
        if any(base.__name__ in rnnkit.nn.compat.DROP_INS for base in t.__mro__)
    }
    assert recurrent, "the program ran no recurrent module"
    library = "rnnkit" if swapped else "torch"
    assert all(t.__module__.startswith(library) for t in recurrent), recurrent
    return result


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_program_gives_torchs_losses_and_weights_with_rnnkit_swapped_in(name):
    program, tol = PROGRAMS[name]
    their_losses, their_state = run_program(program, swapped=False)
    our_losses, our_state = run_program(program, swapped=True)
    torch.testing.assert_close(torch.tensor(our_losses), torch.tensor(their_losses), atol=tol, rtol=tol)
    assert list(our_state) == list(their_state)
    for key in their_state:
        torch.testing.assert_close(our_state[key], their_state[key], atol=tol, rtol=tol, msg=key)


def test_swap_builds_rnnkits_modules_and_restores_torchs():
    with rnnkit.nn.swap_into_torch():
        assert type(nn.LSTM(2, 3)) is rnnkit.nn.LSTM
        assert type(torch.nn.modules.rnn.GRUCell(2, 3)) is rnnkit.nn.GRUCell
    assert nn.LSTM is torch.nn.modules.rnn.LSTM and nn.LSTM is not rnnkit.nn.LSTM
    with pytest.raises(RuntimeError, match="boom"), rnnkit.nn.swap_into_torch():
        raise RuntimeError("boom")
    assert nn.GRU is not rnnkit.nn.GRU  # restored after an error too
