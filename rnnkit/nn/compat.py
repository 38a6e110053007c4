"""Running an existing torch.nn program on rnnkit's recurrent modules without editing it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn
import torch.nn.modules
import torch.nn.modules.rnn

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.nn.gru import GRU
from rnnkit.nn.lstm import LSTM
from rnnkit.nn.rnn import RNN
from rnnkit.nn.torch_layout import RNNBase

DROP_INS = ("RNNBase", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
_OURS = {
    "RNNBase": RNNBase,
    "RNN": RNN,
    "LSTM": LSTM,
    "GRU": GRU,
    "RNNCell": RNNCell,
    "LSTMCell": LSTMCell,
    "GRUCell": GRUCell,
}


@contextmanager
def swap_into_torch() -> Iterator[None]:
    """Within the block, ``torch.nn.RNNBase``, ``RNN/LSTM/GRU`` and the three cells are rnnkit's.

    For a program or test suite that builds torch's recurrent modules by name: wrap it and it builds
    rnnkit's instead, with the same arguments, parameter names, initialisation draws and numbers.
    Classes the program defines inside the block on ``nn.RNNBase`` or ``nn.LSTM`` (``class
    RNN(ABC, nn.RNNBase)``, ``class LSTM(RNN, nn.LSTM)``) derive from rnnkit's and run its
    recurrence. The names are restored on exit (also on error). Modules built inside stay
    rnnkit's, and stay instances of torch's own ``RNNBase`` (rnnkit's derives from it).

    Example::

        with rnnkit.nn.swap_into_torch():
            model = build_model_from_some_repo()   # its nn.LSTM(...) is rnnkit.nn.LSTM
    """
    namespaces = (torch.nn, torch.nn.modules, torch.nn.modules.rnn)
    saved = [(space, name, getattr(space, name)) for space in namespaces for name in DROP_INS]
    try:
        for space in namespaces:
            for name in DROP_INS:
                setattr(space, name, _OURS[name])
        yield
    finally:
        for space, name, original in saved:
            setattr(space, name, original)
