"""Hand-written recurrent cells and the protocol a user's own cell follows."""

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.peephole import PeepholeLSTMCell
from rnnkit.cells.registry import available_cells, get_cell, register_cell
from rnnkit.cells.rnn import RNNCell

__all__ = [
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "PeepholeLSTMCell",
    "RNNCell",
    "RecurrentCell",
    "State",
    "available_cells",
    "get_cell",
    "register_cell",
]
