"""Recurrent layers and cells: drop-ins for torch.nn's, plus a layer that runs any cell."""

from torch import nn

from rnnkit.cells import (
    GRUCell,
    JordanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    RNNCell,
    get_cell,
    register_cell,
)
from rnnkit.nn.compat import swap_into_torch
from rnnkit.nn.gru import GRU
from rnnkit.nn.lstm import LSTM
from rnnkit.nn.recurrent import Recurrent, run_cell
from rnnkit.nn.rnn import RNN
from rnnkit.nn.tdnn import TDNN
from rnnkit.nn.torch_layout import RNNBase, register_safe_globals

# whole modules saved with torch.save(model) load under torch.load's default weights_only=True; the
# generic layer and the TDNN hold their parts in torch's ModuleList and Linear, allowed with them
register_safe_globals(
    GRU, GRUCell, JordanCell, LSTM, LSTMCell, RNN, RNNCell, Recurrent, TDNN, nn.ModuleList, nn.Linear
)

__all__ = [
    "GRU",
    "GRUCell",
    "JordanCell",
    "LSTM",
    "LSTMCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "PeepholeLSTMCell",
    "RNN",
    "RNNBase",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "TDNN",
    "get_cell",
    "register_cell",
    "run_cell",
    "swap_into_torch",
]
