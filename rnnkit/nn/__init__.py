"""Recurrent layers and cells: drop-ins for torch.nn's, plus a layer that runs any cell."""

from rnnkit.cells import GRUCell, JordanCell, LSTMCell, RecurrentCell, RNNCell, get_cell, register_cell
from rnnkit.nn.gru import GRU
from rnnkit.nn.lstm import LSTM
from rnnkit.nn.recurrent import Recurrent, run_cell
from rnnkit.nn.rnn import RNN
from rnnkit.nn.tdnn import TDNN

__all__ = [
    "GRU",
    "GRUCell",
    "JordanCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "TDNN",
    "get_cell",
    "register_cell",
    "run_cell",
]
