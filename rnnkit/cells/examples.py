"""The README's example of a user cell, importable so tests and benchmarks run the code it shows.

``tests/test_compiled_cell.py`` checks that the README's block holds this class's source, line for
line. It is not registered here: the README registers it as ``"mgu"`` in the user's own module.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.cells.base import RecurrentCell


class MinimalGatedUnit(RecurrentCell):
    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__(input_size, hidden_size)  # state_size defaults to hidden_size
        self.x2h = nn.Linear(input_size, 2 * hidden_size, bias=bias)
        self.h2f = nn.Linear(hidden_size, hidden_size, bias=False)
        self.h2n = nn.Linear(hidden_size, hidden_size, bias=False)

    def project_input(self, x):  # (*, I) -> (*, 2H), hoisted out of the time loop
        return self.x2h(x)

    def step(self, xp, h):  # (B, 2H), (B, H) -> (B, H)
        xf, xn = xp.chunk(2, dim=-1)
        f = torch.sigmoid(xf + self.h2f(h))
        n = torch.tanh(xn + self.h2n(f * h))
        return (1 - f) * h + f * n
